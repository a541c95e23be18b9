"""Decoding: every message becomes a record, a control message, or a rejection with a reason."""

from __future__ import annotations

import json

import pytest

from spool.ingest.decode import Decoder, DecodeRules, Kind, Reason
from spool.ingest.envelope import decode_envelope
from tests import nasty

TENANTS = {"acme", "a.b"}


def decoder(schemas=None, max_bytes=4 * 1024 * 1024) -> Decoder:
    schemas = schemas if schemas is not None else {}
    return Decoder(DecodeRules(max_message_bytes=max_bytes), TENANTS.__contains__,
                   lambda t, s: schemas.get((t, s)))


@pytest.mark.parametrize("case", nasty.CASES, ids=lambda c: c.name)
def test_nasty_case_is_accepted_or_rejected_with_its_reason(case):
    got = decoder().decode(case.value, case.headers)
    if case.expect == "record":
        assert got.kind is Kind.RECORD, got.message
    else:
        assert got.kind is Kind.REJECTED
        assert got.reason.value == case.expect, got.message
        assert got.message and len(got.message) > 20


def test_envelope_fields_come_through():
    value = json.dumps({"tenant": "acme", "stream": "orders", "key_names": ["id"],
                        "sequence": 42, "data": {"id": 7}, "extracted_at": "2024-01-02T03:04:05Z",
                        "table_version": 3}).encode()
    got = decoder().decode(value)
    assert (got.kind, got.tenant, got.stream, got.key_names, got.sequence, got.table_version) == \
        (Kind.RECORD, "acme", "orders", ("id",), 42, 3)
    assert got.extracted_at == 1704164645 * 1_000_000


def test_rejections_name_the_problem_and_the_fix():
    got = decoder().decode(nasty.by_name("unknown_tenant").value)
    assert "nobody" in got.message and "spool tenants add" in got.message
    got = decoder().decode(nasty.by_name("typo_field").value)
    assert "'sequense'" in got.message
    got = decoder(max_bytes=100).decode(b'{"tenant":"acme","stream":"s","data":{"x":"' +
                                        b"y" * 200 + b'"}}')
    assert got.reason is Reason.TOO_LARGE and "--max_message_bytes" in got.message
    got = decoder().decode(nasty.by_name("missing_key_value").value)
    assert "'id'" in got.message and "missing" in got.message


def test_rejected_message_keeps_the_tenant_when_known():
    got = decoder().decode(nasty.by_name("data_is_list").value)
    assert got.tenant == "acme" and got.stream == "orders"


def test_header_tenant_must_agree_with_the_envelope():
    got = decoder().decode(nasty.env({"x": 1}), [("tenant", b"other")])
    assert got.kind is Kind.REJECTED and "'other'" in got.message


def test_singer_messages():
    schemas = {("acme", "users"): ("id",)}
    dec = decoder(schemas)
    h = [("tenant", b"acme")]
    schema = dec.decode(json.dumps({"type": "SCHEMA", "stream": "users", "key_properties": ["id"],
                                    "schema": {"properties": {"id": {"type": "integer"}}}}
                                   ).encode(), h)
    assert (schema.kind, schema.key_names, schema.schema["properties"]["id"]["type"]) == \
        (Kind.SCHEMA, ("id",), "integer")
    rec = dec.decode(json.dumps({"type": "RECORD", "stream": "users", "record": {"id": 1},
                                 "version": 5, "time_extracted": "2024-01-01T00:00:00+00:00"}
                                ).encode(), h)
    assert (rec.kind, rec.key_names, rec.table_version, rec.singer) == \
        (Kind.RECORD, ("id",), 5, True)
    missing_key = dec.decode(json.dumps({"type": "RECORD", "stream": "users",
                                         "record": {"name": "x"}}).encode(), h)
    assert missing_key.reason is Reason.BAD_KEY
    act = dec.decode(json.dumps({"type": "ACTIVATE_VERSION", "stream": "users", "version": 5}
                                ).encode(), h)
    assert (act.kind, act.table_version) == (Kind.ACTIVATE_VERSION, 5)
    state = dec.decode(json.dumps({"type": "STATE", "value": {"bookmarks": {}}}).encode(), h)
    assert (state.kind, state.data) == (Kind.STATE, {"value": {"bookmarks": {}}})


def test_unregistered_tenant_of_singer_message_is_rejected():
    got = decoder({("ghost", "s"): ()}).decode(
        json.dumps({"type": "RECORD", "stream": "s", "record": {}}).encode(),
        [("tenant", b"ghost")])
    assert got.reason is Reason.UNKNOWN_TENANT


def test_fast_and_full_paths_agree():
    """The fast path only shortcuts what the full checks decide the same way."""
    samples = [nasty.env({"id": 1}, key_names=["id"], sequence=5),
               nasty.env({"id": 1, "b": 2}, key_names=["id", "b"]),
               nasty.env({"id": 1}, key_names=["id", "id"]),
               nasty.env({"id": 1}, key_names=[1]),
               nasty.env({"id": None}, key_names=["id"]),
               nasty.env({"id": 1}, sequence=2**64),
               nasty.env({"id": 1}, sequence=True),
               nasty.env({"id": 1}, tenant=""),
               nasty.env({"id": 1}, tenant=" "),
               nasty.env({"id": 1}, tenant="x" * 300),
               nasty.env({"id": 1}, stream="a\u0000b"),
               nasty.env({"id": 1}, tenant="\u0000")]
    for value in samples:
        obj = json.loads(value)
        a = decode_envelope(obj, None, fast=True)
        b = decode_envelope(obj, None, fast=False)
        assert (a.kind, a.key_names, a.sequence, a.reason) == \
            (b.kind, b.key_names, b.sequence, b.reason), value


@pytest.mark.parametrize(("value", "headers"), [
    (json.dumps({"tenant": "_unassigned", "stream": "orders", "data": {"id": 1}}).encode(), None),
    (json.dumps({"type": "RECORD", "stream": "orders", "record": {"id": 1}}).encode(),
     [("tenant", b"_unassigned")]),
], ids=["envelope", "singer"])
def test_no_message_can_claim_the_reserved_unassigned_tenant_even_once_it_has_a_destination(
        value, headers):
    # an operator gave _unassigned a destination, so the registry now holds it: a message
    # that names it would otherwise load its stream as a table into the platform's schema
    registered = Decoder(DecodeRules(max_message_bytes=4096),
                         (TENANTS | {"_unassigned"}).__contains__, lambda t, s: ())
    got = registered.decode(value, headers)
    assert (got.kind, got.reason) == (Kind.REJECTED, Reason.UNKNOWN_TENANT)
    assert got.message == ("tenant '_unassigned' is reserved for messages that name no "
                           "registered tenant; send the record under its own tenant")


def test_a_singer_state_names_whose_state_it_is_from_its_header():
    dec, h = decoder(), [("tenant", b"acme")]
    msg = json.dumps({"type": "STATE", "value": {"bookmarks": {"users": 3}}}).encode()
    assert dec.decode(msg, h).state_id == "default"  # sent without --state-id
    assert dec.decode(msg, [*h, ("state_id", b"tap-a")]).state_id == "tap-a"
    for bad in (b"", b"  ", b"\xff", b"x" * 256):
        got = dec.decode(msg, [*h, ("state_id", bad)])
        assert (got.kind, got.reason, got.tenant) == (Kind.REJECTED, Reason.WRONG_TYPE, "acme")
        assert "'state_id' header" in got.message and "--state-id" in got.message


def test_spool_produce_sends_the_state_id_in_the_header_the_spool_job_reads():
    from spool.commands import produce
    from spool.ingest import singer

    assert produce.STATE_ID_HEADER == singer.STATE_ID_HEADER
