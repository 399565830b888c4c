"""The CLI's exit codes, all of them, and the error classes behind them (the metrics' exit code
too): 0 done; 1 finished, but recordings failed (run, transcribe), a check failed (doctor) or the
last run failed (status); 2 bad configuration or input; 3 the run itself failed; 4 anything else:
a bug, or Ray lost (never 1)."""

from __future__ import annotations

from .config import ConfigError
from .engines.base import EngineStartError
from .engines.model_source import ModelSourceError
from .kube.submit import SubmitError
from .sink import OutputError
from .sources import SourceError

ERRORS: tuple[tuple[tuple[type[Exception], ...], int, str], ...] = (
    ((ConfigError, SourceError, ModelSourceError, SubmitError), 2, ""),
    ((OutputError, EngineStartError), 3, "run failed: "),
)
INTERNAL_ERROR = 4


def code_of(err: BaseException) -> int:
    """The exit code an error ends the CLI with."""
    return next((code for types, code, _ in ERRORS if isinstance(err, types)), INTERNAL_ERROR)
