"""The `language` column: the job's hint, or detected per recording from its transcript.

py3langid (a maintained fork of langid.py, model bundled, works offline) restricted to the
languages Granite 4.0 1B Speech was trained on, so a noisy transcript cannot come back as a
language the model does not produce. Too little text or a weak decision gives None, not a guess.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

GRANITE_LANGUAGES = ("en", "fr", "de", "es", "pt", "ja")
MIN_CHARS = 12  # letters; below this langid's decision is close to chance
MIN_PROB = 0.8


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    ident.set_languages(list(GRANITE_LANGUAGES))
    return ident


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of `text`, or None when it is too short or the decision is weak."""
    if sum(ch.isalpha() for ch in text) < MIN_CHARS:
        return None
    lang, prob = _identifier().classify(text)
    return str(lang) if prob >= MIN_PROB else None
