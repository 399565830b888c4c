"""Helpers shared by the benchmarks."""

from __future__ import annotations

from pathlib import Path


def full_size_model(model: str | None, tmp: str) -> str:
    """`model`, or the full-size random model built in `tmp` (what the CPU benchmarks run on)."""
    if model is not None:
        return model
    import time

    from pipeline.testing.testmodel import build_test_model

    t = time.perf_counter()
    built = str(build_test_model(Path(tmp) / "full", full_size=True))
    print(f"built the full-size random model in {time.perf_counter() - t:.0f} s", flush=True)
    return built


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a
    child started by a big parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
