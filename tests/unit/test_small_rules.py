"""Small rules: secret references and redaction, record budgets, the directory cache."""

from __future__ import annotations

import pytest

from spool import secrets
from spool.ingest.budget import allocate
from spool.ingest.directory import Directory
from spool.ledger.claims import Claimed
from spool.loader import transactions
from spool.warehouse.plan import source_key_column


def test_secret_references(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOOL_TEST_SECRET", "s3cr3t")
    (tmp_path / "pw").write_text("from-file\n")
    assert secrets.resolve("env:SPOOL_TEST_SECRET") == "s3cr3t"
    assert secrets.resolve(f"file:{tmp_path / 'pw'}") == "from-file"
    assert secrets.resolve("postgresql://x") == "postgresql://x"
    with pytest.raises(secrets.SecretError, match="SPOOL_NOT_SET"):
        secrets.resolve("env:SPOOL_NOT_SET")


def test_redact_hides_passwords():
    assert secrets.redact("connect postgresql://bob:hunter2@db:5432/x failed") == \
        "connect postgresql://bob:***@db:5432/x failed"
    assert secrets.redact("host=db password=hunter2 user=bob") == \
        "host=db password=*** user=bob"
    assert "hunter2" not in secrets.redact("dbname=x password='hunter2 x'")
    assert secrets.redact("postgresql://:hunter2@db/x") == "postgresql://:***@db/x"
    assert secrets.redact('{"user": "bob", "password": "hun\\"ter2"}') == \
        '{"user": "bob", "password": "***"}'


def test_allocate_spreads_a_budget_by_backlog():
    assert allocate(10, {0: 100, 1: 100}) == {0: 5, 1: 5}
    assert allocate(10, {0: 3, 1: 0, 2: 30}) == {0: 1, 1: 0, 2: 9}
    assert allocate(1000, {0: 3, 1: 4}) == {0: 3, 1: 4}
    assert sum(allocate(7, {0: 5, 1: 5, 2: 5}).values()) == 7


class FakeRegistry:
    def __init__(self):
        self.tenants = {"a"}
        self.calls = 0
        self.schemas = {}

    def tenant_ids(self):
        self.calls += 1
        return set(self.tenants)

    def stream_keys(self):
        return {}

    def stream_schema(self, t, s):
        self.calls += 1
        return self.schemas.get((t, s))

    def save_stream_schema(self, t, s, keys, schema, rid):
        self.schemas[(t, s)] = (keys, schema)


def test_directory_refreshes_unknown_tenants_at_most_every_interval():
    reg, now = FakeRegistry(), [0.0]
    d = Directory(reg, refresh_seconds=5, clock=lambda: now[0])
    reg.tenants.add("b")
    assert d.is_tenant("a") and not d.is_tenant("b")
    now[0] = 6
    assert d.is_tenant("b")
    calls = reg.calls
    for _ in range(100):
        d.is_tenant("ghost")
    assert reg.calls == calls  # no ledger query per record for an unknown tenant


def test_directory_learns_schemas_and_writes_them_once():
    reg = FakeRegistry()
    d = Directory(reg, clock=lambda: 0.0)
    assert d.stream_keys("a", "s") is None
    d.learn_schema("a", "s", ("id",), {"type": "object"}, "q/0/1")
    d.learn_schema("a", "s", ("id",), {"type": "object"}, "q/0/9")
    assert reg.schemas[("a", "s")] == (("id",), {"type": "object"})
    assert d.stream_keys("a", "s") == ("id",)


def test_child_copies_of_long_key_columns_fit_and_stay_apart():
    a, b = "k" * 60 + "_a", "k" * 60 + "_b"
    ca, cb = source_key_column(a, 63), source_key_column(b, 63)
    assert len(ca) <= 63 and len(cb) <= 63 and ca != cb and ca.startswith("_sdc_source_key_k")
    assert source_key_column("id", 63) == "_sdc_source_key_id"


def test_a_stream_whose_keys_change_loads_in_separate_transactions():
    def batch(i, stream, keys=()):
        return Claimed(f"b{i}", "acme", stream, f"/x/{i}", i, 10, 1, keys)

    claimed = [batch(0, "orders"), batch(1, "orders"), batch(2, "orders", ("id",)),
               batch(3, "users"), batch(4, "users")]
    cut = transactions.cut(claimed, max_rows=1_000)
    assert [[c.batch_id for c in t] for t in cut] == [["b0", "b1"], ["b2", "b3", "b4"]]
    assert [[c.batch_id for c in t] for t in transactions.cut(claimed, max_rows=20)] == \
        [["b0", "b1"], ["b2", "b3"], ["b4"]]


def test_a_local_batch_file_lands_even_after_its_directory_was_removed(tmp_path):
    import shutil

    from spool.objectstore import ObjectStore

    store = ObjectStore()
    first, second = tmp_path / "t" / "s" / "w" / "a.parquet", tmp_path / "t" / "s" / "w" / "b"
    store.put_atomic(str(first), b"one")
    shutil.rmtree(tmp_path / "t")  # a clean-up between two windows' writes
    store.put_atomic(str(second), b"two")
    assert second.read_bytes() == b"two" and not first.exists()
