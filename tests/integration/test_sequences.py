"""A key's versions as docs/envelope.md tells a user to send them: through real Kafka (its
timestamps make the default sequence), the spool job's shaping, a real ledger, a real
warehouse, and what ``spool loads`` and the ``load.completed`` webhook say about it."""

from __future__ import annotations

import json
import time

import psycopg2

from spool.ingest.chunks import ChunkShaper
from spool.ingest.decode import Decoder, DecodeRules
from spool.ingest.directory import Directory
from spool.ingest.writer import assemble, merge_parts
from spool.ledger import outbox
from spool.ledger.registry import Registry
from spool.loader.tenant import LoaderConfig, Status, TenantLoader
from spool.objectstore import ObjectStore
from tests.integration.test_cli import spool as cli
from tests.integration.test_offset_check import produce, read_back
from tests.integration.test_tenant_loader import ledger  # noqa: F401


def envelope(data: dict, **fields) -> dict:
    return {"tenant": "acme", "stream": "orders", "key_names": ["id"], "data": data, **fields}


class Sender:
    """Messages into a one-partition topic, then spooled as the spool job does and loaded."""

    def __init__(self, stack, ledger, topic, tmp_path):  # noqa: F811
        self.stack, self.ledger, self.topic, self.tmp_path = stack, ledger, topic, tmp_path
        self.sent = 0
        self.loader = TenantLoader(ledger, ObjectStore(), LoaderConfig(), owner="test")

    def send_and_load(self, *messages: dict) -> None:
        produce(self.stack.kafka_bootstrap, self.topic, 0,
                [(json.dumps(m).encode(), []) for m in messages])
        records = read_back(self.stack.kafka_bootstrap, self.topic, 0,
                            self.sent + len(messages))[self.sent:]
        assert len(records) == len(messages)
        self.sent += len(messages)
        # what the spool job does with them: shape, one batch, its file, READY
        registry = Registry(self.ledger)
        directory = Directory(registry, refresh_seconds=0)
        shaper = ChunkShaper(Decoder(DecodeRules(), directory.is_tenant,
                                     directory.stream_keys),
                             directory, 60_000, registry.save_tenant_state)
        shaper.add_chunk(self.topic, 0, 0, records)
        taken = shaper.take_parts()
        windows = {key[2] for key, _part in taken}  # one message a time: one window
        assert len(windows) == 1
        uri, data, record = assemble("acme", "orders", windows.pop(), 60_000, 0,
                                     merge_parts([part for _key, part in taken]),
                                     str(self.tmp_path))
        ObjectStore().put_atomic(uri, data)
        self.ledger.record_batches([record])
        assert [a.status for a in self.loader.load("acme", ["orders"])] == [Status.LOADED]


def warehouse(stack, sql: str) -> list[tuple]:
    conn = psycopg2.connect(stack.warehouse_dsn)
    with conn, conn.cursor() as cur:
        cur.execute(sql)
        got = cur.fetchall()
    conn.close()
    return got


def newest_load(ledger_dsn) -> dict:
    rc, out, err = cli(ledger_dsn, "loads", "--tenant", "acme", "--limit", "1", "--json")
    assert rc == 0, err
    (row,) = [json.loads(line) for line in out.splitlines()]
    return row


def test_an_update_sent_as_the_docs_show_replaces_a_record_sent_without_sequence(
        stack, ledger, ledger_dsn, make_topic, pg_schema, tmp_path):  # noqa: F811
    send = Sender(stack, ledger, make_topic(partitions=1), tmp_path)
    send.send_and_load(envelope({"id": 7, "status": "new"}))  # no sequence: the default
    # the update as docs/envelope.md shows it: the time of the change, in epoch ms
    send.send_and_load(envelope({"id": 7, "status": "paid"},
                                sequence=int(time.time() * 1000)))
    send.loader.close()
    assert warehouse(stack, f'SELECT id, status FROM "{pg_schema}".orders') == [(7, "paid")]
    got = newest_load(ledger_dsn)
    assert (got["inserted"], got["updated"], got["superseded"]) == (0, 1, 0)


def test_an_update_with_a_lower_sequence_is_reported_as_superseded(
        stack, ledger, ledger_dsn, make_topic, pg_schema, tmp_path):  # noqa: F811
    outbox.set_webhook(ledger, "acme", "http://127.0.0.1:9/hook", "env:SPOOL_TEST_HOOK")
    send = Sender(stack, ledger, make_topic(partitions=1), tmp_path)
    now_ms = int(time.time() * 1000)
    send.send_and_load(envelope({"id": 7, "status": "paid"}, sequence=now_ms))
    # an older version of the record, sent later (a replay, a slow producer): it loses
    send.send_and_load(envelope({"id": 7, "status": "new"}, sequence=now_ms - 60_000),
                       envelope({"id": 8, "status": "new"}, sequence=now_ms - 60_000))
    send.loader.close()
    assert warehouse(stack, f'SELECT id, status FROM "{pg_schema}".orders ORDER BY id') == \
        [(7, "paid"), (8, "new")]
    got = newest_load(ledger_dsn)
    assert (got["inserted"], got["updated"], got["superseded"]) == (1, 0, 1)
    assert warehouse(stack, "SELECT rows_inserted, rows_updated, rows_superseded FROM "
                            f'"{pg_schema}"._sdc_loads WHERE load_id = \'{got["load_id"]}\''
                     ) == [(1, 0, 1)]
    payloads = ledger.run(lambda cur: (cur.execute(
        "SELECT payload FROM webhook_events WHERE type = 'load.completed' "
        "AND payload->>'load_id' = %s", (got["load_id"],)), cur.fetchall())[1])
    (payload,) = [p for (p,) in payloads]
    assert (payload["rows_inserted"], payload["rows_superseded"]) == (1, 1)
    assert payload["tables"][0]["rows_superseded"] == 1
