"""Session fixtures: real S3 servers (moto; Ceph RGW for the `ceph` tier) and a real audio corpus."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import corpus as C
from tests.services.s3 import S3Service


@dataclass(frozen=True)
class Corpus:
    root: Path
    call: C.Call  # stereo 16 kHz call, encoded in every format under formats/
    formats: dict[str, Path]
    telephone: Path  # stereo 8 kHz mu-law WAV
    telephone_call: C.Call
    bad: dict[str, Path]
    misnamed: dict[str, Path]
    silence: Path  # 20 s of digital silence
    noise_floor: Path  # 20 s at a -60 dBFS noise floor


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    root = tmp_path_factory.mktemp("corpus")
    utts = C.speech_utterances()
    call = C.make_call(utts[:6], [0.6, 1.2, 0.5, 2.0, 0.8, 1.5, 1.0], channels=2, rate=16000)
    (root / "formats").mkdir()
    formats = {
        f: C.encode(call.samples, call.rate, f, root / "formats" / f"call_{f}.{C.FORMAT_EXT[f]}") for f in C.FORMATS
    }
    (root / "telephone").mkdir()
    telephone = root / "telephone" / "call.wav"
    tel_call = C.telephone_call(telephone)
    (root / "quiet").mkdir()
    silence = C.encode(C.silence(20.0)[None, :], 16000, "wav_s16", root / "quiet" / "silence.wav")
    noise = C.encode(C.silence(20.0, noise_dbfs=-60.0)[None, :], 16000, "wav_s16", root / "quiet" / "noise_floor.wav")
    return Corpus(
        root,
        call,
        formats,
        telephone,
        tel_call,
        C.write_bad_inputs(root / "bad"),
        C.write_misnamed(root / "misnamed"),
        silence,
        noise,
    )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline random-weight Granite Speech (real architecture, ~3 MB)."""
    from pipeline.testing.testmodel import build_test_model

    return build_test_model(tmp_path_factory.mktemp("tiny"))


def _service_env(svc: S3Service) -> Iterator[S3Service]:
    # Credentials come the usual way (environment); the endpoint does not, so every test must
    # pass --endpoint-url / input.endpoint_url as a user of an S3-compatible store would.
    env = svc.env(endpoint=False)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield svc
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def moto() -> Iterator[S3Service]:
    from tests.services.moto_s3 import start_moto

    with start_moto() as svc:
        yield from _service_env(svc)


@pytest.fixture(scope="session")
def ceph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Service]:
    from tests.services.ceph_rgw import start_ceph_rgw

    with start_ceph_rgw(tmp_path_factory.mktemp("ceph")) as svc:
        yield from _service_env(svc)


def upload_tree(svc: S3Service, bucket: str, prefix: str, files: dict[str, Path]) -> None:
    """Put local files under s3://bucket/prefix/<name>, creating the bucket if needed."""
    s3 = svc.client()
    if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=bucket)
    for name, path in files.items():
        s3.upload_file(str(path), bucket, f"{prefix}/{name}")
