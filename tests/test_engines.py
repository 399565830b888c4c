"""Granite through both engines on the offline tiny model: same greedy ids, prompts, guards, sources.

vLLM's CPU build really runs here (one engine for the whole module: it takes a few seconds to start).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.audio.blocks import ChannelBlocker
from pipeline.config import ModelConfig, load_config
from pipeline.engines.base import make_result
from pipeline.engines.factory import make_engine
from pipeline.engines.guards import collapse_repetitions, max_tokens
from pipeline.engines.model_source import loadable_dir, patch_multipliers, resolve_model
from pipeline.engines.prompts import render
from pipeline.engines.requests import requests_for
from pipeline.errors import ModelSourceError
from pipeline.prompt import merge_keywords, parse_keywords_text
from pipeline.records.audio import SAMPLE_RATE
from pipeline.records.prompt import Prompt
from tests import corpus as C

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_CONFIG = ROOT.parent / "shared" / "reference" / "granite-4.0-1b-speech.config.json"


@pytest.fixture(scope="module")
def cfg():
    return load_config(None, {"input.uri": "x", "engine.dtype": "float32"})


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return tiny_model


@pytest.fixture(scope="module")
def engines(tiny, cfg):
    os.environ["HF_HUB_OFFLINE"] = "1"
    return {kind: make_engine(kind, tiny, cfg) for kind in ("transformers", "vllm")}


@pytest.fixture(scope="module")
def blocks(cfg):
    call = C.make_call(C.speech_utterances()[:6], 0.8)
    b = ChannelBlocker("rec", 0, "mono", cfg.blocks)
    out = list(b.push(call.samples[0])) + list(b.finish())
    assert len(out) >= 6 and min(x.duration_s for x in out) < 2.0  # short and long blocks
    return out


def run(engine, blocks, cfg, spec=Prompt(), cap=None):
    from dataclasses import replace

    reqs = requests_for(blocks, {"rec": spec}, engine.tokenizer, cfg)
    return engine.transcribe([replace(r, max_tokens=min(r.max_tokens, cap)) for r in reqs] if cap else reqs)


def test_both_engines_give_identical_greedy_ids(engines, blocks, cfg):
    # 24 tokens: on this random model the two float32 stacks (vLLM's CPU kernels, PyTorch's)
    # drift apart after 25-35 generated tokens on some blocks (a near-tie between two random
    # logits), which is where real transcripts of 3-4 s end.
    hf, vl = (run(engines[k], blocks, cfg, cap=24) for k in ("transformers", "vllm"))
    assert [r.token_ids for r in hf] == [r.token_ids for r in vl]
    assert [r.prompt_tokens for r in hf] == [r.prompt_tokens for r in vl]
    assert [r.text for r in hf] == [r.text for r in vl]
    assert len({r.token_ids for r in hf}) > 1  # the audio matters: outputs differ between blocks
    for r in hf:
        assert r.finish_reason in ("stop", "length", "guard") and r.output_tokens == len(r.token_ids)
        assert r.prompt_variant == "transcribe" and 1 <= r.batch_size <= len(blocks) and r.batch_s > 0


def test_results_do_not_depend_on_batch_composition(engines, blocks, cfg):
    for engine in engines.values():
        together = run(engine, blocks, cfg)
        alone = [run(engine, [b], cfg)[0] for b in blocks[::-1]][::-1]
        assert [r.token_ids for r in together] == [r.token_ids for r in alone], engine.name


def test_keywords_reach_the_prompt_tokens(engines, blocks, cfg):
    spec = Prompt(keywords=("Acme", "Zorblax 9000"))
    tok = engines["transformers"].tokenizer
    prompt = render(tok, spec)
    assert prompt.endswith(
        "can you transcribe the speech into a written format? Keywords: Acme, Zorblax 9000\n ASSISTANT:"
    )
    assert prompt.startswith("USER: <|audio|>")
    extra = len(tok(prompt)["input_ids"]) - len(tok(render(tok, Prompt()))["input_ids"])
    assert extra > 5
    for kind, engine in engines.items():
        plain, biased = run(engine, blocks[:1], cfg)[0], run(engine, blocks[:1], cfg, spec)[0]
        assert biased.prompt_tokens - plain.prompt_tokens == extra, kind
        assert biased.keywords == ("Acme", "Zorblax 9000") and biased.prompt_variant == "transcribe+keywords"


def test_translation_prompt(engines, cfg):
    spec = Prompt(task="translate", language="English")
    assert render(engines["vllm"].tokenizer, spec) == "USER: <|audio|>translate the speech to English\n ASSISTANT:"
    assert spec.variant == "translate:English"


def test_token_cap_flags_length(engines, blocks, cfg):
    from dataclasses import replace

    for kind, engine in engines.items():
        reqs = requests_for(blocks[:2], {"rec": Prompt()}, engine.tokenizer, cfg)
        capped = engine.transcribe([replace(r, max_tokens=3) for r in reqs])
        assert all(r.output_tokens <= 3 for r in capped), kind
        forced = engine.transcribe([replace(r, max_tokens=12, min_tokens=12) for r in reqs])
        assert [r.output_tokens for r in forced] == [12, 12] and {r.finish_reason for r in forced} <= {
            "length",
            "guard",
        }


def test_forced_token_counts_come_from_the_config_in_every_path(engines, blocks):
    """`engine.force_tokens_per_s` is read by `requests_for` itself, so `run`, `transcribe` and the
    benches (which all build requests through it) force the same lengths."""
    forced_cfg = load_config(None, {"input.uri": "x", "engine.dtype": "float32", "engine.force_tokens_per_s": 5})
    reqs = requests_for(blocks[:3], {"rec": Prompt()}, engines["vllm"].tokenizer, forced_cfg)
    assert (
        [r.max_tokens for r in reqs]
        == [r.min_tokens for r in reqs]
        == [max(1, round(b.duration_s * 5)) for b in blocks[:3]]
    )


def test_max_tokens_follows_duration():
    assert max_tokens(4.0) == 80 and max_tokens(0.5) == 24 and max_tokens(2.0, tokens_per_s=10, margin=0) == 20


def test_repetition_loops_are_collapsed():
    loop = "thank you for calling " * 6 + "goodbye"
    text, changed = collapse_repetitions(loop)
    assert changed and text == "thank you for calling goodbye"
    assert collapse_repetitions("you " * 10 + "there") == ("you there", True)
    # A loop whose first round is capitalised or punctuated differently is still a loop.
    assert collapse_repetitions("Ten of clubs ten of clubs ten of clubs ten of clubs.") == ("Ten of clubs", True)
    # What people really say is left alone.
    for speech in (
        "my pin is nine nine nine one",
        "bye bye bye",
        "ha ha ha ha",
        "no no no no no",
        "very very good",
        "thank you thank you thank you",
    ):
        assert collapse_repetitions(speech) == (speech, False)
        assert collapse_repetitions(speech, duration_s=2.0) == (speech, False)  # at the pace people speak


def test_text_faster_than_speech_has_its_shorter_repeats_collapsed():
    clause = "unless to be rather cold hearted and rather selfish is"
    looped = "unless to be" + " rather cold hearted and rather selfish is" * 3  # 24 words: seen on a 3.8 s block
    assert collapse_repetitions(looped) == (looped, False)  # three rounds: not a loop by count alone
    assert collapse_repetitions(looped, duration_s=3.8) == (clause, True)  # 6.3 words/s: no one speaks that fast
    assert collapse_repetitions(looped, duration_s=6.0) == (looped, False)  # 4 words/s: could be speech
    assert collapse_repetitions("ten of clubs ten of clubs ten of clubs", duration_s=1.1) == ("ten of clubs", True)
    assert collapse_repetitions("seven of clubs seven of clubs", duration_s=1.6) == (
        "seven of clubs seven of clubs",
        False,
    )


def test_a_collapsed_result_is_flagged_guard():
    from pipeline.engines.base import EngineRequest

    req = EngineRequest("b", np.zeros(10, np.float32), "p", "transcribe", (), 80)
    loop = "thank you for holding " * 5
    r = make_result(req, loop, [1] * 20, 50, "stop", 0.1, 1)
    assert r.text == "thank you for holding" and r.finish_reason == "guard"
    capped = make_result(req, loop, [1] * 20, 50, "length", 0.1, 1)
    assert capped.text == "thank you for holding" and capped.finish_reason == "length"  # the stronger flag stays
    assert make_result(req, "", [], 50, "stop", 0.1, 1).text == ""  # empty is a valid answer


def test_the_guard_measures_the_blocks_own_length_not_its_padding():
    """A 1 s block padded to a 2 s length bucket: "thank you" twice in 6 words is faster than anyone
    speaks for 1 s (a loop, collapsed), but not for the 2 s of padded audio."""
    from pipeline.engines.base import EngineRequest

    padded = np.zeros(2 * SAMPLE_RATE, np.float32)
    req = EngineRequest("b", padded, "p", "transcribe", (), 80, duration_s=1.0)
    text = "thank you thank you for calling"
    assert make_result(req, text, [1] * 8, 50, "stop", 0.1, 1).text == "thank you for calling"
    unpadded = EngineRequest("b", padded, "p", "transcribe", (), 80, duration_s=2.0)
    assert make_result(unpadded, text, [1] * 8, 50, "stop", 0.1, 1).text == text


def test_keyword_sources_merge():
    assert parse_keywords_text("Acme # brand\nZorblax, ACME\n\n  Widget Pro  \nC#, F#\n# note\n") == [
        "Acme",
        "Zorblax",
        "ACME",
        "Widget Pro",
        "C#",
        "F#",
    ]
    # Special-token text from a sidecar never reaches the prompt as a special token.
    assert merge_keywords(["<|audio|>", "Acme<|end_of_text|>"], limit=5) == ("Acme",)
    assert merge_keywords(["Acme", "Beta"], ["acme", "Gamma"], limit=10) == ("Acme", "Beta", "Gamma")
    assert merge_keywords(["a", "b", "c"], limit=2) == ("a", "b")


def test_real_hub_config_loads_in_transformers_5(tmp_path):
    from transformers import GraniteSpeechConfig

    hub = json.loads(REFERENCE_CONFIG.read_text())
    hub.pop("_note", None)
    hub["text_config"]["embedding_multiplier"] = 12  # as the hub file stores it
    # (transformers 5.0-era strict validation rejected this; 5.19 installed here accepts it, so the
    # patch is checked by its effect: the loaders always see a float.)
    cfg = GraniteSpeechConfig(**patch_multipliers(hub))
    assert cfg.text_config.embedding_multiplier == 12.0 and cfg.encoder_config.num_layers == 16
    # The view folder gives loaders the patched config and leaves the source alone.
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text(json.dumps(hub))
    (tmp_path / "src" / "model.safetensors").write_bytes(b"weights")
    view = loadable_dir(tmp_path / "src", tmp_path / "cache")
    assert view != tmp_path / "src" and (view / "model.safetensors").read_bytes() == b"weights"
    assert json.loads((view / "config.json").read_text())["text_config"]["embedding_multiplier"] == 12.0
    assert json.loads((tmp_path / "src" / "config.json").read_text())["text_config"]["embedding_multiplier"] == 12
    assert isinstance(GraniteSpeechConfig.from_pretrained(view).text_config.embedding_multiplier, float)
    (tmp_path / "src" / "tokenizer.json").write_text("{}")  # the folder changed: a fresh, complete view
    newer = loadable_dir(tmp_path / "src", tmp_path / "cache")
    assert newer != view and (newer / "tokenizer.json").exists()
    with pytest.raises(ModelSourceError, match="not a model folder"):
        loadable_dir(tmp_path, tmp_path / "cache")


def test_s3_mirror_loads_and_a_corrupted_one_is_refused(moto, tiny, tmp_path, cfg):
    env = {**os.environ}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "mirror-model",
            str(tiny),
            "s3://models/granite-tiny",
            "--endpoint-url",
            moto.endpoint_url,
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    s3 = moto.client()
    if r.returncode != 0 and "NoSuchBucket" in r.stderr:
        s3.create_bucket(Bucket="models")
        r = subprocess.run(r.args, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    bad = subprocess.run(
        [*r.args[:5], "s3://no-such-bucket-x/tiny", *r.args[6:]], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and "cannot write the mirror s3://no-such-bucket-x/tiny: NoSuchBucket" in bad.stderr, (
        bad.stderr
    )
    mcfg = ModelConfig(id="s3://models/granite-tiny", endpoint_url=moto.endpoint_url, cache_dir=str(tmp_path / "cache"))
    local = resolve_model(mcfg)
    assert (local / "model.safetensors").read_bytes() == (tiny / "model.safetensors").read_bytes()
    engine = make_engine("transformers", local, cfg)
    assert engine.transcribe(requests_for([], {}, engine.tokenizer, cfg)) == []
    assert resolve_model(mcfg) == local  # cached and verified: no second download

    # Re-pushing a mirror gives workers a new verified copy; a copy in use is never touched.
    (tmp_path / "v2").mkdir()
    for f in tiny.iterdir():
        (tmp_path / "v2" / f.name).write_bytes(f.read_bytes())
    (tmp_path / "v2" / "generation_config.json").write_text('{"eos_token_id": 373}')
    r2 = subprocess.run([*r.args[:4], str(tmp_path / "v2"), *r.args[5:]], capture_output=True, text=True, env=env)
    assert r2.returncode == 0, r2.stderr
    newer = resolve_model(mcfg)
    assert newer != local and (local / "model.safetensors").exists()
    assert (newer / "generation_config.json").read_text() == '{"eos_token_id": 373}'
    # Corrupt one file in the mirror: a fresh node refuses to load it.
    s3.put_object(Bucket="models", Key="granite-tiny/model.safetensors", Body=b"corrupted" * 1000)
    assert resolve_model(mcfg) == newer  # an already verified copy keeps serving this node
    fresh = mcfg.model_copy(update={"cache_dir": str(tmp_path / "cache2")})
    with pytest.raises(ModelSourceError, match="model.safetensors does not match the manifest"):
        resolve_model(fresh)
    # No manifest (a half-copied or hand-made mirror): refused too.
    s3.delete_object(Bucket="models", Key="granite-tiny/granite-batch-manifest.json")
    with pytest.raises(ModelSourceError, match="cannot read granite-batch-manifest.json"):
        resolve_model(mcfg.model_copy(update={"cache_dir": str(tmp_path / "cache3")}))


def test_unreachable_hub_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelSourceError, match="air-gapped sites use a local folder or an s3:// mirror"):
        resolve_model(ModelConfig(cache_dir=str(tmp_path / "c")))


def test_transcribe_cli(tiny, tmp_path, corpus):
    audio = tmp_path / "call.wav"
    audio.write_bytes(corpus.telephone.read_bytes())
    (tmp_path / "call.wav.keywords.txt").write_text("Zorblax\n")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "transcribe",
            str(audio),
            str(bad),
            "--model",
            str(tiny),
            "--engine",
            "vllm",
            "--keywords",
            "Acme",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert r.returncode == 1, r.stderr  # one input failed
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    ok = [x for x in lines if "text" in x]
    assert {x["channel"] for x in ok} == {0, 1} and all(x["keywords"] == ["Acme", "Zorblax"] for x in ok)
    assert all(0 <= x["start_s"] < x["end_s"] <= x["start_s"] + 4.0 for x in ok)
    failed = {"source_uri": str(bad), "status": "failed", "error_kind": "not_audio"}
    assert lines[-1] == failed | {"error": "not audio: content is plain text"}

    # A folder is listed with the usual globs (its sidecars are not recordings); a missing file is
    # a failed line and the rest go on; a bad keywords file stops before any model loads.
    missing = str(tmp_path / "nope.wav")
    cli = [sys.executable, "-m", "pipeline.cli", "transcribe"]
    engine_args = ["--model", str(tiny), "--engine", "transformers", "--keywords", "Acme"]
    r = subprocess.run(
        [*cli, missing, str(tmp_path), *engine_args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines[0]["source_uri"] == missing and "does not exist" in lines[0]["error"]
    assert not any(x["source_uri"].endswith(".keywords.txt") for x in lines)
    assert any("text" in x for x in lines) and r.returncode == 1
    r = subprocess.run(
        [*cli, str(audio), "--model", str(tmp_path / "no-model")],
        capture_output=True,
        text=True,
        env={**os.environ, "GRANITE_BATCH_PROMPT__KEYWORDS_FILE": str(tmp_path / "none.txt")},
        timeout=60,
    )
    assert r.returncode == 2 and "prompt.keywords_file" in r.stderr
