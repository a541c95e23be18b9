"""``spool maps`` on a real ledger: a refused map says what is wrong, exits 1 and stores
nothing; versions are kept with who and when; ``test`` previews records and columns."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from datetime import UTC

import pytest

from spool.ledger.maps import LOCK, MapStore
from spool.ledger.registry import Registry
from spool.ledger.store import Ledger

KEY_ENV = "SPOOL_TEST_MAP_KEY"


def spool(ledger_dsn, *args, stdin="", env=None):
    res = subprocess.run([sys.executable, "-m", "spool.cli", *args, "--ledger-dsn", ledger_dsn],
                         input=stdin, capture_output=True, text=True, check=False,
                         env={**os.environ, KEY_ENV: "k3y", **(env or {})})
    return res.returncode, res.stdout, res.stderr


@pytest.fixture
def acme(ledger_dsn):
    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    Registry(ledger).add_tenant("acme")
    Registry(ledger).save_stream_schema("acme", "users", ("id",), None, "q/0/1")
    Registry(ledger).save_stream_schema("acme", "people", ("email",), None, "q/0/2")
    return MapStore(ledger)


@pytest.mark.parametrize("doc, message", [
    ("dorp: [ssn]", "unknown operation 'dorp'"),
    ("drop: [[profile, 3]]", "is not a path"),
    ("hash: [email]", "hash needs a secret"),
    ("hash: [email]\nsecret: env:SPOOL_TEST_NOT_SET", "secret env:SPOOL_TEST_NOT_SET"),
    ("hash: [email]\nsecret: k3y", "by reference"),
    ("drop: [id]", "key field 'id'"),
    ("filter: {like: [email, '%@x']}", "unknown predicate 'like'"),
    ("[1, 2", "starts with [ but is not JSON: line 1 column 6"),
    ('{"drop": ["name",]}', "starts with { but is not JSON: line 1 column 18: Expecting value"),
    ('\n  {\n  "drop": ["ssn"],\n  "hash": ["email",],\n  "secret": "env:X"\n}',
     "line 4 column 20"),
    ('{"drop": ["ssn"], "drop": ["name"]}', '"drop" is given twice'),
    ("drop: [ssn\nhash: [email]", "the map is not YAML"),
    ("alias: people", "alias people: users's records have key properties id (as their map "
                      "makes them), people's have key properties email; their rows cannot "
                      "share a table"),
    ("rename: {id: uid}\nalias: people", "key properties uid (as their map makes them)"),
])
def test_a_refused_map_says_why_exits_1_and_stores_nothing(ledger_dsn, acme, doc, message):
    rc, out, err = spool(ledger_dsn, "maps", "set", "acme", "users", stdin=doc)
    assert rc == 1, out
    assert err.startswith("error: map for acme/users not stored: ") and message in err, err
    assert acme.history("acme") == []


def test_an_alias_is_stored_when_the_keys_agree_as_the_map_renames_them(ledger_dsn, acme):
    rc, _out, err = spool(ledger_dsn, "maps", "set", "acme", "users",
                         stdin="rename: {id: email}\nalias: people")
    assert rc == 0, err
    assert [v.version for v in acme.history("acme", "users")] == [1]


def spooled(store, stream, key_names, map_version):
    """A batch of ``stream`` in the ledger, its records made by its map ``map_version``."""
    from spool.ingest.parts import Part
    from spool.ingest.shape import shape
    from spool.ingest.writer import assemble

    part = Part(key_names=key_names)
    part.note_map(stream, map_version)
    part.rows.extend(shape({key_names[0]: 1}, rid="q/0/1", sequence=1, received_at_ms=0,
                           key_names=key_names))
    part.note_record("q/0", 1, 10, 0)
    part.note_sequence(1)
    store.ledger.record_batches([assemble("acme", stream, 0, 60_000, 0, part, "/unused")[2]])


def test_a_map_is_checked_against_the_keys_as_sent_not_as_the_last_version_renamed_them(
        ledger_dsn, acme):
    assert spool(ledger_dsn, "maps", "set", "acme", "orders",
                 stdin="rename: {id: order_id}")[0] == 0
    spooled(acme, "orders", ("order_id",), 1)  # the spool job's batch has the renamed key
    rc, _out, err = spool(ledger_dsn, "maps", "set", "acme", "orders", stdin="drop: [id]")
    assert rc == 1 and "key field 'id'" in err, err
    rc, _out, err = spool(ledger_dsn, "maps", "set", "acme", "orders",
                          stdin="keep: [id, total]\nrename: {id: order_id}")
    assert rc == 0, err
    # a stream aliased into orders must agree with its keys as orders' map makes them
    rc, _out, err = spool(ledger_dsn, "maps", "set", "acme", "users",
                          stdin="alias: orders")
    assert rc == 1 and "users's records have key properties id" in err and \
        "orders's have key properties order_id" in err, err
    assert spool(ledger_dsn, "maps", "set", "acme", "users",
                 stdin="rename: {id: order_id}\nalias: orders")[0] == 0
    # and a new map of orders must keep agreeing with the streams aliased into it
    rc, _out, err = spool(ledger_dsn, "maps", "set", "acme", "orders", stdin="drop: [total]")
    assert rc == 1 and "alias orders: users's records have key properties order_id" in err


def test_a_stored_map_an_older_spool_wrote_can_be_replaced(ledger_dsn, acme):
    acme.save("acme", "orders", {"bogus_op": 1}, "old spool")  # not checked: as if older
    spooled(acme, "orders", ("id",), 1)  # the spool job's batch, made under it
    rc, _out, err = spool(ledger_dsn, "maps", "set", "acme", "orders", stdin="drop: [ssn]")
    assert rc == 0, err


def test_an_unregistered_tenant_gets_no_map(ledger_dsn, acme):
    rc, _, err = spool(ledger_dsn, "maps", "set", "globex", "users", stdin="drop: [x]")
    assert rc == 1 and "tenant 'globex' is not registered" in err


def test_versions_are_kept_with_who_and_when_and_remove_is_a_version(ledger_dsn, acme):
    assert spool(ledger_dsn, "maps", "set", "acme", "users", "--by", "ann",
                 stdin="drop: [ssn]")[0] == 0
    rc, out, _ = spool(ledger_dsn, "maps", "set", "acme", "users", "--by", "bob",
                       stdin='{"drop": ["ssn", "dob"]}')
    assert rc == 0 and "version 2" in out
    rc, out, _ = spool(ledger_dsn, "maps", "show", "acme", "--json")
    assert [json.loads(line)["map"] for line in out.splitlines()] == \
        [{"drop": ["ssn", "dob"]}]
    assert spool(ledger_dsn, "maps", "remove", "acme", "users", "--by", "cy", "--yes")[0] == 0
    rc, out, _ = spool(ledger_dsn, "maps", "history", "acme", "users", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["version"], r["by"]) for r in rows] == [(1, "ann"), (2, "bob"), (3, "cy")]
    assert rows[-1]["map"] is None and all(r["set_at"] for r in rows)
    assert spool(ledger_dsn, "maps", "show", "acme")[1].count("\n") <= 1  # header only
    rc, _, err = spool(ledger_dsn, "maps", "remove", "acme", "users")
    assert rc == 1 and "has no map" in err


def test_test_previews_mapped_records_and_their_columns(ledger_dsn, acme, tmp_path):
    draft = ("filter: {ne: [status, deleted]}\nhash: [email]\nsecret: env:" + KEY_ENV
             + "\ndrop: [[profile, ssn]]\nrename: {name: full_name}\nalias: people\n")
    sample = "\n".join(json.dumps(r) for r in [
        {"id": 1, "email": "a@b.c", "name": "Ann", "profile": {"ssn": "1", "city": "Oslo"}},
        {"tenant": "acme", "stream": "users", "data": {"id": 2, "status": "deleted"}},
        {"id": 3, "email": {"nested": True}},
    ])
    path = tmp_path / "users-map.yaml"
    path.write_text(draft)
    rc, out, err = spool(ledger_dsn, "maps", "test", "acme", "users", "--file", str(path),
                         stdin=sample)
    assert rc == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    digest = hmac.new(b"k3y", b"a@b.c", hashlib.sha256).hexdigest()
    assert lines[0] == {"line": 1, "stream": "people", "data": {
        "id": 1, "email": digest, "full_name": "Ann", "profile": {"city": "Oslo"}}}
    assert lines[1] == {"line": 2, "filtered": True}
    assert lines[2]["line"] == 3 and "hash email: the value is an object" in \
        lines[2]["rejected"]
    assert "1 mapped, 1 filtered out, 1 rejected" in err
    assert "people.email string" in err and "people.profile__city string" in err
    assert "ssn" not in out + err and "a@b.c" not in out
    assert acme.history("acme") == []  # a test stores nothing


def test_a_version_applies_from_the_moment_set_prints_and_never_reaches_back_past_a_read(
        ledger_dsn, acme):
    """`set` prints the moment its version applies from; the spool job's read of the maps
    (MapStore.read) is a promise that no version will ever apply up to its clock: one being
    stored meanwhile is waited for, and one stored after comes later by the same clock."""
    import threading

    rc, out, err = spool(ledger_dsn, "maps", "set", "acme", "users", stdin="drop: [ssn]")
    (v1,) = acme.history("acme", "users")
    assert rc == 0 and f"applies to every record with a Kafka timestamp from " \
        f"{v1.created_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}." in out, (out, err)
    first = acme.read()
    assert [v.version for v in first.versions] == [1] and first.read_at_ms >= v1.from_ms
    assert acme.read(first.stamp).versions is None  # nothing new: the check reads no rows

    # a `set` half done (its lock taken, its row not committed) holds the reader back
    other = Ledger(ledger_dsn)
    done = threading.Event()
    got = []
    with other.transaction() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", LOCK)
        reader = threading.Thread(target=lambda: (got.append(acme.read(first.stamp)),
                                                  done.set()))
        reader.start()
        assert not done.wait(1.0)  # waits on the lock
        cur.execute("INSERT INTO stream_maps (tenant_id, stream, version, document, "
                    "created_at, created_by) VALUES ('acme', 'users', 2, '{\"drop\": [\"x\"]}',"
                    " clock_timestamp(), 'half')")
    reader.join(30)
    (after,) = got
    assert [v.version for v in after.versions] == [1, 2]  # it saw the version it waited for
    v3 = acme.save("acme", "users", {"drop": ["y"]}, "later")
    assert v3.from_ms > after.read_at_ms  # stored after the read: applies only after it
    other.close()


def test_set_prints_what_changes_and_letting_a_field_through_needs_yes(ledger_dsn, acme):
    """Each set prints the rules it adds, removes and changes against the version in force;
    one that removes a hash, mask or drop (or lets a field into keep) is stored only with
    --yes: without it, exit 2 and nothing stored. So does removing such a map."""
    v1 = "drop: [ssn, [profile, pii]]\nhash: [email]\nsecret: env:SPOOL_TEST_MAP_KEY\n" \
         "mask: {phone: '***'}\nkeep: [id, email, phone, name, ssn, profile]"
    rc, out, err = spool(ledger_dsn, "maps", "set", "acme", "users", stdin=v1)
    assert rc == 0, err
    assert out.splitlines()[:-1] == [
        "changes against no map:", "  + keep [id, email, phone, name, ssn, profile]",
        "  + drop ssn", "  + drop [profile, pii]", "  + hash email", '  + mask phone: "***"',
        "  + secret: env:SPOOL_TEST_MAP_KEY"]

    for loosened, lost in (
            (v1.replace("hash: [email]\n", ""), "- hash email"),
            (v1.replace(", [profile, pii]", ""), "- drop [profile, pii]"),
            (v1.replace("mask: {phone: '***'}\n", ""), "- mask phone"),
            (v1.replace(", profile]", ", profile, dob]"), "+ keep dob"),
            (v1.split("\nkeep")[0], "- keep [id, email, phone, name, ssn, profile]")):
        rc, out, err = spool(ledger_dsn, "maps", "set", "acme", "users", stdin=loosened)
        assert rc == 2 and err.startswith("error: map for acme/users not stored: it lets "
                                          "through what version 1 keeps out of the "
                                          f"warehouse ({lost}); pass --yes"), (lost, err)
        assert out == ""
    assert [v.version for v in acme.history("acme", "users")] == [1]

    tighter = v1.replace("'***'", "null").replace("[ssn,", "[ssn, dob,")
    rc, out, err = spool(ledger_dsn, "maps", "set", "acme", "users", stdin=tighter)
    assert rc == 0, err
    assert out.splitlines()[:-1] == ["changes against version 1:", "  + drop dob",
                                     '  ~ mask phone: "***" → null']
    rc, out, err = spool(ledger_dsn, "maps", "set", "acme", "users", "--yes",
                         stdin=tighter.replace("hash: [email]\n", ""))
    assert rc == 0 and "  - hash email" in out.splitlines(), err
    rc, _out, err = spool(ledger_dsn, "maps", "remove", "acme", "users")
    assert rc == 2 and "(- keep [id, email, phone, name, ssn, profile]; - drop ssn;" in err
    assert [v.version for v in acme.history("acme", "users")] == [1, 2, 3]
