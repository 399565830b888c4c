"""The CTC stage in front of both engines, on real speech and the offline tiny model.

With random weights the CTC head is never sure, so each path of IBM's rule is forced with the
thresholds, and the routing is proven by what reaches the engine: a block taken from CTC makes no
engine call at all, a verified block one forward pass and no generate call, a rejected draft is
generated exactly as with speculative decoding off.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pipeline.audio.blocks import ChannelBlocker
from pipeline.config import DecodingConfig, load_config
from pipeline.engines.ctc.head import check_head
from pipeline.engines.ctc.speculative import route, verifies
from pipeline.engines.factory import make_engine
from pipeline.engines.requests import requests_for
from pipeline.errors import CtcHeadMissing
from pipeline.records.prompt import Prompt
from tests import corpus as C

KINDS = ("transformers", "vllm")


@pytest.fixture(scope="module")
def cfg():
    return load_config(None, {"input.uri": "x", "engine.dtype": "float32"})


@pytest.fixture(scope="module")
def decoders(tiny_model, cfg):
    os.environ["HF_HUB_OFFLINE"] = "1"
    return {kind: make_engine(kind, tiny_model, cfg, device="cpu") for kind in KINDS}


@pytest.fixture(scope="module")
def requests(cfg, decoders):
    call = C.make_call(C.speech_utterances()[:5], 0.8)
    b = ChannelBlocker("rec", 0, "mono", cfg.blocks)
    blocks = list(b.push(call.samples[0])) + list(b.finish())
    reqs = requests_for(blocks, {"rec": Prompt()}, decoders["vllm"].tokenizer, cfg)
    assert len({r.audio.size for r in reqs}) > 1  # more than one length group
    return [dataclasses.replace(r, max_tokens=min(r.max_tokens, 24)) for r in reqs]


def forced(dec, **settings):
    """The decoder with its thresholds set, for one test (verify on: `auto` skips it on CPUs)."""
    dec.cfg = DecodingConfig(**{"verify": "on", **settings})
    return dec


class Forbidden:
    def __init__(self, what: str) -> None:
        self.what = what

    def __call__(self, *a, **kw):
        raise AssertionError(f"{self.what} was called")


def with_words_checked(results, requests):
    for res, r in zip(results, requests):
        assert [w.word for w in res.words] == res.text.split()
        timed = [w for w in res.words if w.start_s is not None]
        assert [w.start_s for w in timed] == sorted(w.start_s for w in timed)
        for w in timed:
            assert 0 <= w.start_s <= w.end_s <= r.duration_s + 1e-9
    return results


@pytest.mark.parametrize("kind", KINDS)
def test_blocks_taken_from_ctc_never_reach_the_engine(decoders, requests, kind, monkeypatch):
    dec = forced(decoders[kind], ctc_threshold=1e9)
    # Blocks whose greedy CTC path spells Latin-1 text (on random weights some hit a Katakana class
    # and have no CTC text: those are generated, see the mixed test).
    requests = [r for r, f in zip(requests, dec.head.run([r.audio for r in requests])) if f.text]
    assert len(requests) >= 2
    frames = dec.head.run([r.audio for r in requests])
    monkeypatch.setattr(dec.engine, "transcribe", Forbidden("generate"))
    monkeypatch.setattr(dec.engine, "verify", Forbidden("verify"))
    out = with_words_checked(dec.transcribe(requests), requests)
    assert [r.decoded_by for r in out] == ["ctc"] * len(requests)
    assert [r.text for r in out] == [f.text for f in frames]
    assert all(r.output_tokens == 0 and r.finish_reason == "stop" for r in out)
    assert any(w.start_s is not None for r in out for w in r.words)


@pytest.mark.parametrize("kind", KINDS)
def test_a_verified_block_costs_one_forward_pass_and_no_generate(decoders, requests, kind, monkeypatch):
    dec = forced(decoders[kind], ctc_threshold=-1.0, confidence_threshold=0.0)
    requests = [r for r, f in zip(requests, dec.head.run([r.audio for r in requests])) if f.text]
    monkeypatch.setattr(dec.engine, "transcribe", Forbidden("generate"))
    passes = []
    if kind == "vllm":
        real = dec.engine.llm.generate

        def counted(prompts, params, **kw):
            assert params.max_tokens == 1 and params.prompt_logprobs == 0  # a prefill, no decoding
            passes.append(len(prompts))
            return real(prompts, params, **kw)

        monkeypatch.setattr(dec.engine.llm, "generate", counted)
    else:
        real = dec.engine.model.forward

        def counted(*a, **kw):
            passes.append(kw["input_ids"].shape[0])
            return real(*a, **kw)

        monkeypatch.setattr(dec.engine.model, "forward", counted)
        monkeypatch.setattr(dec.engine.model, "generate", Forbidden("generate"))
    out = with_words_checked(dec.transcribe(requests), requests)
    assert [r.decoded_by for r in out] == ["verified"] * len(requests)
    groups = len({r.audio.size for r in requests})
    assert len(passes) == groups and sum(passes) == len(requests)  # one pass per length group, each block once
    assert all(r.output_tokens == len(r.token_ids) > 0 for r in out)


def test_the_transformers_stage_shares_the_engines_weights(decoders):
    dec = decoders["transformers"]
    assert dec.head.encoder is dec.engine.model.model.encoder  # no second copy of the encoder


def test_both_engines_score_a_draft_alike(decoders, requests):
    draft = [list(decoders["vllm"].tokenizer.encode("hello world", add_special_tokens=False))] * len(requests)
    hf, vl = (decoders[k].engine.verify(requests, draft) for k in KINDS)
    assert np.allclose(np.array(hf), np.array(vl), atol=2e-3), (hf[0], vl[0])
    assert all(0 < p < 1 for row in hf for p in row)


@pytest.mark.parametrize("kind", KINDS)
def test_a_rejected_draft_is_generated_as_with_speculative_decoding_off(decoders, requests, kind):
    dec = decoders[kind]
    off = forced(dec, speculative="off").transcribe(requests)
    before = dict(dec.calls)
    rejected = with_words_checked(
        forced(dec, ctc_threshold=-1.0, confidence_threshold=1.0).transcribe(requests), requests
    )
    drafts = sum(1 for f in dec.head.run([r.audio for r in requests]) if f.text)
    assert dec.calls["verify_blocks"] - before["verify_blocks"] == drafts > 0
    assert dec.calls["generate_blocks"] - before["generate_blocks"] == len(requests)
    assert [r.decoded_by for r in rejected] == ["llm"] * len(requests) == [r.decoded_by for r in off]
    assert [r.token_ids for r in rejected] == [r.token_ids for r in off]


@pytest.mark.parametrize("kind", KINDS)
def test_one_batch_mixes_the_paths_and_keeps_its_order(decoders, requests, kind):
    dec = decoders[kind]
    frames = dec.head.run([r.audio for r in requests])
    median = float(np.median([f.confidence for f in frames]))
    dec = forced(dec, ctc_threshold=median, confidence_threshold=1.0)
    out = dec.transcribe(requests)
    want = {"ctc": "ctc", "verify": "llm", "llm": "llm"}
    assert [r.decoded_by for r in out] == [want[route(f, dec.cfg)] for f in frames]
    # decoding.verify auto on a CPU: the uncertain blocks go straight to generation.
    before = dict(dec.calls)
    auto = dec.cfg.model_copy(update={"verify": "auto"})
    dec.cfg = auto
    assert [r.decoded_by for r in dec.transcribe(requests)] == [r.decoded_by for r in out]
    assert dec.calls["verify"] == before["verify"] and verifies(auto, "cuda") and not verifies(auto, "cpu")
    assert {"ctc", "llm"} <= {r.decoded_by for r in out}
    assert [r.block_id for r in out] == [r.block_id for r in requests]


@pytest.mark.parametrize("kind", KINDS)
def test_engines_generate_from_the_ctc_stages_encoding_with_the_same_ids(decoders, requests, kind, monkeypatch):
    """Each block goes to the engine as prompt embeddings built from the CTC stage's encoder pass
    (the block is encoded once), and comes back exactly as generated from the audio itself."""
    dec = forced(decoders[kind], speculative="off")
    seen = []
    real = dec.engine.transcribe

    def spy(reqs):
        seen.extend(r.prompt_embeds is not None for r in reqs)
        return real(reqs)

    monkeypatch.setattr(dec.engine, "transcribe", spy)
    embedded = dec.transcribe(requests)
    assert seen == [True] * len(requests)
    from_audio = real(requests)  # the engine's own encoder
    assert [r.token_ids for r in embedded] == [r.token_ids for r in from_audio]
    assert [r.prompt_tokens for r in embedded] == [r.prompt_tokens for r in from_audio]


def test_vllm_takes_a_pass_of_prompt_embeddings_in_one_call(decoders, requests, monkeypatch):
    """Blocks of several lengths, as prompt embeddings: one `generate` (on CPU each call streams
    all weights once per decode step); the ids equal the audio path's (the test above)."""
    dec = forced(decoders["vllm"], speculative="off")
    calls = []
    real = dec.engine.llm.generate
    monkeypatch.setattr(
        dec.engine.llm, "generate", lambda prompts, *a, **kw: calls.append(len(prompts)) or real(prompts, *a, **kw)
    )
    dec.transcribe(requests)
    assert calls == [len(requests)]


def test_word_times_off_keeps_one_untimed_entry_per_word(decoders, requests):
    dec = forced(decoders["transformers"], speculative="off", word_times=False)
    for r in dec.transcribe(requests[:2]):
        assert [w.word for w in r.words] == r.text.split() and all(w.start_s is None for w in r.words)


@pytest.fixture(scope="module")
def headless(tiny_model, tmp_path_factory):
    """The tiny model without its CTC head, as a folder of a converted or trimmed checkpoint would be."""
    from safetensors.numpy import load_file, save_file

    out = tmp_path_factory.mktemp("headless")
    for f in tiny_model.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy(f, out / f.name)
    weights = load_file(str(tiny_model / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if not k.startswith("encoder.out.")}, str(out / "model.safetensors"))
    return out


def test_a_model_without_the_ctc_head_fails_at_start_with_the_remedy(headless, tiny_model, tmp_path):
    check_head(tiny_model)
    with pytest.raises(CtcHeadMissing, match="decoding.word_times: false and decoding.speculative: off"):
        check_head(headless)
    wav = C.encode(C.speech_utterances()[0].samples, 16000, "wav_s16", tmp_path / "a.wav")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "pipeline.cli", "transcribe", "--model", str(headless), "--engine", "transformers"]
    p = subprocess.run([*cmd, str(wav)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode != 0 and "has no CTC head" in p.stderr and "Traceback" not in p.stderr
    doctor = [sys.executable, "-m", "pipeline.cli", "doctor", "--model", str(headless)]
    d = subprocess.run(doctor, capture_output=True, text=True, env=env, timeout=300)
    assert d.returncode != 0 and "has no CTC head" in d.stdout and "decoding.word_times: false" in d.stdout, d.stdout
    # Both switched off, the same folder transcribes (the head is never loaded).
    env |= {"GRANITE_BATCH_DECODING__WORD_TIMES": "false", "GRANITE_BATCH_DECODING__SPECULATIVE": "off"}
    p = subprocess.run([*cmd, str(wav)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert '"decoded_by": "llm"' in p.stdout
