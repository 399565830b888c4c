"""The prompt a block is transcribed with, as it travels with the block to the engines
(records/transport.py): the model card's transcription prompt or translation, and the keywords
that bias it (`Keywords: a, b, c` appended, as the model card describes). Where each recording's
prompt comes from is prompt.py; rendering it through the model's chat template, engines/prompts.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from .rows import Row

AUDIO_PLACEHOLDER = "<|audio|>"
TRANSCRIBE = "can you transcribe the speech into a written format?"
TRANSLATE = "translate the speech to {language}"


@dataclass(frozen=True)
class Prompt(Row):
    """What a block is asked: it travels with each block to the engines (records/transport.py)."""

    task: str = "transcribe"  # or "translate"
    language: str = "English"  # translation target
    keywords: tuple[str, ...] = ()

    @property
    def variant(self) -> str:
        base = "transcribe" if self.task == "transcribe" else f"translate:{self.language}"
        return base + ("+keywords" if self.keywords else "")

    def user_content(self) -> str:
        text = TRANSCRIBE if self.task == "transcribe" else TRANSLATE.format(language=self.language)
        if self.keywords:
            text += " Keywords: " + ", ".join(self.keywords)
        return AUDIO_PLACEHOLDER + text

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Prompt:
        return cls(row["task"], row["language"], tuple(row["keywords"] or ()))


PROMPT_TYPE = pa.struct([("task", pa.string()), ("language", pa.string()), ("keywords", pa.list_(pa.string()))])
