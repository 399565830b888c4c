"""One config model: precedence CLI > env > YAML > defaults, unknown keys rejected, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import JobConfig, load_config
from pipeline.errors import ConfigError


@pytest.fixture
def job(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(
        "input: {uri: s3://calls/2026/, include: ['*.wav']}\n"
        "blocks: {max_s: 3.0, pad_s: 0.1}\n"
        "channels: {labels: {0: agent, 1: customer}}\n"
    )
    return path


def test_defaults():
    cfg = load_config(None, {"input.uri": "/data"})
    assert cfg.blocks.max_s == 4.0 and cfg.channels.policy == "split" and cfg.engine.kind == "vllm"
    assert cfg.model.id == "ibm-granite/granite-4.0-1b-speech"


def test_precedence_cli_over_env_over_yaml_over_defaults(job, monkeypatch):
    cfg = load_config(job)
    assert (cfg.input.uri, cfg.blocks.max_s, cfg.blocks.pad_s, cfg.blocks.min_s) == ("s3://calls/2026/", 3.0, 0.1, 1.0)
    monkeypatch.setenv("GRANITE_BATCH_BLOCKS__MAX_S", "3.5")
    monkeypatch.setenv("GRANITE_BATCH_INPUT__URI", "s3://env/")
    cfg = load_config(job)
    assert (cfg.input.uri, cfg.blocks.max_s, cfg.blocks.pad_s) == ("s3://env/", 3.5, 0.1)
    assert cfg.input.include == ["*.wav"]  # nested sections merge key by key
    cfg = load_config(job, {"input.uri": "/cli", "channels.policy": "mix"})
    assert (cfg.input.uri, cfg.blocks.max_s, cfg.channels.policy) == ("/cli", 3.5, "mix")
    assert cfg.channels.labels == {0: "agent", 1: "customer"}


@pytest.mark.parametrize(
    "yaml_text, expected",
    [
        ("input: {uri: x}\nblocks: {max_seconds: 3}\n", "blocks.max_seconds: unknown key (did you mean `max_s`?)"),
        ("input: {uri: x}\nchanels: {policy: mix}\n", "chanels: unknown key (did you mean `channels`?)"),
        ("input: {uri: x}\nchannels: {policy: stereo}\n", "channels.policy: Input should be 'split' or 'mix'"),
        ("input: {uri: x}\nblocks: {max_s: 2, min_s: 2}\n", "blocks.min_s must be at least 0.1 s below blocks.max_s"),
    ],
)
def test_bad_yaml_names_the_key(tmp_path, yaml_text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert expected in str(err.value)


def test_bad_value_says_how_to_set_it():
    with pytest.raises(ConfigError) as err:
        load_config(None, {"input.uri": "x", "channels.policy": "both"})
    msg = str(err.value)
    assert "channels.policy" in msg and "`--channels`" in msg and "`GRANITE_BATCH_CHANNELS__POLICY`" in msg


def test_unknown_env_keys_are_rejected(monkeypatch):
    monkeypatch.setenv("GRANITE_BATCH_BLOKS__MAX_S", "3")
    with pytest.raises(ConfigError, match="GRANITE_BATCH_BLOKS__MAX_S"):
        load_config(None, {"input.uri": "x"})
    monkeypatch.delenv("GRANITE_BATCH_BLOKS__MAX_S")
    monkeypatch.setenv("GRANITE_BATCH_BLOCKS__MAXS", "3")
    with pytest.raises(ConfigError, match="blocks.maxs: unknown key"):
        load_config(None, {"input.uri": "x"})


def test_config_is_frozen_and_round_trips():
    cfg = load_config(None, {"input.uri": "s3://b/p"})
    with pytest.raises(Exception):
        cfg.blocks.max_s = 1.0  # type: ignore[misc]
    assert JobConfig.model_validate(cfg.model_dump()) == cfg


def test_missing_job_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/job.yaml")


def test_yaml_syntax_error_and_wrong_shape(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: {uri: x\nblocks: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- input\n- blocks\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(bad)


def test_lowercase_env_typo_is_rejected(monkeypatch):
    monkeypatch.setenv("granite_batch_blokcs__max_s", "3")
    with pytest.raises(ConfigError, match="unknown key `blokcs`"):
        load_config(None, {"input.uri": "x"})


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parents[1] / "jobs").glob("*.yaml")), ids=lambda p: p.name
)
def test_shipped_job_files_are_valid(path):
    cfg = load_config(path)
    assert cfg.input.uri and (cfg.output.uri or path.name == "local-demo.yaml")


def test_schedule_and_date_placeholders():
    from datetime import datetime, timezone

    cfg = load_config(None, {"input.uri": "s3://calls/{date:%Y/%m/%d}/", "schedule.cron": "0 2 * * *"})
    assert cfg.for_run(datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)).input.uri == "s3://calls/2026/02/28/"
    assert cfg.schedule.mode == "raycronjob" and cfg.schedule.time_zone == "Etc/UTC"
    with pytest.raises(ConfigError, match="five fields"):
        load_config(None, {"input.uri": "x", "schedule.cron": "every night"})
