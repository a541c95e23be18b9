"""The ``spool`` command as a script meets it: typed ``--json`` (numbers, objects, ages in
seconds, ISO 8601 times), an unknown tenant named and exit 1, command-line mistakes exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime

import pytest

from spool.ledger import claims as c
from spool.ledger import outbox
from spool.ledger.maps import MapStore
from spool.ledger.registry import Registry
from spool.ledger.store import Ledger
from spool.webhooks.events import Event
from tests.integration.test_claims import record


def spool(ledger_dsn, *args, env=None):
    res = subprocess.run([sys.executable, "-m", "spool.cli", *args, "--ledger-dsn", ledger_dsn],
                         capture_output=True, text=True, check=False,
                         env={**os.environ, **(env or {})})
    return res.returncode, res.stdout, res.stderr


def rows(ledger_dsn, *args) -> list[dict]:
    rc, out, err = spool(ledger_dsn, *args, "--json")
    assert rc == 0, err
    return [json.loads(line) for line in out.splitlines()]


def iso(value) -> datetime:
    """An ISO 8601 time with its time zone, as every --json prints times."""
    assert isinstance(value, str) and "T" in value, value
    at = datetime.fromisoformat(value)
    assert at.tzinfo is not None, value
    return at


@pytest.fixture
def ledger(ledger_dsn):
    led = Ledger(ledger_dsn)
    led.migrate()
    Registry(led).add_tenant("acme", "postgres", {"dsn": "env:X"}, "acme")
    yield led
    led.close()


def test_json_holds_numbers_objects_seconds_and_iso_times(ledger, ledger_dsn):
    filtered = record("f", 3)
    filtered.meta.update({"records_filtered": 4, "map_versions": {"orders": 1},
                          "records_filtered_by": {"orders": 4}})
    ledger.record_batches([record("ok", 1), record("bad", 2), filtered])
    c.claim(ledger, "acme", "orders", "me", 60, 5)
    c.mark_loaded(ledger, ["ok"])
    c.mark_failed(ledger, ["bad"], "me", "DataError: value too long")
    MapStore(ledger).save("acme", "orders", {"drop": ["ssn"]}, "ann")
    outbox.set_webhook(ledger, "acme", "https://hooks.example/x", "env:HOOK_KEY")
    ledger.run(lambda cur: outbox.enqueue(cur, [Event("evt_1", "acme", "ping", {})]))
    (due,) = outbox.claim_due(ledger, "me", 60, 5)
    outbox.mark_undelivered(ledger, due.event_id, "me", 503, "HTTP 503", 600)

    rc, out, err = spool(ledger_dsn, "status", "--json")
    assert rc == 0, err
    (st, hook) = [json.loads(line) for line in out.splitlines()]
    assert (st["records_spooled"], st["records_filtered"], st["late"]) == (3, 4, 0)
    assert isinstance(st["oldest_unloaded"], int | float) and st["oldest_unloaded"] >= 0
    iso(st["last_load"])
    assert isinstance(hook["oldest_pending_age"], int | float), hook

    (tenant,) = rows(ledger_dsn, "tenants", "list")
    assert tenant["connection"] == {"dsn": "env:X"}
    iso(tenant["since"])
    batch = rows(ledger_dsn, "batches", "list", "--state", "LOADED")[0]
    iso(batch["created"]), iso(batch["loaded"])
    rc, out, _ = spool(ledger_dsn, "batches", "show", "ok")
    iso(json.loads(out)["created_at"])
    (shown,) = rows(ledger_dsn, "maps", "show", "acme")
    assert shown["map"] == {"drop": ["ssn"]}
    (version,) = rows(ledger_dsn, "maps", "history", "acme", "orders")
    assert (version["batches"], version["records_filtered"]) == (1, 4)
    iso(version["set_at"])
    (event,) = rows(ledger_dsn, "webhooks", "list")
    iso(event["created"]), iso(event["next_attempt"])


COMMANDS_WITH_A_TENANT = [
    ["status", "--tenant"], ["loads", "--tenant"], ["rejected", "--tenant"],
    ["changes", "--tenant"], ["batches", "list", "--tenant"],
    ["batches", "retry", "--all-failed", "--tenant"], ["webhooks", "list", "--tenant"],
    ["webhooks", "retry", "--tenant"], ["webhooks", "test"], ["maps", "show"],
    ["maps", "history"], ["tenants", "show"], ["tenants", "remove"]]


@pytest.mark.parametrize("command", COMMANDS_WITH_A_TENANT, ids=" ".join)
def test_an_unknown_tenant_is_named_and_exits_1(ledger, ledger_dsn, command):
    rc, out, err = spool(ledger_dsn, *command, "nosuch")
    assert (rc, out) == (1, "")
    assert err == "error: no tenant 'nosuch'; 'spool tenants list' shows the registered ones\n"


def test_the_unassigned_tenant_is_known_before_it_is_registered(ledger, ledger_dsn):
    assert spool(ledger_dsn, "status", "--tenant", "_unassigned")[0] == 0
    assert spool(ledger_dsn, "rejected", "--tenant", "_unassigned")[0] == 0


@pytest.mark.parametrize("args, message", [
    (["batches", "retry"], "name batch ids, or pass --all-failed"),
    (["batches", "list", "--limit", "-1"], "'-1': give a whole number of 0 or more"),
    (["loads", "--limit", "-1"], "'-1': give a whole number of 0 or more"),
    (["webhooks", "list", "--limit", "x"], "'x': give a whole number of 0 or more"),
    (["rejected", "--samples", "-2"], "'-2': give a whole number of 0 or more"),
    (["tenants", "update", "acme"], "nothing to change"),
    (["tenants", "update", "acme", "--no-webhook", "--webhook", "https://h.example/x",
      "--webhook-secret", "env:HOOK_KEY"], "--no-webhook and --webhook together"),
    (["tenants", "add", "b", "--warehouse", "postgres", "--dsn", "postgresql://u:pw@db/x"],
     "by reference"),
    (["webhooks", "deliver", "--once", "--timeout", "0"], "--timeout 0.0: give a number"),
])
def test_a_command_line_mistake_exits_2_naming_it(ledger, ledger_dsn, args, message):
    rc, _, err = spool(ledger_dsn, *args)
    assert rc == 2 and "Traceback" not in err, err
    assert message in err.strip().splitlines()[-1]  # after argparse's usage, if any


def test_no_ledger_is_a_command_line_mistake():
    env = {k: v for k, v in os.environ.items() if k != "SPOOL_LEDGER_DSN"}
    res = subprocess.run([sys.executable, "-m", "spool.cli", "status"], env=env,
                         capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "no ledger: pass --ledger-dsn" in res.stderr
