"""Where each recording's prompt (records/prompt.py) comes from (docs/engines.md): the job's
keywords, its keywords file, the recording's manifest row and its sidecar, merged and cleaned.
Pure: the caller reads the sidecar (`KEYWORDS_SUFFIX`); `job_keywords` reads the job's keywords
file, once per job, before any model loads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from .config import JobConfig
from .errors import ConfigError
from .records.audio import Recording
from .records.prompt import Prompt

_SPECIAL = re.compile(r"<\|[^|>]*\|>")
_COMMENT = re.compile(r"(^|\s)#.*")
KEYWORDS_SUFFIX = ".keywords.txt"  # a recording's own keywords: `call.wav.keywords.txt` beside `call.wav`


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


def prompt_for(rec: Recording, sidecar: str | None, cfg: JobConfig, job_words: list[str]) -> Prompt:
    """One recording's prompt: the job's keywords, then its manifest row's and its sidecar's
    (`sidecar`: the text of `<recording>.keywords.txt`, sources.sidecar_keywords)."""
    own = parse_keywords_text(sidecar) if sidecar else []
    keywords = merge_keywords(job_words, [*rec.keywords, *own], limit=cfg.prompt.max_keywords)
    return Prompt(task=cfg.prompt.task, language=cfg.prompt.target_language, keywords=keywords)
