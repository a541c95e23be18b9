"""Webhook rules without services: the signature and its verification (Spool's and the
snippet users copy from docs/webhooks.md), backoff, event ids and the events of a load."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

from spool.warehouse.report import SchemaChange, TableReport
from spool.webhooks import events, signing
from spool.webhooks.delivery import backoff_seconds, secret_problem, url_problem

ROOT = Path(__file__).resolve().parents[2]
BODY = b'{"data":{},"id":"evt_1","type":"ping"}'


def snippet_from(path: Path) -> str:
    """The verify_signature function as ``path`` spells it."""
    text = path.read_text()
    found = re.search(r"^def verify_signature.*?(?=^\S|\Z)", text, re.S | re.M)
    assert found, f"no verify_signature in {path}"
    return found.group(0).rstrip()


def docs_verify():
    scope = {"hashlib": hashlib, "hmac": hmac, "time": time}
    exec(snippet_from(ROOT / "docs" / "webhooks.md"), scope)  # noqa: S102 - our own docs
    return scope["verify_signature"]


def test_a_signature_verifies_only_its_body_secret_and_time():
    now = 1_800_000_000
    header = signing.sign("k", now, BODY)
    assert header.startswith(f"t={now},v1=")
    assert signing.verify("k", header, BODY, now=now + 10)
    assert not signing.verify("k", header, BODY + b" ", now=now)  # tampered body
    assert not signing.verify("other", header, BODY, now=now)  # wrong secret
    assert not signing.verify("k", header, BODY, now=now + 301)  # too old: a replay
    forged = header.replace(f"t={now}", f"t={now + 100}")  # a newer stamp, same mac
    assert not signing.verify("k", forged, BODY, now=now + 100)
    assert not signing.verify("k", f"v1={signing.signature('k', now, BODY)}", BODY, now=now)
    # while a secret rotates: two v1 values, either may match
    old, new = signing.signature("old", now, BODY), signing.signature("k", now, BODY)
    both = f"t={now},v1={old},v1={new}"
    assert signing.verify("k", both, BODY, now=now)


def test_the_docs_snippet_is_the_test_receivers_and_agrees_with_spool():
    assert snippet_from(ROOT / "docs" / "webhooks.md") == \
        snippet_from(ROOT / "tests" / "webhook_receiver.py")
    verify = docs_verify()
    header = signing.sign("s3", int(time.time()), BODY)
    assert verify("s3", header, BODY)
    assert not verify("s3", header, BODY.replace(b"ping", b"pong"))
    assert not verify("s4", header, BODY)
    assert not verify("s3", signing.sign("s3", int(time.time()) - 3600, BODY), BODY)


def test_backoff_doubles_up_to_its_cap():
    assert [backoff_seconds(n, 10, 600) for n in (1, 2, 3, 4, 7, 8, 500)] == \
        [10, 20, 40, 80, 600, 600, 600]


def test_webhook_flags_are_checked():
    assert url_problem("https://hooks.example/x") is None
    assert url_problem("http://127.0.0.1:8080/") is None
    assert "not an http" in url_problem("file:///etc/passwd")
    assert "credentials" in url_problem("https://u:p@hooks.example/")
    assert secret_problem("env:ACME_HOOK") is None and secret_problem("file:/run/s") is None
    assert "not the secret itself" in secret_problem("hunter2")
    assert "not the secret itself" in secret_problem("env:")
    assert "--webhook-secret env:NAME" in secret_problem(None)


def report(table: str, **kw) -> TableReport:
    return TableReport("L1", kw.pop("stream", table), table, batch_ids=["b1"], **kw)


def test_a_load_announces_what_it_did():
    plain = events.for_load("acme", [report("orders", rows_inserted=3)], [])
    assert [e.type for e in plain] == ["load.completed"]
    assert plain[0].data["rows_inserted"] == 3 and plain[0].data["load_id"] == "L1"
    assert events.for_load("acme", [], []) == []

    reports = [report("orders", rows_inserted=1, rows_rejected=2, values_cut=1),
               report("_sdc_rejected", rows_inserted=4,
                      rejected_by_reason={"unknown_field": 2, "not_json": 1, "value_cut": 1})]
    changes = [SchemaChange("L1", "column_added", "orders", "orders", "note")]
    got = {e.type: e for e in events.for_load("acme", reports, changes)}
    assert set(got) == {"load.completed", "schema.changed", "rejected"}
    assert got["rejected"].data["by_reason"] == {"not_json": 1, "unknown_field": 2,
                                                 "value_cut": 1}
    assert (got["rejected"].data["records_rejected"], got["rejected"].data["rows_rejected"],
            got["rejected"].data["values_cut"]) == (4, 2, 1)
    assert got["schema.changed"].data["changes"][0]["column"] == "note"
    # only the rejected messages naming no stream: still announced
    alone = events.for_load("acme", [report("_sdc_rejected", rows_inserted=1)], [])
    assert [e.type for e in alone] == ["load.completed", "rejected"]


def test_event_ids_come_from_the_data():
    again = [e.event_id for e in events.for_load("acme", [report("t", rows_inserted=1)], [])]
    assert again == [events.event_id("acme", "load.completed", "L1")]
    assert re.fullmatch(r"evt_[0-9a-f]{32}", again[0])
    assert events.event_id("acme", "load.completed", "L1") != \
        events.event_id("globex", "load.completed", "L1")
    assert events.event_id("acme", "rejected", "L1") != \
        events.event_id("acme", "load.completed", "L1")
    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    one = events.for_failure("acme", [("b2", "s", 1), ("b1", "s", 3)], "x", at)
    assert one.event_id == events.for_failure("acme", [("b1", "s", 3), ("b2", "s", 1)], "y",
                                              at).event_id
    later = events.for_failure("acme", [("b1", "s", 1), ("b2", "s", 1)], "x",
                               at.replace(hour=10))
    assert later.event_id != one.event_id  # failed again after a retry: news
    assert one.data["batch_ids"] == ["b1", "b2"] and one.data["attempts"] == 3


def test_a_failed_batchs_error_is_redacted():
    e = events.for_failure("acme", [("b1", "s", 1)],
                           "OperationalError: postgresql://u:hunter2@db/x refused", None)
    assert "hunter2" not in e.data["error"]


def test_the_body_is_the_same_bytes_every_time():
    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    one = events.body("evt_1", "ping", "acme", at, {"b": 1, "a": [1, "é"]})
    assert one == events.body("evt_1", "ping", "acme", at, {"a": [1, "é"], "b": 1})
    assert json.loads(one) == {"id": "evt_1", "type": "ping", "tenant": "acme",
                               "created_at": "2026-12-01T09:00:00+00:00",
                               "data": {"a": [1, "é"], "b": 1}}


def test_the_loader_job_delivers_unless_told_not_to():
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.loader_job import start_webhooks

    assert start_webhooks(PipelineOptions(["--no_webhooks"]), "env:UNUSED") is None
