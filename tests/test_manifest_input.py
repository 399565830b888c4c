"""Manifest-driven input (sources/manifest.py): CSV, Parquet and JSON lines, local and on S3 (moto),
naming objects in several buckets; every row gets a recording, a bad row one that fails with its
reason; the row's own columns travel with it."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import FiltersConfig, InputConfig
from pipeline.errors import Failure, SourceError
from pipeline.sources import open_source
from tests.conftest import upload_tree


@pytest.fixture(scope="module")
def objects(moto, tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("objects")
    audio = tmp / "a.wav"
    audio.write_bytes(b"RIFF" + b"\0" * 100)
    upload_tree(moto, "calls-east", "2026", {"a.wav": audio})
    upload_tree(moto, "calls-west", "2026", {"b.wav": audio})
    return {"east": "s3://calls-east/2026/a.wav", "west": "s3://calls-west/2026/b.wav", "local": str(audio)}


ROWS = [
    {
        "uri": "east",
        "crm_id": "00123",
        "keywords": "Acme, watsonx",
        "language": "en",
        "channel_labels": "agent,customer",
    },
    {"uri": "west", "crm_id": "00124", "product": "loans"},
    {"uri": "local", "crm_id": "00125"},
    {"uri": "s3://calls-east/2026/missing.wav", "crm_id": "00126"},
    {"uri": "calls/relative.wav", "crm_id": "00127"},
    {"uri": "", "crm_id": "00128"},
    {"uri": "east", "crm_id": "00129"},  # the same object again: done once, counted
]


def _write(kind: str, path, rows: list[dict]) -> None:
    names = sorted({k for r in rows for k in r}, key=lambda k: (k != "uri", k))
    if kind == "csv":
        lines = [",".join(names)] + [",".join(f'"{r.get(k, "")}"' for k in names) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    else:
        pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in names} for r in rows]), path)


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("where", ["local", "s3"])
def test_every_row_gets_a_recording_with_its_own_columns(kind, where, objects, moto, tmp_path):
    rows = [{**r, "uri": objects.get(r["uri"], r["uri"])} for r in ROWS]
    path = tmp_path / f"manifest.{kind}"
    _write(kind, path, rows)
    uri = str(path)
    if where == "s3":
        upload_tree(moto, "catalog", "nightly", {path.name: path})
        uri = f"s3://catalog/nightly/{path.name}"
    source = open_source(InputConfig(uri=uri, endpoint_url=moto.endpoint_url), FiltersConfig())
    recs = list(source.recordings())
    by_crm = {dict(r.meta).get("crm_id"): r for r in recs}
    assert source.stats.duplicate_rows == 1 and len(recs) == len(ROWS) - 1 + (kind == "jsonl")
    east = by_crm["00123"]
    assert east.source_uri == objects["east"] and east.size_bytes == 104 and east.error is None
    assert east.keywords == ("Acme", "watsonx") and east.language == "en"
    assert east.channel_labels == ("agent", "customer")
    assert by_crm["00124"].source_uri == objects["west"] and dict(by_crm["00124"].meta)["product"] == "loans"
    assert by_crm["00125"].source_uri == objects["local"] and by_crm["00125"].error is None
    assert by_crm["00126"].error == Failure("no_such_object", "manifest row 4: no such object")
    assert by_crm["00127"].error == Failure("bad_manifest_row", "manifest row 5: not an s3:// URI or an absolute path")
    assert by_crm["00128"].error == Failure("bad_manifest_row", "manifest row 6: no uri")
    if kind == "jsonl":
        assert recs[-1].error == Failure("bad_manifest_row", "manifest row 8: not a JSON object") and recs[
            -1
        ].source_uri.endswith("#row=8")
    with source.open(by_crm["00124"]) as f:
        assert f.read(4) == b"RIFF"
    with pytest.raises(SourceError, match="no such object"):
        source.open(by_crm["00126"])


def test_a_value_of_the_wrong_type_fails_its_row_only(objects, moto, tmp_path):
    path = tmp_path / "m.jsonl"
    rows = [{"uri": objects["east"], "keywords": 5}, {"uri": objects["west"], "channel_labels": [1, 2]}]
    _write("jsonl", path, rows[:1] + rows[1:])
    source = open_source(InputConfig(uri=str(path), endpoint_url=moto.endpoint_url), FiltersConfig())
    a, b, _ = source.recordings()
    assert a.error == Failure(
        "bad_manifest_row", "manifest row 1: keywords: expected a list of strings or a string, got int"
    )
    assert b.error == Failure(
        "bad_manifest_row", "manifest row 2: channel_labels: expected a list of strings or a string, got list"
    )


def test_a_manifest_without_a_uri_column_stops_the_run(tmp_path, moto):
    path = tmp_path / "m.csv"
    path.write_text("path,crm_id\n/x.wav,1\n")
    source = open_source(InputConfig(uri=str(path), endpoint_url=moto.endpoint_url), FiltersConfig())
    with pytest.raises(SourceError, match="has no `uri` column"):
        list(source.recordings())
    missing = open_source(InputConfig(uri=str(tmp_path / "nope.csv")), FiltersConfig())
    with pytest.raises(SourceError, match="cannot read the input manifest .*nope.csv: No such file"):
        list(missing.recordings())


def test_a_spreadsheets_byte_order_mark_and_an_unreachable_object_fail_no_more_than_their_row(objects, moto, tmp_path):
    from tests.services.fault_proxy import FaultProxy

    path = tmp_path / "m.csv"
    path.write_text(f"\ufeffuri,crm_id\n{objects['east']},1\n{objects['west']},2\n", encoding="utf-8")
    host, port = moto.endpoint_url.split("://")[1].split(":")
    with FaultProxy(upstream=(host, int(port)), slowdown=0, reset=0, cut=0, down="/calls-west/") as proxy:
        inp = InputConfig(uri=str(path), endpoint_url=proxy.endpoint_url, max_attempts=1)
        east, west = open_source(inp, FiltersConfig()).recordings()
    assert east.error is None and dict(east.meta) == {"crm_id": "1"}
    assert west.error.kind == "unreadable"
    assert west.error.detail.startswith(f"manifest row 2: looking up {objects['west']} failed 4 times")
