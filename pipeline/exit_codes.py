"""The CLI's exit codes, all of them, and the error classes behind them (the metrics' exit code
too): 0 done; 1 finished, but recordings failed (run, transcribe), a check failed (doctor) or the
last run failed (status); 2 bad configuration or input; 3 the run itself failed; 4 anything else:
a bug, or Ray lost (never 1); 130 interrupted; 143 stopped by SIGTERM (a pod deleted, a deadline)."""

from __future__ import annotations

import signal
import sys
import threading

from .config import ConfigError
from .engines.base import EngineStartError
from .engines.model_source import ModelSourceError
from .kube.submit import SubmitError
from .lake.store import OutputError
from .sources import SourceError

ERRORS: tuple[tuple[tuple[type[Exception], ...], int, str], ...] = (
    ((ConfigError, SourceError, ModelSourceError, SubmitError), 2, ""),
    ((OutputError, EngineStartError), 3, "run failed: "),
)
INTERNAL_ERROR = 4
INTERRUPTED = 130  # Ctrl-C, as shells report it


def code_of(err: BaseException) -> int:
    """The exit code an error ends the CLI with (SystemExit: its own, e.g. 143 after a SIGTERM)."""
    if isinstance(err, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(err, SystemExit):
        return err.code if isinstance(err.code, int) else 1
    return next((code for types, code, _ in ERRORS if isinstance(err, types)), INTERNAL_ERROR)


def exit_on_sigterm() -> None:
    """Kubernetes stops a pod with SIGTERM: end like Ctrl-C (settled rows committed, the output's
    lock released, the exit code pushed) with 143, before the SIGKILL that follows. Ray's driver
    installs its own handler (exit 15), so this is called again after `ray.init`."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
