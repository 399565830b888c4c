"""A fault-injecting HTTP proxy in front of an S3 server, on loopback only.

Every request gets its own upstream connection (the proxy answers with `Connection: close`), and a
seeded random draw decides its fate:
- `slowdown`: answer 503 SlowDown (S3 throttling) without forwarding;
- `reset`: read the request, then reset the connection (RST) without answering;
- `cut`: forward it, relay half of the response, then reset (a body cut off mid-transfer);
- otherwise forward it untouched.
Scenario switches, all settable while the proxy runs:
- `hold`: requests whose request line contains it wait until `release()` (or the proxy closes): a
  file that stays in flight for as long as a test needs (a run killed with work pending);
- `down`: requests whose request line contains it are reset, as by a store that is unreachable;
- `before_first_get`: request path -> a function run once, before that object's first GET is
  forwarded (e.g. delete or overwrite it upstream: an object that changes between list and get).
Clients must retry all three: botocore's standard mode, pyarrow's AWS retry strategy, and our
ranged reader's body retries.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


@dataclass
class FaultProxy:
    upstream: tuple[str, int]
    slowdown: float = 0.15
    reset: float = 0.08
    cut: float = 0.05
    seed: int = 7
    hold: str | None = None
    down: str | None = None
    strip: tuple[bytes, ...] = ()  # request headers dropped (lower case): a store that ignores them
    before_first_get: dict[str, Callable[[], None]] = field(default_factory=dict)
    injected: Counter[str] = field(default_factory=Counter)
    port: int = 0

    def __enter__(self) -> FaultProxy:
        self._rng = random.Random(self.seed)
        self._loop = asyncio.new_event_loop()
        self._released = asyncio.Event()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def release(self) -> None:
        """Let held requests through (and stop holding)."""
        self.hold = None
        self._loop.call_soon_threadsafe(self._released.set)

    def __exit__(self, *exc: object) -> None:
        async def shut() -> None:  # cancel what is in flight (held requests too) before stopping
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    @property
    def faults(self) -> int:
        return sum(self.injected.values())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length, expect = 0, False
            lines = head.split(b"\r\n")
            kept = [lines[0]]
            for line in lines[1:]:
                name = line.split(b":", 1)[0].strip().lower()
                if name == b"content-length":
                    length = int(line.split(b":", 1)[1])
                expect |= name == b"expect"
                if name not in (b"connection", b"keep-alive", b"expect", *self.strip):
                    kept.append(line)
            if expect:  # answer "100-continue" here: the upstream never sees the Expect header
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await writer.drain()
            body = await reader.readexactly(length) if length else b""
            if self.hold and self.hold.encode() in lines[0]:
                self.injected["held"] += 1
                await self._released.wait()
            if self.down and self.down.encode() in lines[0]:
                self.injected["down"] += 1
                _rst(writer)
                return
            method, path = lines[0].split(b" ")[:2]
            action = self.before_first_get.pop(path.split(b"?")[0].decode(), None) if method == b"GET" else None
            if action is not None:
                self.injected["changed"] += 1
                await asyncio.get_running_loop().run_in_executor(None, action)
            draw = self._rng.random()
            if draw < self.slowdown:
                self.injected["slowdown"] += 1
                answer = b"" if method == b"HEAD" else SLOWDOWN  # as S3 answers HEAD: headers only
                writer.write(
                    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(SLOWDOWN), answer)
                )
                await writer.drain()
                return
            if draw < self.slowdown + self.reset:
                self.injected["reset"] += 1
                _rst(writer)
                return
            cut = draw < self.slowdown + self.reset + self.cut
            request = b"\r\n".join([*[k for k in kept if k], b"Connection: close", b"", b""]) + body
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            up_writer.write(request)
            await up_writer.drain()
            response = await up_reader.read()  # upstream closes after one response (Connection: close)
            up_writer.close()
            if cut and len(response) > 200:
                self.injected["cut"] += 1
                writer.write(response[: len(response) // 2])
                await writer.drain()
                _rst(writer)
                return
            writer.write(response)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped connection looks to the client."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
