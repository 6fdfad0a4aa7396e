"""Prompt templates: plain is verbatim; the others carry their instruction, through the
tokenizer's chat template when it has one."""

from __future__ import annotations

import pytest

from agpo.errors import UserError
from agpo.tasks import TEMPLATES, render_prompt
from agpo.types import TaskItem

ITEM = TaskItem(id="0", prompt="What is 2+2?", gold="4")


def test_plain_is_the_prompt_verbatim(tiny_tokenizer) -> None:
    assert render_prompt(ITEM, "plain", tiny_tokenizer) == "What is 2+2?"


def test_text_formats_without_chat_template(tiny_tokenizer) -> None:
    assert not getattr(tiny_tokenizer, "chat_template", None)
    qwen = render_prompt(ITEM, "qwen_math_cot", tiny_tokenizer)
    assert qwen == ("<|im_start|>system\nPlease reason step by step, and put your final answer "
                    "within \\boxed{}.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    assert render_prompt(ITEM, "deepseek_math", tiny_tokenizer).startswith("User: What is 2+2?\n")
    assert render_prompt(ITEM, "deepseek_math", tiny_tokenizer).endswith("\n\nAssistant:")
    assert render_prompt(ITEM, "r1", tiny_tokenizer).endswith("Assistant: <think>\n")


class ChatTokenizer:
    """Stands in for a chat model's tokenizer: renders role: content lines."""

    chat_template = "{% for m in messages %}...{% endfor %}"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return "".join(f"[{m['role']}]{m['content']}\n" for m in messages) + "[assistant]"


@pytest.mark.parametrize("template", [t for t in TEMPLATES if t not in ("plain", "chat")])
def test_chat_template_is_used_when_present(template: str) -> None:
    text = render_prompt(ITEM, template, ChatTokenizer())
    assert "What is 2+2?" in text and "\\boxed{}" in text and "[assistant]" in text
    assert text.endswith("<think>\n") == (template == "r1")


def test_unknown_template_lists_valid_names(tiny_tokenizer) -> None:
    with pytest.raises(ValueError, match="valid: plain, qwen_math_cot, deepseek_math, r1"):
        render_prompt(ITEM, "nope", tiny_tokenizer)


def test_chat_is_the_prompt_as_the_user_turn() -> None:
    assert render_prompt(ITEM, "chat", ChatTokenizer()) == "[user]What is 2+2?\n[assistant]"


def test_chat_without_a_chat_template_names_the_file_and_the_alternatives(tiny_tokenizer) -> None:
    with pytest.raises(UserError) as err:
        render_prompt(ITEM, "chat", tiny_tokenizer)
    msg = str(err.value)
    assert "no chat template (no chat_template.jinja" in msg
    assert "plain, qwen_math_cot, deepseek_math and r1 work without" in msg


class NoSystemTokenizer(ChatTokenizer):
    """Gemma-like: the chat template raises on a system turn."""

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        from jinja2.exceptions import TemplateError

        if messages[0]["role"] == "system":
            raise TemplateError("System role not supported")
        return super().apply_chat_template(messages, tokenize, add_generation_prompt)


def test_a_template_without_system_turns_gets_the_instruction_in_the_user_turn() -> None:
    text = render_prompt(ITEM, "qwen_math_cot", NoSystemTokenizer())
    assert text == ("[user]Please reason step by step, and put your final answer within "
                    "\\boxed{}.\n\nWhat is 2+2?\n[assistant]")
