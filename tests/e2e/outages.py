"""For outage tests: a service of the local stack that a test may take away, and a producer
that keeps sending through it.

:class:`PrivateService` is one service's own instance, on free ports, under a directory of
its own, started and stopped with ``scripts/stack.py`` as a user does.

The session's Kafka broker, PostgreSQL and S3 endpoint are shared by every test, so an
outage test must never stop them. :class:`PrivateService` runs a second instance of one of
them: ``scripts/stack.py`` reads its data directory (``SPOOL_VAR_DIR``) and ports
(``SPOOL_KAFKA_PORT``, ``SPOOL_PG_PORT``, ``SPOOL_S3_PORT``, ...) from the environment, and
the instance's ``cache`` and ``venvs`` are links to the checkout's, so nothing is downloaded
again. The directory sits under the checkout's ``var/`` (which the ``postgres`` user can
reach when the tests run as root) and is removed, with the instance stopped, on close.

:class:`Feed` sends small envelopes a few at a time until stopped, and remembers the record id
of every one the broker acknowledged: what must arrive exactly once, whatever was down.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STACK = [sys.executable, str(ROOT / "scripts" / "stack.py")]
SERVICES = ("kafka", "postgres", "s3")
PG_USER, PG_PASSWORD = "spool", "spool"  # scripts/stacklib/postgres.py


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateService:
    """One instance of ``name`` (kafka, postgres or s3) that only its test uses."""

    def __init__(self, name: str) -> None:
        if name not in SERVICES:
            raise ValueError(f"{name}: one of {', '.join(SERVICES)}")
        self.name = name
        self.var = ROOT / "var" / "private" / f"{name}-{uuid.uuid4().hex[:8]}"
        self.var.mkdir(parents=True)
        for shared in ("cache", "venvs"):
            (self.var / shared).symlink_to(ROOT / "var" / shared, target_is_directory=True)
        self.port = free_port()
        self.env = {"SPOOL_VAR_DIR": str(self.var)}
        if name == "kafka":
            self.env.update(SPOOL_KAFKA_PORT=str(self.port),
                            SPOOL_KAFKA_CONTROLLER_PORT=str(free_port()),
                            SPOOL_KAFKA_HEAP="-Xms128m -Xmx384m")
        elif name == "postgres":
            self.env["SPOOL_PG_PORT"] = str(self.port)
        else:
            self.env["SPOOL_S3_PORT"] = str(self.port)

    # -- where it answers ------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def dsn(self, db: str = "ledger") -> str:
        return f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}/{db}"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- as a user runs it -----------------------------------------------------------------

    def _stack(self, command: str) -> None:
        res = subprocess.run([*STACK, command, self.name], env={**os.environ, **self.env},
                             capture_output=True, text=True, timeout=300, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"scripts/stack.py {command} {self.name} (private): "
                               f"{res.stderr[-2000:]}")

    def start(self) -> PrivateService:
        self._stack("start")
        return self

    def stop(self) -> None:
        self._stack("stop")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        home = self.var / "postgres"
        if home.is_symlink():  # data moved where the postgres user can reach it
            shutil.rmtree(home.resolve(), ignore_errors=True)
        shutil.rmtree(self.var, ignore_errors=True)

    def __enter__(self) -> PrivateService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class Feed(threading.Thread):
    """``per_tick`` envelopes of ``tenants`` (stream ``events``) every ``tick`` seconds,
    round-robin over the partitions, until :meth:`finish`; :meth:`pause` and :meth:`resume`
    hold it. ``acked`` holds the record id (topic/partition/offset) of every acknowledged one.
    The producer retries through an outage of the broker for up to three minutes."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, tenants: list[str],
                 per_tick: int = 10, tick: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.tenants, self.per_tick, self.tick = tenants, per_tick, tick
        self.acked: set[str] = set()
        self.sent = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def _ack(self, meta) -> None:
        with self._lock:
            self.acked.add(f"{meta.topic}/{meta.partition}/{meta.offset}")

    def acknowledged(self) -> set[str]:
        with self._lock:
            return set(self.acked)

    def run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=10,
                                 delivery_timeout_ms=180_000, request_timeout_ms=10_000,
                                 max_block_ms=180_000)
        try:
            while not self._done.is_set():
                if self._running.wait(0.1):
                    for _ in range(self.per_tick):
                        n = self.sent
                        value = json.dumps({"tenant": self.tenants[n % len(self.tenants)],
                                            "stream": "events", "data": {"n": n}}).encode()
                        producer.send(self.topic, value, partition=n % self.partitions
                                      ).add_callback(self._ack)
                        self.sent += 1
                    time.sleep(self.tick)
            producer.flush(timeout=180)
        finally:
            producer.close(timeout=10)

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        """Stop sending, without waiting (a test that failed)."""
        self._done.set()

    def finish(self) -> set[str]:
        """Stop sending, wait for the acknowledgements; the acknowledged record ids."""
        self._done.set()
        self.join(240)
        return self.acknowledged()
