"""A prompt (prompt.py) rendered for the model: the user turn through the model's own chat
template (`USER: {content}\\n ASSISTANT:`), so both engines see the same prompt text."""

from __future__ import annotations

from typing import Any

from ..records.prompt import Prompt


def render(tokenizer: Any, prompt: Prompt) -> str:
    """The prompt text through the model's chat template (a transformers tokenizer)."""
    return str(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt.user_content()}], tokenize=False, add_generation_prompt=True
        )
    )
