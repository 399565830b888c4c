"""A real Prometheus Pushgateway (Debian `prometheus-pushgateway`) on 127.0.0.1, for the metrics
tests; `metrics()` parses what it holds with prometheus-client's own parser."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from tests.services.s3 import free_port

BINARY = "prometheus-pushgateway"


@dataclass(frozen=True)
class Pushgateway:
    url: str

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample it holds: (name, sorted labels) -> value."""
        text = urllib.request.urlopen(f"{self.url}/metrics", timeout=5).read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }


def sample(got: dict, name: str, job_file: str, **labels: str) -> float:
    """One sample of `metrics()` in the group a run of `job_file` pushes to (job granite-batch)."""
    return got[(name, tuple(sorted({"instance": "", "job": "granite-batch", "job_file": job_file, **labels}.items())))]


@contextmanager
def start_pushgateway(timeout_s: float = 10.0) -> Iterator[Pushgateway]:
    if shutil.which(BINARY) is None:
        raise RuntimeError(f"{BINARY} is not installed (apt-get install prometheus-pushgateway; tests/run.sh does)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory() as state:
        # Debian's build persists to /var/lib/prometheus by default: each test gateway starts empty
        proc = subprocess.Popen(
            [BINARY, f"--web.listen-address=127.0.0.1:{port}", f"--persistence.file={state}/pushgateway.data"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"{BINARY} exited with {proc.returncode}: {log.read().decode()[-2000:]}")
                try:
                    urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
                    break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{BINARY} did not answer on {url} within {timeout_s} s") from None
                    time.sleep(0.05)
            yield Pushgateway(url)
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
