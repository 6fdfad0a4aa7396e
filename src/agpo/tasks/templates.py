"""Prompt templates: how a problem is shown to the model.

| template      | instruction                                              | answer opens |
|---------------|----------------------------------------------------------|--------------|
| plain         | none: ``item.prompt`` verbatim, no chat template         |              |
| qwen_math_cot | system: reason step by step, final answer in \\boxed{}   |              |
| deepseek_math | the same instruction appended to the question            |              |
| r1            | DeepSeek-R1-Zero's: think inside <think> tags first      | ``<think>``  |
| chat          | none: ``item.prompt`` as the user turn of the chat template |           |

When the tokenizer has a chat template the messages go through it (with the generation prompt);
a chat template that refuses a system turn (Gemma's) gets the instruction at the top of the user
turn instead. Without a chat template the text format each math template was published with is
used (Qwen2.5-Math's evaluation prompt, DeepSeek-Math's ``User: ... Assistant:``, R1-Zero's
conversation prompt); ``chat`` has no such format and needs the model's chat template.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agpo.errors import UserError, at
from agpo.types import TaskItem

BOXED = "Please reason step by step, and put your final answer within \\boxed{}."
R1_SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process is enclosed within <think> "
    "</think> tags, and the final answer is put within \\boxed{}."
)
TEMPLATES = ("plain", "qwen_math_cot", "deepseek_math", "r1", "chat")
NEEDS_CHAT_TEMPLATE = ("chat",)


def _messages(item: TaskItem, template: str) -> tuple[list[dict[str, str]], str]:
    """(chat messages, text that opens the assistant turn)."""
    if template == "qwen_math_cot":
        return [{"role": "system", "content": BOXED}, {"role": "user", "content": item.prompt}], ""
    if template == "deepseek_math":
        return [{"role": "user", "content": f"{item.prompt}\n{BOXED}"}], ""
    if template == "r1":
        return [{"role": "system", "content": R1_SYSTEM},
                {"role": "user", "content": item.prompt}], "<think>\n"
    if template == "chat":
        return [{"role": "user", "content": item.prompt}], ""
    raise ValueError(f"unknown prompt template {template!r}; valid: {', '.join(TEMPLATES)}")


def _text_format(item: TaskItem, template: str) -> str:
    if template == "qwen_math_cot":
        return (f"<|im_start|>system\n{BOXED}<|im_end|>\n<|im_start|>user\n{item.prompt}"
                "<|im_end|>\n<|im_start|>assistant\n")
    if template == "deepseek_math":
        return f"User: {item.prompt}\n{BOXED}\n\nAssistant:"
    return f"{R1_SYSTEM} User: {item.prompt} Assistant: <think>\n"


def render_prompt(item: TaskItem, template: str, tokenizer: Any) -> str:
    """The text fed to the model for ``item`` under ``template`` (see the module table)."""
    if template == "plain":
        return item.prompt
    messages, opener = _messages(item, template)
    if getattr(tokenizer, "chat_template", None):
        return _apply_chat_template(tokenizer, messages) + opener
    if template in NEEDS_CHAT_TEMPLATE:
        raise UserError(
            f"{getattr(tokenizer, 'name_or_path', '') or 'the model'}: the tokenizer has no chat "
            f"template (no chat_template.jinja, no 'chat_template' in tokenizer_config.json); the "
            f"template {template} (--task.template / agpo eval --template) needs one; plain, "
            "qwen_math_cot, deepseek_math and r1 work without"
        )
    return _text_format(item, template)


def _apply_chat_template(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    from jinja2.exceptions import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except TemplateError:
        if messages[0]["role"] != "system":
            raise
    # The template refuses a system turn: the instruction opens the user turn instead.
    system, user = messages[0]["content"], messages[1]["content"]
    merged = [{"role": "user", "content": f"{system}\n\n{user}"}]
    return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)


def model_positions(model: Any) -> int | None:
    """How many positions the model attends over (None when its config does not say)."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


# A prompt longer than this many characters per model position is refused before it is
# tokenized: tokenizing a 50 MB line takes minutes and gigabytes, and no tokenizer in use packs
# 64 characters into one token on average.
_CHARS_PER_POSITION = 64


def prompt_room(
    items: Sequence[TaskItem], template: str, spec: str, tokenizer: Any, positions: int | None,
    cap: int | None, *, flag: str | None, option: str,
) -> int | None:
    """The most new tokens the model's ``positions`` leave after the longest rendered prompt
    (None when the model does not say how many it has). A token ``cap`` (set by ``flag``; None:
    not chosen yet) that leaves a prompt no room, or no room at all, is refused — naming the task
    file and line of the prompt, and ``option``, the flag that lowers the cap."""
    if positions is None:
        return None
    sizes: list[tuple[int, int | None]] = []  # (characters, tokens) of each rendered prompt
    for it in items:
        text = render_prompt(it, template, tokenizer)
        sizes.append((len(text), len(tokenizer(text).input_ids)
                      if len(text) <= _CHARS_PER_POSITION * positions else None))
    fits = positions - max((n for _, n in sizes if n is not None), default=0)
    if cap is not None and cap >= positions:
        raise UserError(f"{flag} {cap}: the model has only {positions} positions; lower it "
                        f"(at most {fits} fit after the longest prompt)")
    budget = positions - cap if cap is not None else positions - 1
    for it, (chars, n) in zip(items, sizes, strict=True):
        if n is None or n > budget:
            size = f"{chars:,} characters" if n is None else f"{n} tokens"
            if cap is None:
                why = (f"which leaves no room for a response in the model's {positions} "
                       "positions; shorten or drop it")
            else:
                most = f" (at most {fits} fit every prompt)" if fits >= 1 else ""
                why = (f"more than the {budget} the model's {positions} positions leave after "
                       f"{flag} {cap}; shorten or drop it, or lower {option}{most}")
            raise at(spec, it.meta.get("line"),
                     f"problem {it.id!r}: the prompt ({template} template) is {size}, {why}")
    return fits
