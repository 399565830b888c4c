"""Every way the pipeline fails, in one place: the failure kinds a recording fails with, the
exceptions that carry them, the errors that stop a command, and the exit codes they end with.

A recording that fails gets a `recordings` row with `status` failed, `error_kind` one of `KINDS`
and `error` its one-line detail; the run goes on. The kind is what the summary, the manifest's
`failures_by_reason`, the metrics' `reason` label and the demo group by: a fixed, documented set
(docs/operations.md), so rewording a message changes no group, and no metric label ever carries a
message's text (which can name an object key: a customer's name or number). Code decides by kind,
never by parsing a message.

Exit codes (the metrics' `exit_code` too): 0 done; 1 finished, but recordings failed (run,
transcribe), a check failed (doctor) or the last run failed (status); 2 bad configuration or input;
3 the run itself failed; 4 anything else: a bug, or Ray lost (never 1); 130 interrupted; 143
stopped by SIGTERM (a pod deleted, a deadline).

This module imports nothing of the pipeline, so every module may import it.
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass
from typing import Literal

Kind = Literal[
    "empty",
    "not_audio",
    "unreadable",
    "unsupported_codec",
    "truncated",
    "format_changed",
    "no_audio",
    "too_large",
    "too_long",
    "timeout",
    "out_of_memory",
    "object_changed",
    "no_such_object",
    "access_denied",
    "bad_manifest_row",
    "worker_lost",
    "engine_failed",
    "compliance_failed",
    "internal_error",
]
# Each kind and when a recording fails with it, in Kind's order (tests/test_errors.py); docs/operations.md's
# table is generated from this.
KINDS: dict[Kind, str] = {
    "empty": "The object holds 0 bytes.",
    "not_audio": "The content is not audio: text, HTML, an image, a document, or a container with no audio stream.",
    "unreadable": "The bytes cannot be read: FFmpeg cannot probe them, a local file cannot be opened, or the store "
    "did not serve them (a short read, a body cut off on every retry, an error answer).",
    "unsupported_codec": "An audio stream that no decoder here handles.",
    "truncated": "The data ends before its header says it should, or the decoder hit damaged data.",
    "format_changed": "The sample format, rate or channel count changed mid-stream (concatenated ADTS streams).",
    "no_audio": "An audio stream that decodes to no samples.",
    "too_large": "Over `filters.max_size_bytes`.",
    "too_long": "Over `filters.max_duration_s`, by its header or as decoded.",
    "timeout": "Still being fetched, decoded and cut after `filters.decode_timeout_s`.",
    "out_of_memory": "Its decode worker went over `run.decode_memory_gib`.",
    "object_changed": "The object was replaced after it was listed (its etag changed).",
    "no_such_object": "The object is gone (deleted after it was listed), or a manifest row names none.",
    "access_denied": "The store refused to serve it.",
    "bad_manifest_row": "An input manifest row that names no object: no `uri`, not an s3:// URI or absolute path, "
    "a value of the wrong type, a line that is not JSON.",
    "worker_lost": "The process cutting it died on every retry (a codec crash, the OOM killer).",
    "engine_failed": "The engine failed on its blocks after retries, or no engine worker was left to take them.",
    "compliance_failed": "Compliance could not be applied to it (the redacted audio was not written): "
    "nothing of it is written unredacted.",
    "internal_error": "A bug: anything unexpected, logged with its traceback.",
}


@dataclass(frozen=True)
class Failure:
    """Why a recording failed: its kind, and the detail for a person (one line; it may name the
    object, so it goes to the rows and the manifest's examples, never to metric labels)."""

    kind: Kind
    detail: str


class Failed(Exception):
    """Fails one recording (the run goes on): `kind` from KINDS; str() is the detail."""

    def __init__(self, kind: Kind, detail: str) -> None:
        super().__init__(detail)
        self.kind: Kind = kind

    @classmethod
    def of(cls, failure: Failure) -> Failed:
        return cls(failure.kind, failure.detail)

    @property
    def failure(self) -> Failure:
        return Failure(self.kind, str(self))

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # pickled whole across processes
        return type(self), (self.kind, str(self))


class SourceError(Failed):
    """An object (or the input itself) could not be read from its store."""


class DecodeError(Failed):
    """The recording cannot be decoded."""


class LimitExceeded(Failed):
    """A per-recording limit (decode time, worker memory) was crossed while it was cut."""


# -- errors that stop a command ---------------------------------------------------------------------
class ConfigError(ValueError):
    """A configuration problem, worded for the person who has to fix it."""


class OutputError(Exception):
    """The output store cannot be read or written; the run stops and commits nothing more."""


class EngineStartError(RuntimeError):
    """No engine worker could start, or one of them failed to (bad model, out of memory)."""


class CtcHeadMissing(EngineStartError):
    """The model folder has no CTC head: word times and speculative decoding cannot run."""

    def __init__(self, model_dir: str, head: str) -> None:
        self.model_dir, self.head = model_dir, head
        self.fix = (
            "use the full Granite 4.0 Speech checkpoint, or set decoding.word_times: false and "
            "decoding.speculative: off"
        )
        super().__init__(
            f"the model in {model_dir} has no CTC head ({head}): word times and speculative decoding need it; "
            + self.fix
        )

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # raised in an engine worker, read in the driver
        return type(self), (self.model_dir, self.head)


class ModelSourceError(Exception):
    """The model cannot be fetched or fails verification; str() says which and why."""


class SubmitError(Exception):
    """Rendering or creating a Kubernetes job failed; str() says what to do. `status`: the
    Kubernetes API's HTTP status, where it answered (409: the object exists already)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# -- exit codes ---------------------------------------------------------------------------------
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
