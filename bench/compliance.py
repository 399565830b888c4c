"""Compliance on real speech: the share of planted PII and terms found, what was missed, and what
compliance costs the driver, side by side in one run.

Calls from tests/compliance_call.py (espeak-ng; a customer says a card number, an e-mail address,
a phone number, a social security number and an IBAN spelled out; an agent says two regulated
phrases, one across a block cut), one per variant of the values, are transcribed by a real small
recognizer (moonshine-cpp behind our engine interface) and run through the real driver (`run_job`,
bench/local_backend.py) twice on the same calls: without `compliance:` and with it (terms, five PII
types, an unredacted copy and redacted FLAC audio). Found: a pii row of the planted type on the
planted utterance's channel overlapping its seconds, or a hit of the planted phrase likewise.
Leaked: a planted value in any form anywhere in the redacted output or the logs (must be 0).

Options: --calls N (variants; 4).
Heard: the recognizer wrote the item (the value in the unredacted copy): what compliance can find at
best; a miss of an item heard is ours, the others are the recognizer's.
Last line: pii_found=<n>/<n> heard=<n>/<n> terms_found=<n>/<n> heard=<n>/<n> leaked=<n>
  compliance_share=<ratio> peak_rss_mb=<MB>
  compliance_share: seconds in the compliance step (search, redaction, audio copies) over the
  run's wall time, both of the run with compliance.
Needs: pip install -e '.[cpu,test,bench]'. Tried on: 2-core x86_64 VM, no GPU.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow.dataset as ds  # noqa: E402

from bench.common import peak_rss_mb  # noqa: E402
from bench.local_backend import LocalBackend  # noqa: E402
from bench.moonshine_engine import MoonshineEngine  # noqa: E402
from pipeline.compliance.apply import Compliance  # noqa: E402
from pipeline.compliance.normalize import normalize  # noqa: E402
from pipeline.compliance.pii import detect  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.run.driver import run_job  # noqa: E402
from tests.compliance_call import REDACT, TERMS, Planted, leaked, planted, write_call  # noqa: E402


def heard(p: Planted, said: str, variant: int) -> bool:
    """Whether the recognizer wrote the planted item (in the unredacted transcript): what
    compliance can find at best. Terms: the phrase's words in order; PII: the value in any form."""
    if p.kind == "term":
        tokens = " ".join(t.text for t in normalize(said.replace("|", " ").split(), "en"))
        return " ".join(p.what.split()) in tokens
    return p.raw[0] in leaked(said.replace("|", " "), variant, iban=True)


def rows(root: Path, dataset: str) -> list[dict]:
    if not (root / dataset).exists():
        return []
    return ds.dataset(root / dataset, format="parquet", partitioning="hive").to_table().to_pylist()


class _Timed:
    """Compliance.apply with its seconds summed (the bench's only instrument)."""

    seconds = 0.0

    def __init__(self) -> None:
        self._apply = Compliance.apply

    def __enter__(self) -> _Timed:
        timed = self

        def apply(inner: Compliance, s):  # noqa: ANN001, ANN202
            t = time.perf_counter()
            try:
                return timed._apply(inner, s)
            finally:
                timed.seconds += time.perf_counter() - t

        Compliance.apply = apply  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        Compliance.apply = self._apply  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=4)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-compliance-"))
    calls = {}
    for v in range(args.calls):
        (tmp / f"in{v}").mkdir()
        calls[v] = write_call(tmp / f"in{v}" / "call.wav", v, iban=True)
    engine = MoonshineEngine()
    t = time.perf_counter()
    detect("warm up", tuple(REDACT), 0.0)  # presidio's import (it loads spaCy's code, no model): once per driver
    print(f"presidio recognizers loaded in {time.perf_counter() - t:.1f} s (once per process)")
    base = {"channels.labels": {0: "agent", 1: "customer"}}
    on = {
        "compliance.terms": TERMS,
        "compliance.redact": REDACT,
        "compliance.keep_unredacted_uri": None,
        "compliance.redacted_audio_uri": None,
    }
    found = {"pii": [0, 0, 0, 0], "term": [0, 0, 0, 0]}  # found, planted, found of heard, heard
    missed, leaks, wall_on, wall_off, in_step = [], 0, 0.0, 0.0, 0.0
    for v, call in calls.items():
        for mode in ("off", "on"):
            out = tmp / f"out{v}-{mode}"
            extra = dict(on, **{"compliance.keep_unredacted_uri": str(tmp / f"raw{v}")}) if mode == "on" else {}
            if mode == "on":
                extra["compliance.redacted_audio_uri"] = str(tmp / f"audio{v}")
            cfg = load_config(None, {"input.uri": str(tmp / f"in{v}"), "output.uri": str(out), **base, **extra})
            err = io.StringIO()
            with _Timed() as timer:
                t = time.perf_counter()
                run_job(cfg, lambda c: LocalBackend(c, engine), err=err)
                wall = time.perf_counter() - t
            if mode == "off":
                wall_off += wall
                continue
            wall_on, in_step = wall_on + wall, in_step + timer.seconds
            pii, hits = rows(out, "pii"), rows(out, "hits")
            raw = sorted(rows(tmp / f"raw{v}", "segments"), key=lambda r: (r["channel"], r["segment_index"]))
            for p in planted(v, iban=True):
                ch, start, end = call.speech[p.utterance]
                pool = pii if p.kind == "pii" else hits
                key = "entity_type" if p.kind == "pii" else "phrase"
                ok = any(
                    r[key] == p.what and r["channel"] == ch and r["start_s"] < end and r["end_s"] > start for r in pool
                )
                said = " | ".join(r["text"] for r in raw if r["channel"] == ch)
                was_heard = heard(p, said, v)
                found[p.kind][0] += ok
                found[p.kind][1] += 1
                found[p.kind][2] += ok and was_heard
                found[p.kind][3] += was_heard
                if not ok:
                    why = "OURS: the recognizer wrote it" if was_heard else "the recognizer did not write it"
                    missed.append(f"call {v}: {p.what} missed ({why}): {said[:400]}")
            written = [err.getvalue()] + [str(x) for r in rows(out, "segments") + hits + pii for x in r.values()]
            leaks += len(leaked(" ".join(written), v, iban=True))
            print(
                f"call {v}: wall {wall_off:.1f} s without compliance so far, {wall:.1f} s with; {len(pii)} pii, {len(hits)} hits"
            )
    engine._stop()
    print("\n".join(missed) or "nothing missed")
    print(f"wall: {wall_off:.1f} s without compliance, {wall_on:.1f} s with; {in_step:.2f} s in the compliance step")
    f = {k: "{}/{} heard={}/{}".format(v[0], v[1], v[2], v[3]) for k, v in found.items()}
    print(
        f"pii_found={f['pii']} terms_found={f['term']} leaked={leaks} "
        f"compliance_share={in_step / wall_on:.3f} peak_rss_mb={peak_rss_mb():.0f}"
    )


if __name__ == "__main__":
    main()
