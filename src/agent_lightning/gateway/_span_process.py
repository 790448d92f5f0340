"""The span writer's own process: redaction and inserts without the server's GIL.

In a thread, capture's CPU work (parsing, redaction, the insert) holds the GIL the event loop
needs, and every call that arrives during a batch waits for it: measured, that doubled the
gateway's p99. So the server ships batches of raw records (bytes, no parsing) over a pipe to a
child process that owns a `SpanSink`, and reads back how many were written.

Wire format, parent to child: a 4-byte big-endian length, then a pickled list of
`SpanRecord.to_wire()` tuples; end of input means "finish and exit". Child to parent: one line
`<written> <failed>` per batch. Pickle is safe here: both ends are this package, over a pipe
only the parent holds.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("agent_lightning.gateway")

_HEADER = struct.Struct("!I")


class SpanProcess:
    """Parent side: start the child, send it batches, count its acknowledgements."""

    def __init__(
        self, database_url: str, *, capture_bodies: bool, on_ack: Callable[[int, int], None]
    ) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "AGL_SPAN_DATABASE_URL": database_url,  # not on the command line: ps shows that
            "PYTHONPATH": os.pathsep.join(
                p for p in (package_root, os.environ.get("PYTHONPATH")) if p
            ),
        }
        args = [sys.executable, "-m", "agent_lightning.gateway._span_process"]
        if not capture_bodies:
            args.append("--no-bodies")
        self._process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self._on_ack = on_ack
        self._reader = threading.Thread(target=self._read_acks, name="agl-span-acks", daemon=True)
        self._reader.start()

    def alive(self) -> bool:
        return self._process.poll() is None

    def send(self, batch: list[tuple[Any, ...]]) -> None:
        """Raises OSError (BrokenPipeError) if the child is gone."""
        payload = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        stdin = self._process.stdin
        assert stdin is not None
        stdin.write(_HEADER.pack(len(payload)) + payload)
        stdin.flush()

    def close(self, timeout: float = 30.0) -> None:
        """End of input: the child writes what it has, acknowledges it, and exits."""
        try:
            if self._process.stdin is not None:
                self._process.stdin.close()
        except OSError:
            pass
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("the span writer process did not finish in %ss; killing it", timeout)
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout)

    def _read_acks(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        for line in stdout:
            try:
                written, failed = (int(x) for x in line.split())
            except ValueError:
                continue
            self._on_ack(written, failed)


def _read_exact(stream: Any, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def main() -> None:
    """Child side: `python -m agent_lightning.gateway._span_process [--no-bodies]`."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # Capture needs throughput, not latency: when cores are scarce the calls must win.
    try:
        os.nice(10)
    except OSError:  # pragma: no cover - not permitted here
        pass
    from agent_lightning.gateway.capture import SpanRecord
    from agent_lightning.gateway.sink import SpanSink
    from agent_lightning.store import Store

    store = Store(os.environ["AGL_SPAN_DATABASE_URL"], migrate=False, pool_size=1)
    sink = SpanSink(store, capture_bodies="--no-bodies" not in sys.argv[1:])
    source, acks = sys.stdin.buffer, sys.stdout.buffer
    try:
        while True:
            header = _read_exact(source, _HEADER.size)
            if not header:
                break
            batch = pickle.loads(_read_exact(source, _HEADER.unpack(header)[0]))
            written, failed = sink.write([SpanRecord.from_wire(t) for t in batch])
            acks.write(f"{written} {failed}\n".encode())
            acks.flush()
    finally:
        store.close()


if __name__ == "__main__":
    main()
