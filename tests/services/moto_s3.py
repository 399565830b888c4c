"""moto S3 server in a child process (reachable from worker processes and forked children)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from tests.services.s3 import S3Service, free_port, smoke_test

START_TIMEOUT_S = 10.0


def start_moto(timeout_s: float = START_TIMEOUT_S) -> S3Service:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Unlinked temp file, not a pipe: werkzeug logs every request to stderr and an
    # undrained pipe would eventually block the server. Read back only on failure;
    # the child keeps its own descriptor after we close ours.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,  # own process group, so stop() can kill it as a unit
        )
        svc = S3Service(url, "testing", "testing", procs=(proc,), term_grace_s=2.0)
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                log.seek(0)
                err = log.read().decode(errors="replace")
                raise RuntimeError(f"moto_server exited with {proc.returncode}:\n{err[-4000:]}")
            try:
                try:
                    urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1).close()
                except urllib.error.HTTPError:
                    pass  # any HTTP answer, even an error status, means it is serving
                return svc
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    svc.stop()
                    raise RuntimeError(f"moto_server did not answer on {url} within {timeout_s}s") from None
                time.sleep(0.05)


if __name__ == "__main__":
    t0 = time.monotonic()
    with start_moto() as svc:
        print(f"moto up at {svc.endpoint_url} in {time.monotonic() - t0:.2f}s")
        for step, secs in smoke_test(svc).items():
            print(f"  {step}: {secs * 1000:.0f} ms")
    print(f"total {time.monotonic() - t0:.2f}s")
