"""Webhooks end to end: real loads (TenantLoader on the real ledger and warehouse) write
events to the outbox, and a real HTTP receiver, a separate process the test starts, kills
and restarts, gets them signed.

Nothing waits on a clock: each wait is on a condition (the ledger's outbox, the receiver's
log) with a deadline, and "loads are not delayed" is read from the ledger's batch states
while the events are still waiting.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg2
import pytest

from spool import cli
from spool.ingest.decode import Decoder, DecodeRules
from spool.ingest.parts import Part, rejected_row
from spool.ingest.writer import assemble
from spool.ledger import outbox as ledger_outbox
from spool.ledger.registry import Registry
from spool.ledger.store import Ledger
from spool.loader import outcomes
from spool.loader.tenant import LoaderConfig, Status, TenantLoader
from spool.objectstore import ObjectStore
from spool.webhooks import events
from spool.webhooks.delivery import Background, Deliverer, DeliveryConfig
from tests.integration.test_tenant_loader import spool

ROOT = Path(__file__).resolve().parents[2]
RECEIVER = ROOT / "tests" / "webhook_receiver.py"
SECRET_ENV = "SPOOL_TEST_WEBHOOK_SECRET"
SECRET = "whsec-test-7c1d-not-a-real-secret"
# short backoff, so a receiver held down sees several attempts within seconds
FAST = DeliveryConfig(timeout_seconds=2.0, retry_base_seconds=0.1, retry_cap_seconds=0.4,
                      poll_seconds=0.05, lease_seconds=30.0)
_rejected_offsets = itertools.count(50_000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, what: str, deadline: float = 60.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"gave up waiting: {what}")


class Receiver:
    """tests/webhook_receiver.py as a process: started, killed, restarted on one port."""

    def __init__(self, folder: Path, status: int | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/spool"
        self.log = folder / "received.jsonl"
        self.status = status
        self.proc = None

    def start(self) -> Receiver:
        cmd = [sys.executable, str(RECEIVER), "--port", str(self.port), "--log",
               str(self.log), "--secret-env", SECRET_ENV]
        if self.status:
            cmd += ["--status", str(self.status)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, SECRET_ENV: SECRET})
        assert self.proc.stdout.readline().strip() == "ready"
        return self

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def received(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def receiver(tmp_path):
    r = Receiver(tmp_path).start()
    yield r
    r.kill()


@pytest.fixture
def ledger(ledger_dsn, stack, pg_schema, monkeypatch):
    monkeypatch.setenv("SPOOL_TEST_TENANT_WH", stack.warehouse_dsn)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    led = Ledger(ledger_dsn)
    led.migrate()
    Registry(led).add_tenant("acme", "postgres", {"dsn": "env:SPOOL_TEST_TENANT_WH"},
                             pg_schema)
    yield led
    led.close()


def spool_cli(ledger: Ledger, *argv: str) -> int:
    return cli.main([*argv, "--ledger-dsn", ledger._dsn])


def hook_up(ledger: Ledger, url: str) -> None:
    assert spool_cli(ledger, "tenants", "update", "acme", "--webhook", url,
                     "--webhook-secret", f"env:{SECRET_ENV}") == 0


def spool_rejected(ledger: Ledger, folder: Path, raws: list[bytes]) -> str:
    """A batch of rejected messages of tenant acme, READY, as the spool job leaves it."""
    dec = Decoder(DecodeRules(), lambda t: t == "acme", lambda t, s: None)
    part = Part()
    for raw in raws:
        offset = next(_rejected_offsets)
        part.rows.append(((), rejected_row(dec.decode(raw), f"q/0/{offset}", 1, 2, raw)))
        part.note_record("q/0", offset, len(raw), 0)
    uri, data, record = assemble("acme", "_sdc_rejected", 0, 60_000, 0, part, str(folder), 3)
    ObjectStore().put_atomic(uri, data)
    ledger.record_batches([record])
    return record.batch_id


def outbox(ledger: Ledger) -> dict[str, tuple]:
    """event id → (type, attempts, delivered, last_status, last_error)."""
    return ledger.run(lambda cur: (cur.execute(
        "SELECT event_id, type, attempts, delivered_at IS NOT NULL, last_status, last_error "
        "FROM webhook_events"), {r[0]: r[1:] for r in cur.fetchall()})[1])


def batch_states(ledger: Ledger) -> dict[str, str]:
    return ledger.run(lambda cur: (cur.execute("SELECT batch_id, state::text FROM batches"),
                                   dict(cur.fetchall()))[1])


def add_check(stack, schema: str) -> None:
    """The user's own rule on their table: a batch that breaks it fails alone."""
    conn = psycopg2.connect(stack.warehouse_dsn)
    with conn, conn.cursor() as cur:
        cur.execute(f'ALTER TABLE "{schema}".orders ADD CONSTRAINT small CHECK (amount < 100)')
    conn.close()


def load(loader: TenantLoader, streams=("orders", "_sdc_rejected")) -> list[Status]:
    return [a.status for a in loader.load("acme", list(streams))]


def test_every_event_of_real_loads_reaches_the_receiver_signed(ledger, stack, pg_schema,
                                                               receiver, tmp_path):
    hook_up(ledger, receiver.url)
    loader = TenantLoader(ledger, ObjectStore(), LoaderConfig(), owner="test")
    spool(ledger, tmp_path, "orders", [{"id": 1, "amount": 5}])
    spool_rejected(ledger, tmp_path, [
        b'{"tenant": "acme", "stream": "orders", "record": {"id": 1}}', b"{oops",
        b'{"tenant": "acme", "stream": "orders", "data": {"id": 2}, "colour": 1}'])
    assert load(loader) == [Status.LOADED]
    add_check(stack, pg_schema)
    bad = spool(ledger, tmp_path, "orders", [{"id": 3, "amount": 500}])
    assert load(loader) == [Status.FAILED]
    loader.close()

    done = Deliverer(Ledger(ledger._dsn), FAST).drain()
    assert (done.delivered, done.failed) == (4, 0)
    got = {e["type"]: e for e in receiver.received()}
    assert set(got) == {"load.completed", "schema.changed", "rejected", "batch.failed"}
    assert all(e["valid"] for e in got.values())
    assert {e["id"] for e in got.values()} == set(outbox(ledger))
    assert all(e["body"]["id"] == e["id"] and e["body"]["tenant"] == "acme"
               for e in got.values())

    completed = got["load.completed"]["body"]["data"]
    tables = {t["table"]: t for t in completed["tables"]}
    assert tables["orders"]["rows_inserted"] == 1 and tables["orders"]["rows_rejected"] == 2
    assert completed["rows_inserted"] == 4  # 1 order, 3 rejected messages
    rejected = got["rejected"]["body"]["data"]
    assert rejected["by_reason"] == {"unknown_field": 2, "not_json": 1}
    assert (rejected["records_rejected"], rejected["rows_rejected"]) == (3, 2)
    assert rejected["load_id"] == completed["load_id"]
    changes = got["schema.changed"]["body"]["data"]["changes"]
    assert ("table_created", "orders") in {(c["kind"], c["table"]) for c in changes}
    failed = got["batch.failed"]["body"]["data"]
    assert failed["batch_ids"] == [bad] and 'violates check constraint "small"' in \
        failed["error"]


def test_a_receiver_down_across_attempts_gets_every_event_once_and_loads_go_on(
        ledger, stack, pg_schema, receiver, tmp_path):
    """The acceptance test of issue 14: the receiver is killed and held down while events
    are retried several times, then restarted; it ends with every event, deduplicated by
    id, and the loads meanwhile were LOADED as soon as they ran."""
    hook_up(ledger, receiver.url)
    background = Background(ledger._dsn, FAST).start()
    loader = TenantLoader(ledger, ObjectStore(), LoaderConfig(), owner="test")
    try:
        spool(ledger, tmp_path, "orders", [{"id": 1, "amount": 5}])
        assert load(loader) == [Status.LOADED]
        wait_until(lambda: outbox(ledger) and all(e[2] for e in outbox(ledger).values()),
                   "the first load's events delivered")
        before = set(outbox(ledger))

        receiver.kill()
        down = [spool(ledger, tmp_path, "orders", [{"id": 2, "amount": 7, "note": "new"}])]
        assert load(loader) == [Status.LOADED]
        down.append(spool_rejected(ledger, tmp_path, [b"{oops"]))
        down.append(spool(ledger, tmp_path, "orders", [{"id": 3, "amount": 8}]))
        assert load(loader) == [Status.LOADED]
        add_check(stack, pg_schema)
        down.append(spool(ledger, tmp_path, "orders", [{"id": 4, "amount": 900}]))
        assert load(loader) == [Status.FAILED]

        # held down across several attempts of every new event ...
        def retried() -> dict:
            new = {k: v for k, v in outbox(ledger).items() if k not in before}
            return new if len(new) >= 4 and all(v[1] >= 3 for v in new.values()) else {}

        waiting = wait_until(retried, "every new event tried 3 times against a dead receiver")
        # ... while the loads were done: LOADED (and the culprit FAILED), events not sent
        states = batch_states(ledger)
        assert [states[b] for b in down] == ["LOADED", "LOADED", "LOADED", "FAILED"]
        assert {v[0] for v in waiting.values()} == {"load.completed", "schema.changed",
                                                    "rejected", "batch.failed"}
        assert not any(v[2] for v in waiting.values())
        assert all(v[4].startswith("no answer") for v in waiting.values())

        receiver.start()
        wait_until(lambda: all(e[2] for e in outbox(ledger).values()),
                   "every event delivered after the restart")
    finally:
        background.stop()
        loader.close()

    received = receiver.received()
    assert all(e["valid"] for e in received)
    by_id = Counter(e["id"] for e in received)
    assert set(by_id) == set(outbox(ledger))  # every event, and nothing else
    # at least once: duplicates may happen (none is expected here); deduplicated by id,
    # each event is there once, with the same body every time it came
    bodies = {e["id"]: json.dumps(e["body"], sort_keys=True) for e in received}
    assert all(json.dumps(e["body"], sort_keys=True) == bodies[e["id"]] for e in received)
    attempts = {e["id"]: int(e["attempt"]) for e in received}
    assert all(attempts[k] >= 4 for k in waiting)  # 3 refused, then this one


def test_a_failing_webhook_neither_stops_loads_nor_hides(ledger, receiver, tmp_path,
                                                        monkeypatch, capsys):
    """The deliverer signs with a secret the receiver does not know: every attempt is
    refused (401), loads go on, ``spool status`` says so; once the secret is right and the
    events retried, they are delivered."""
    hook_up(ledger, receiver.url)
    monkeypatch.setenv(SECRET_ENV, "a-secret-the-receiver-does-not-know")
    background = Background(ledger._dsn, FAST).start()
    loader = TenantLoader(ledger, ObjectStore(), LoaderConfig(), owner="test")
    try:
        ids = [spool(ledger, tmp_path, "orders", [{"id": i, "amount": i}]) for i in (1, 2)]
        assert load(loader) == [Status.LOADED]
        ids.append(spool(ledger, tmp_path, "orders", [{"id": 3, "amount": 3, "x": "y"}]))
        assert load(loader) == [Status.LOADED]
        wait_until(lambda: len(outbox(ledger)) == 4 and all(
            v[1] >= 2 and v[3] == 401 for v in outbox(ledger).values()),
            "every event refused twice")
    finally:
        background.stop()
        loader.close()
    assert {batch_states(ledger)[b] for b in ids} == {"LOADED"}
    assert receiver.received() and not any(e["valid"] for e in receiver.received())

    capsys.readouterr()
    assert spool_cli(ledger, "status", "--tenant", "acme") == 0
    out = capsys.readouterr().out
    assert "acme: webhook failing: 4 event(s) waiting" in out and "HTTP 401" in out
    assert spool_cli(ledger, "status", "--json") == 0
    line = [json.loads(x) for x in capsys.readouterr().out.splitlines() if "webhook" in x]
    assert line[0]["pending_events"] == 4 and line[0]["last_status"] == 401
    assert spool_cli(ledger, "webhooks", "list", "--failing", "--json") == 0
    listed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {e["event_id"] for e in listed} == set(outbox(ledger))

    monkeypatch.setenv(SECRET_ENV, SECRET)  # the operator fixes the secret ...
    assert spool_cli(ledger, "webhooks", "retry", "--tenant", "acme") == 0
    assert spool_cli(ledger, "webhooks", "deliver", "--once") == 0  # ... and delivers
    assert all(v[2] for v in outbox(ledger).values())
    capsys.readouterr()
    assert spool_cli(ledger, "status", "--tenant", "acme") == 0
    assert "webhook failing" not in capsys.readouterr().out


def test_a_retried_ledger_transaction_writes_each_event_once(ledger, stack, pg_schema,
                                                             tmp_path):
    loader = TenantLoader(ledger, ObjectStore(), LoaderConfig(), owner="test")
    spool(ledger, tmp_path, "orders", [{"id": 1, "amount": 5}])
    assert load(loader, ["orders"]) == [Status.LOADED]
    assert outbox(ledger) == {}  # no webhook, no events

    hook_up(ledger, "http://127.0.0.1:9/unused")
    spool(ledger, tmp_path, "orders", [{"id": 2, "amount": 6, "more": 1}])
    (second,) = loader.load("acme", ["orders"])
    assert sorted(v[0] for v in outbox(ledger).values()) == ["load.completed",
                                                             "schema.changed"]
    # the transaction that marked the load runs again (say, its commit was not heard)
    for _ in range(2):
        ledger.run(lambda cur: outcomes.loaded(cur, "acme", list(second.reports),
                                               list(second.changes)))
    assert len(outbox(ledger)) == 2

    add_check(stack, pg_schema)
    bad = spool(ledger, tmp_path, "orders", [{"id": 3, "amount": 500}])
    (failed,) = loader.load("acme", ["orders"])
    assert failed.status is Status.FAILED
    ledger.run(lambda cur: outcomes.failed(cur, "acme", [bad], failed.error))
    assert Counter(v[0] for v in outbox(ledger).values())["batch.failed"] == 1
    # a person retries it and it fails again: that is news, a second batch.failed
    assert spool_cli(ledger, "batches", "retry", bad) == 0
    assert [a.status for a in loader.load("acme", ["orders"])] == [Status.FAILED]
    loader.close()
    assert Counter(v[0] for v in outbox(ledger).values())["batch.failed"] == 2
    assert events.event_id("acme", "batch.failed", bad) not in outbox(ledger)


def test_webhook_flags_take_references_only(ledger, capsys):
    assert spool_cli(ledger, "tenants", "update", "acme", "--webhook", "https://h.example/x",
                     "--webhook-secret", "s3cr3t") == 2
    assert "--webhook-secret takes a reference, not the secret itself" in \
        capsys.readouterr().err
    assert spool_cli(ledger, "tenants", "update", "acme", "--webhook", "ftp://h.example/x",
                     "--webhook-secret", "env:X") == 2
    assert "is not an http:// or https:// URL" in capsys.readouterr().err
    assert spool_cli(ledger, "tenants", "update", "nobody", "--webhook", "https://h.example",
                     "--webhook-secret", f"env:{SECRET_ENV}") == 1
    assert spool_cli(ledger, "tenants", "update", "acme") == 2
    assert "nothing to change" in capsys.readouterr().err

    assert spool_cli(ledger, "tenants", "update", "acme", "--webhook", "https://h.example/x",
                     "--webhook-secret", "file:/run/secrets/acme_hook") == 0
    capsys.readouterr()
    assert spool_cli(ledger, "tenants", "show", "acme") == 0
    assert json.loads(capsys.readouterr().out)["webhook"] == {
        "url": "https://h.example/x", "secret": "file:/run/secrets/acme_hook"}
    ledger.run(lambda cur: outcomes.failed(cur, "acme", ["gone"], "boom"))
    assert len(outbox(ledger)) == 1
    assert spool_cli(ledger, "tenants", "update", "acme", "--no-webhook") == 0
    assert "1 undelivered event(s) dropped" in capsys.readouterr().out
    assert outbox(ledger) == {}


def test_a_ping_reaches_the_receiver_signed(ledger, receiver, capsys):
    assert spool_cli(ledger, "webhooks", "test", "acme") == 1
    assert "has no webhook" in capsys.readouterr().err
    hook_up(ledger, receiver.url)
    capsys.readouterr()
    assert spool_cli(ledger, "webhooks", "test", "acme") == 0
    answer = json.loads(capsys.readouterr().out)
    (got,) = receiver.received()
    assert got["valid"] and got["type"] == "ping" and got["id"] == answer["event_id"]
    assert answer["status"] == 204 and outbox(ledger) == {}  # not stored
    receiver.kill()
    assert spool_cli(ledger, "webhooks", "test", "acme", "--timeout", "2") == 1
    assert "did not take the ping: no answer" in capsys.readouterr().err


def test_a_drain_run_sends_its_loads_events_before_it_ends(ledger, receiver, tmp_path):
    """As the loader's launcher does in drain mode: a deliverer that looks only hourly still
    sends what the run loaded when it is stopped with flush."""
    hook_up(ledger, receiver.url)
    hourly = DeliveryConfig(poll_seconds=3600)
    background = Background(ledger._dsn, hourly).start()
    loader = TenantLoader(ledger, ObjectStore(), LoaderConfig(), owner="test")
    spool(ledger, tmp_path, "orders", [{"id": 1, "amount": 5}])
    assert load(loader, ["orders"]) == [Status.LOADED]
    loader.close()
    background.stop(flush=True)
    assert outbox(ledger) and all(v[2] for v in outbox(ledger).values())
    assert {e["id"] for e in receiver.received()} == set(outbox(ledger))
    # delivered events are forgotten after a while; waiting ones never are
    ledger.run(lambda cur: outcomes.failed(cur, "acme", ["gone"], "boom"))
    delivered = len(outbox(ledger)) - 1
    assert ledger_outbox.prune_delivered(ledger, keep_days=0) == delivered
    assert [v[0] for v in outbox(ledger).values()] == ["batch.failed"]
