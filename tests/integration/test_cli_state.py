"""Singer STATE per (tenant, state id) on a real ledger: two taps feeding one tenant keep a
state each, ``spool state export`` gives back each one's last STATE as the JSON a tap takes
with ``--state``, and the migration to state ids keeps a tenant's existing state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import psycopg2

from spool.ingest.chunks import ChunkShaper
from spool.ingest.decode import Decoder, DecodeRules
from spool.ingest.directory import Directory
from spool.ledger.migrations import MIGRATIONS
from spool.ledger.registry import Registry
from spool.ledger.store import Ledger

STATE_IDS_VERSION = 11  # the migration that keys tenant_state by (tenant_id, state_id)


def spool(ledger_dsn, *args):
    res = subprocess.run([sys.executable, "-m", "spool.cli", *args, "--ledger-dsn", ledger_dsn],
                         capture_output=True, text=True, check=False, env=dict(os.environ))
    return res.returncode, res.stdout, res.stderr


@dataclass
class Message:  # what kafka-python's consumer gives the spool job
    offset: int
    timestamp: int
    value: bytes
    headers: list


def state(value: dict, state_id: str | None, offset: int) -> Message:
    headers = [("tenant", b"acme")] + ([("state_id", state_id.encode())] if state_id else [])
    return Message(offset, 1_700_000_000_000, json.dumps({"type": "STATE", "value": value})
                   .encode(), headers)


def shaper(ledger: Ledger) -> ChunkShaper:
    """The spool job's per-record step, saving STATE in ``ledger``."""
    registry = Registry(ledger)
    directory = Directory(registry, refresh_seconds=0)
    decoder = Decoder(DecodeRules(), directory.is_tenant, directory.stream_keys)
    return ChunkShaper(decoder, directory, 60_000, registry.save_tenant_state)


def test_two_taps_of_one_tenant_keep_a_state_each_and_export_gives_each_back(ledger_dsn,
                                                                              tmp_path):
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    Registry(ledger).add_tenant("acme")
    job = shaper(ledger)
    job.add_chunk("q", 0, 0, [state({"bookmarks": {"users": 1}}, "tap-a", 0),
                              state({"bookmarks": {"orders": 1}}, "tap-b", 1),
                              state({"bookmarks": {"users": 2}}, "tap-a", 2)])
    # a later chunk: tap-b moves on, tap-a's state stays where it was
    job.add_chunk("q", 0, 0, [state({"bookmarks": {"orders": 9, "ü": "ß"}}, "tap-b", 3),
                              state({"bookmarks": {"legacy": 1}}, None, 4)])

    rc, out, err = spool(ledger_dsn, "state", "export", "--tenant", "acme", "--state-id",
                         "tap-a")
    assert (rc, err) == (0, "")
    assert json.loads(out) == {"bookmarks": {"users": 2}}
    path = tmp_path / "state.json"
    rc, out, err = spool(ledger_dsn, "state", "export", "--tenant", "acme", "--state-id",
                         "tap-b", "-o", str(path))
    assert rc == 0 and out == "" and f"written to {path}" in err, err
    assert json.loads(path.read_text(encoding="utf-8")) == \
        {"bookmarks": {"orders": 9, "ü": "ß"}}
    rc, out, _ = spool(ledger_dsn, "state", "export", "--tenant", "acme", "--state-id",
                       "default")
    assert json.loads(out) == {"bookmarks": {"legacy": 1}}  # sent without --state-id

    rc, out, _ = spool(ledger_dsn, "state", "show", "--tenant", "acme")
    lines = out.splitlines()
    assert rc == 0 and lines[0].split() == ["state_id", "updated", "record_id"]
    assert [(line.split()[0], line.split()[-1]) for line in lines[1:]] == \
        [("default", "q/0/4"), ("tap-a", "q/0/2"), ("tap-b", "q/0/3")]
    rc, out, _ = spool(ledger_dsn, "state", "show", "--tenant", "acme", "--state-id", "tap-a")
    assert rc == 0 and json.loads(out.split("\n\n", 1)[1]) == {"bookmarks": {"users": 2}}
    rc, out, _ = spool(ledger_dsn, "state", "show", "--tenant", "acme", "--json")
    assert [(r["state_id"], r["state"]) for r in map(json.loads, out.splitlines())] == \
        [("default", {"bookmarks": {"legacy": 1}}), ("tap-a", {"bookmarks": {"users": 2}}),
         ("tap-b", {"bookmarks": {"orders": 9, "ü": "ß"}})]


def test_an_unknown_tenant_or_state_id_exits_1_naming_it(ledger_dsn):
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    Registry(ledger).add_tenant("acme")
    Registry(ledger).add_tenant("quiet")
    Registry(ledger).save_tenant_state("acme", "tap-a", {"b": 1}, "q/0/1")

    rc, out, err = spool(ledger_dsn, "state", "export", "--tenant", "ghost", "--state-id", "x")
    assert (rc, out) == (1, "")
    assert err.strip() == "error: no tenant 'ghost'; 'spool tenants list' shows the " \
                          "registered ones"
    rc, out, err = spool(ledger_dsn, "state", "export", "--tenant", "acme", "--state-id",
                         "tap-z")
    assert (rc, out) == (1, "")
    assert "no state id 'tap-z' (its state ids: tap-a)" in err and len(err.splitlines()) == 1
    rc, out, err = spool(ledger_dsn, "state", "show", "--tenant", "quiet")
    assert (rc, out.strip()) == (0, "(no Singer STATE saved for tenant quiet yet)")


def test_command_line_mistakes_exit_2(ledger_dsn):
    for args in (["state", "export", "--tenant", "acme"], ["state", "show"], ["state"],
                 ["produce", "--state-id", "tap-a"], ["produce", "--singer", "--tenant", "acme",
                                                      "--state-id", ""]):
        rc, _, err = spool(ledger_dsn, *args)
        assert rc == 2 and "Traceback" not in err, (args, err)


def test_the_migration_to_state_ids_keeps_a_tenant_s_state(ledger_dsn):
    conn = psycopg2.connect(ledger_dsn)
    with conn, conn.cursor() as cur:  # the ledger as the release before state ids left it
        cur.execute("CREATE TABLE spool_schema_version (version integer PRIMARY KEY, "
                    "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT "
                    "now())")
        for version, description, sql in MIGRATIONS:
            if version < STATE_IDS_VERSION:
                cur.execute(sql)
                cur.execute("INSERT INTO spool_schema_version VALUES (%s, %s)",
                            (version, description))
        cur.execute("INSERT INTO tenants (tenant_id) VALUES ('acme')")
        cur.execute("INSERT INTO tenant_state (tenant_id, state, record_id) VALUES "
                    "('acme', '{\"bookmarks\": {\"users\": 41}}', 'q/0/7')")
    conn.close()

    rc, out, err = spool(ledger_dsn, "state", "export", "--tenant", "acme", "--state-id",
                         "default")
    assert rc == 0, err
    assert json.loads(out) == {"bookmarks": {"users": 41}}
    # and a tap sent without a state id goes on from there, next to a named one
    job = shaper(Ledger(ledger_dsn))
    job.add_chunk("q", 0, 0, [state({"bookmarks": {"users": 42}}, None, 8),
                              state({"bookmarks": {"orders": 1}}, "tap-b", 9)])
    rc, out, _ = spool(ledger_dsn, "state", "export", "--tenant", "acme", "--state-id",
                       "default")
    assert json.loads(out) == {"bookmarks": {"users": 42}}
