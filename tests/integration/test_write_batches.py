"""WriteBatches on a real ledger and spool: a retried bundle writes the same bytes and row.

A bundle is retried when its worker fails after writing some of its effects: the object
only, or the object and the ledger row. The retry runs later (the clock has moved on) and
must write the same object, byte for byte, and the same ledger row, or the row that stays
(``ON CONFLICT DO NOTHING``) would describe bytes that are no longer there.
"""

from __future__ import annotations

import time

import psycopg2
import pytest

from spool.ingest.decode import Decoder, DecodeRules
from spool.ingest.parts import Part, rejected_row
from spool.ingest.shape import shape
from spool.ledger.store import Ledger
from spool.objectstore import ObjectStore, S3Config
from transforms.write_batches import WriteConfig, _WriteBatchFn

WINDOW_MS = 60_000
START_MS = 1_700_000_040_000  # a window start: a multiple of 60 s


def window_parts() -> list[bytes]:
    """Two parts of one (tenant, stream, window), as DecodeAndShape hands them on."""
    a, b = Part(key_names=("id",)), Part(key_names=("id",))
    a.takes, b.takes = {"0:0": 0b01}, {"0:0": 0b10}  # parts 0 and 1 of one take
    for part, offsets in ((a, range(0, 3)), (b, range(3, 5))):
        for offset in offsets:
            event_ms = START_MS + 1_000 * offset
            part.rows.extend(shape({"id": offset, "items": [offset, "x"]},
                                   rid=f"q/0/{offset}", sequence=offset,
                                   received_at_ms=event_ms, key_names=["id"]))
            part.note_record("q/0", offset, 20, event_ms)
            part.note_sequence(offset)
    return [a.dumps(), b.dumps()]


def rejected_parts() -> list[bytes]:
    decoded = Decoder(DecodeRules(), lambda t: True, lambda t, s: None).decode(b"{oops")
    part = Part()
    part.takes = {"0:0": 0b11}
    part.rows.append(((), rejected_row(decoded, "q/0/9", START_MS + 9, START_MS + 9,
                                       b"{oops")))
    part.note_record("q/0", 9, 5, START_MS + 9)
    return [part.dumps()]


def ledger_row(ledger_dsn: str, stream: str) -> dict:
    conn = psycopg2.connect(ledger_dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM batches WHERE tenant_id = 'acme' AND stream = %s", (stream,))
        assert cur.rowcount == 1
        row = dict(zip([c[0] for c in cur.description], cur.fetchone(), strict=True))
    conn.close()
    # the database's own clock columns are not what the bundle writes
    return {k: v for k, v in row.items() if k not in ("created_at", "updated_at")}


def forget(ledger_dsn: str) -> None:
    conn = psycopg2.connect(ledger_dsn)
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM batches")
    conn.close()


@pytest.mark.parametrize("where", ["local", "s3"])
@pytest.mark.parametrize("stream, blobs", [("orders", window_parts()),
                                           ("_sdc_rejected", rejected_parts())],
                         ids=["records", "rejected"])
def test_a_retried_bundle_writes_the_same_object_and_ledger_row(stack, ledger_dsn, tmp_path,
                                                                s3_prefix, where, stream, blobs):
    s3 = S3Config(endpoint_url=stack.s3_endpoint, access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
                  secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
                  region_name=stack.env["AWS_DEFAULT_REGION"])
    location = str(tmp_path / "spool") if where == "local" else \
        f"s3://{stack.s3_bucket}/{s3_prefix}spool"
    Ledger(ledger_dsn).migrate()
    cfg = WriteConfig(topic="q", spool_location=location, ledger_dsn=ledger_dsn,
                      window_seconds=WINDOW_MS / 1000, s3=s3)
    element = (("acme", stream), (START_MS, 0, blobs, False))

    def bundle() -> tuple[str, bytes, dict]:
        fn = _WriteBatchFn(cfg)
        fn.setup()
        fn.start_bundle()
        fn.process(element)
        (marker,) = list(fn.finish_bundle())
        fn.teardown()
        # the marker CommitOffsets waits for: both parts of the take are recorded
        assert marker.value == ("q", {"0:0": 0b11})
        row = ledger_row(ledger_dsn, stream)
        return row["batch_id"], ObjectStore(s3).read(row["uri"]), row

    first = bundle()
    # retried later: wait until the wall clock has moved on by more than its resolution
    later = time.time() + 0.01
    while time.time() < later:
        pass
    assert bundle() == first  # the row was there: the object must still match it
    forget(ledger_dsn)  # the first attempt died before its ledger row
    batch_id, data, row = bundle()
    assert (batch_id, data, row) == first
    assert row["state"] == "READY" and row["file_bytes"] == len(data)

