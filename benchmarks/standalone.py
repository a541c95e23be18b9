"""The limit for Kafka → warehouse: one plain consumer that decodes, shapes and loads
straight into PostgreSQL, with Spool's naming and upsert rules and nothing else.

It is the design the service Spool follows ran before it had a spool: no batch files, no
ledger, no Beam, one process. It uses the same library code for the work itself
(spool.ingest.chunks to decode and shape, spool.warehouse to plan, stage and merge), so
the difference between it and Spool end to end is what the architecture costs: files
written and read back, the ledger's bookkeeping, two jobs, Beam's runner. It is not a
product: a crash loses what it holds in memory, and one tenant's failing warehouse stops
every tenant.
"""

from __future__ import annotations

from collections import defaultdict

import psycopg2

from spool.ingest import batchfile
from spool.ingest.chunks import ChunkShaper
from spool.ingest.decode import Decoder, DecodeRules
from spool.ingest.directory import Directory
from spool.ingest.writer import merge_parts
from spool.kafka_config import consumer_config
from spool.warehouse.dialects import DIALECTS
from spool.warehouse.load import Loader
from spool.warehouse.stage import stage_batches


class MemoryRegistry:
    """The tenants and stream keys the shaper asks about, held in memory."""

    def __init__(self, tenants) -> None:
        self.tenants = set(tenants)
        self.keys: dict = {}
        self.schemas: dict = {}

    def tenant_ids(self) -> set[str]:
        return set(self.tenants)

    def stream_keys(self) -> dict:
        return dict(self.keys)

    def stream_schema(self, tenant_id, stream):
        key = (tenant_id, stream)
        return (self.keys[key], self.schemas.get(key)) if key in self.keys else None

    def save_stream_schema(self, tenant_id, stream, key_names, schema, record_id) -> None:
        self.keys[(tenant_id, stream)] = tuple(key_names)
        self.schemas[(tenant_id, stream)] = schema


def consume_and_load(bootstrap: str, topic: str, partitions: int, group: str,
                     warehouse_dsn: str, schemas: dict[str, str], max_message_bytes: int,
                     window_s: float = 60.0, flush_records: int = 1_000_000) -> dict:
    """Read ``topic`` from the beginning to its end offsets; every ``flush_records``
    records (and at the end) load what was read, one warehouse transaction per tenant,
    then commit the offsets. ``schemas``: tenant → warehouse schema. Returns counts."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    registry = MemoryRegistry(schemas)
    directory = Directory(registry)
    shaper = ChunkShaper(Decoder(DecodeRules(max_message_bytes=max_message_bytes),
                                 directory.is_tenant, directory.stream_keys),
                         directory, int(window_s * 1000), lambda *_: None)
    dialect = DIALECTS["postgres"]
    loader = Loader(dialect, name="standalone")
    conn = psycopg2.connect(warehouse_dsn)
    consumer = KafkaConsumer(**consumer_config(bootstrap, group_id=group,
                                               max_poll_records=20_000))
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    floors = dict.fromkeys(tps, 0)
    counts = {"records": 0, "rows": 0, "flushes": 0}
    pending = 0

    def flush() -> None:
        by_tenant: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        for (tenant, stream, _window, _keys), part in shaper.take_parts():
            by_tenant[tenant][stream].append(part)
        n = counts["flushes"]
        for tenant, streams in sorted(by_tenant.items()):
            if tenant not in schemas:  # _unassigned: a product would keep it; the limit drops
                continue
            groups = []
            for stream, parts in sorted(streams.items()):
                part = merge_parts(parts)
                tables, _ = batchfile.summarize(part.table)
                meta = batchfile.BatchMeta(
                    tenant=tenant, stream=stream, key_names=list(part.key_names),
                    schema=part.schema, activate_version=part.activate_version,
                    batched_at_ms=part.max_event_ms or 0, tables=tables,
                    row_count=part.table.num_rows)
                groups.append(stage_batches(stream, [(f"standalone-{n}-{tenant}-{stream}",
                                                      meta, part.table)], dialect))
            counts["rows"] += loader.load(conn, schemas[tenant], groups).rows
        counts["flushes"] += 1

    while any(consumer.position(tp) < end[tp] for tp in tps):
        for tp, records in consumer.poll(timeout_ms=500).items():
            floors[tp] = shaper.add_chunk(tp.topic, tp.partition, floors[tp], records)
            counts["records"] += len(records)
            pending += len(records)
        if pending >= flush_records:
            flush()
            consumer.commit({tp: OffsetAndMetadata(consumer.position(tp), "", -1)
                             for tp in tps})
            pending = 0
    flush()
    consumer.commit({tp: OffsetAndMetadata(end[tp], "", -1) for tp in tps})
    consumer.close()
    conn.close()
    return counts
