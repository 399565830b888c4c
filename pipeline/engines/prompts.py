"""Granite 4.0 Speech prompts: the model card's transcription prompt, keyword biasing, translation,
and where each recording's prompt comes from (the job's keywords, its keywords file, a sidecar).

The user turn is rendered with the model's own chat template (`USER: {content}\\n ASSISTANT:`),
so both engines see the same prompt text. Keywords bias proper names and acronyms by appending
`Keywords: a, b, c` to the prompt, as the model card describes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError, JobConfig
from ..model import Recording
from ..sources import Source

AUDIO_PLACEHOLDER = "<|audio|>"
TRANSCRIBE = "can you transcribe the speech into a written format?"
TRANSLATE = "translate the speech to {language}"
_SPECIAL = re.compile(r"<\|[^|>]*\|>")
_COMMENT = re.compile(r"(^|\s)#.*")
KEYWORDS_SUFFIX = ".keywords.txt"  # a recording's own keywords: `call.wav.keywords.txt` beside `call.wav`


@dataclass(frozen=True)
class PromptSpec:
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


def render(tokenizer: Any, spec: PromptSpec) -> str:
    """The prompt text through the model's chat template (a transformers tokenizer)."""
    return str(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": spec.user_content()}], tokenize=False, add_generation_prompt=True
        )
    )


def merge_keywords(*sources: Iterable[str], limit: int) -> tuple[str, ...]:
    """Job list, keywords file and per-recording list, in that order: trimmed, deduplicated
    (case-insensitively, first spelling wins), at most `limit`."""
    seen: set[str] = set()
    out: list[str] = []
    for source in sources:
        for kw in source:
            # Sidecars are user data: a `<|audio|>` or `<|end_of_text|>` in them would become a
            # special token in the prompt.
            kw = " ".join(_SPECIAL.sub(" ", kw).replace(",", " ").split())
            if kw and kw.lower() not in seen:
                seen.add(kw.lower())
                out.append(kw)
    return tuple(out[:limit])


def parse_keywords_text(text: str) -> list[str]:
    """A keywords file: one keyword per line (commas also separate); `#` at the start of a line or
    after a space starts a comment (so `C#` stays a keyword)."""
    words: list[str] = []
    for line in text.splitlines():
        line = _COMMENT.sub("", line)
        words += [w.strip() for w in line.split(",") if w.strip()]
    return words


def job_keywords(cfg: JobConfig) -> list[str]:
    """The job-level list plus the keywords file, read once per job (before any model loads)."""
    words = list(cfg.prompt.keywords)
    if cfg.prompt.keywords_file:
        path = Path(cfg.prompt.keywords_file).expanduser()
        try:
            words += parse_keywords_text(path.read_text())
        except OSError as err:
            raise ConfigError(f"prompt.keywords_file {path}: {err.strerror}") from None
    return words


def prompt_for(rec: Recording, source: Source, cfg: JobConfig, job_words: list[str]) -> PromptSpec:
    """One recording's prompt: the job's keywords, then its manifest row's and its sidecar's
    (`prompt.sidecar_keywords`)."""
    own: list[str] = []
    if cfg.prompt.sidecar_keywords:
        text = source.sidecar(rec, KEYWORDS_SUFFIX)
        own = parse_keywords_text(text) if text else []
    keywords = merge_keywords(job_words, [*rec.keywords, *own], limit=cfg.prompt.max_keywords)
    return PromptSpec(task=cfg.prompt.task, language=cfg.prompt.target_language, keywords=keywords)
