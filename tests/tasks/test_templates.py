"""Prompt templates: plain is verbatim; the others carry their instruction, through the
tokenizer's chat template when it has one."""

from __future__ import annotations

import pytest

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


@pytest.mark.parametrize("template", [t for t in TEMPLATES if t != "plain"])
def test_chat_template_is_used_when_present(template: str) -> None:
    text = render_prompt(ITEM, template, ChatTokenizer())
    assert "What is 2+2?" in text and "\\boxed{}" in text and "[assistant]" in text
    assert text.endswith("<think>\n") == (template == "r1")


def test_unknown_template_lists_valid_names(tiny_tokenizer) -> None:
    with pytest.raises(ValueError, match="valid: plain, qwen_math_cot, deepseek_math, r1"):
        render_prompt(ITEM, "nope", tiny_tokenizer)
