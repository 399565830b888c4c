"""pipeline/errors.py: the failure kinds are one documented set, an error that fails a recording
carries its kind across processes (plan's pool, Ray's workers), and each error ends the CLI with
its exit code."""

from __future__ import annotations

import pickle
from typing import get_args

import pytest

from pipeline.errors import (
    KINDS,
    ConfigError,
    CtcHeadMissing,
    DecodeError,
    EngineStartError,
    Failure,
    Kind,
    LimitExceeded,
    ModelSourceError,
    OutputError,
    SourceError,
    SubmitError,
    code_of,
)


def test_every_kind_is_documented():
    assert tuple(KINDS) == get_args(Kind) and all(doc.endswith(".") for doc in KINDS.values())


@pytest.mark.parametrize("cls", [SourceError, DecodeError, LimitExceeded])
def test_a_failure_keeps_its_kind_through_a_pickle(cls):
    err = pickle.loads(pickle.dumps(cls("truncated", "corrupt or truncated at 1.00 s: x")))
    assert type(err) is cls and err.failure == Failure("truncated", "corrupt or truncated at 1.00 s: x")


def test_a_missing_ctc_head_keeps_its_fields_through_a_pickle():
    err = pickle.loads(pickle.dumps(CtcHeadMissing("/models/x", "encoder.out.weight")))
    assert (err.model_dir, err.head) == ("/models/x", "encoder.out.weight") and "decoding.word_times" in err.fix


@pytest.mark.parametrize(
    "err, code",
    [
        (ConfigError("x"), 2),
        (SourceError("no_such_object", "input x does not exist"), 2),
        (ModelSourceError("x"), 2),
        (SubmitError("x"), 2),
        (OutputError("x"), 3),
        (EngineStartError("x"), 3),
        (CtcHeadMissing("/m", "h"), 3),
        (RuntimeError("a bug"), 4),
        (KeyboardInterrupt(), 130),
        (SystemExit(143), 143),
    ],
)
def test_each_error_ends_with_its_exit_code(err, code):
    assert code_of(err) == code
