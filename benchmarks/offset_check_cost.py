"""What exact offset sets cost the spool job, and how fast ``spool check offsets`` answers.

    .venv/bin/python benchmarks/offset_check_cost.py [--batches 20000] [--runs 5] [--out FILE]

1. ``note_record``, per record, as Spool had it (span only) and with its offset appended:
   the same 25,000 records (every 50th offset of a partition, as a stream among 50 sees
   them), in turns; then the whole per-record work around it (spool.ingest.chunks on 20,000
   envelopes, the parts sealed, sets packed) both ways; packing per record; the ledger write
   of 500 batches with and without their sets.
2. The check on a fresh ledger database of ``--batches`` batches (50 streams x windows,
   each batch 20 records of each of 6 partitions: 2.4 M offsets at 20,000), everything
   covered, the group's offsets committed at the partitions' ends: the whole check, and
   per partition. Then reading and classifying uncovered offsets from Kafka: 30,000
   Singer STATE messages on one partition, no batch holding them.

Medians with min and max go to benchmarks/results/offset_check_cost.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import timeit
import uuid
from collections import namedtuple
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402
from benchmarks.spool_throughput import drop_databases, fresh_database, stack_env  # noqa: E402
from spool.ingest import offsets  # noqa: E402
from spool.ingest.parts import Part  # noqa: E402

PARTITIONS, STREAMS, PER_BATCH = 6, 50, 20
Rec = namedtuple("Rec", "offset timestamp value headers")


class SpanOnly(Part):
    """Part.note_record as it was before offset sets (the span per partition only)."""

    def note_record(self, topic_partition, offset, size, event_ms):
        self.records += 1
        self.bytes += size
        rng = self.offsets.get(topic_partition)
        if rng is None:
            self.offsets[topic_partition] = [offset, offset, 1]
        else:
            if offset < rng[0]:
                rng[0] = offset
            if offset > rng[1]:
                rng[1] = offset
            rng[2] += 1
        if self.min_event_ms is None or event_ms < self.min_event_ms:
            self.min_event_ms = event_ms
        if self.max_event_ms is None or event_ms > self.max_event_ms:
            self.max_event_ms = event_ms


def note_cost(cls) -> float:
    """ns per note_record call, best of 7 rounds of 25,000 records."""
    offs = [1_000_000 + 50 * i for i in range(25_000)]

    def run():
        part = cls()
        note = part.note_record
        for o in offs:
            note("spool.fatq/3", o, 120, 1_700_000_000_000)

    return min(timeit.repeat(run, timer=time.process_time, number=1, repeat=7)) / len(offs) * 1e9


def shaping_cost(cls) -> float:
    """µs per record of spool.ingest.chunks on 20,000 envelopes (50 streams), sealed."""
    from spool.ingest import chunks
    from spool.ingest.chunks import ChunkShaper
    from spool.ingest.decode import Decoder, DecodeRules

    class Directory:
        def schema(self, t, s):
            return None

        def stream_keys(self, t, s):
            return None

    records = [Rec(i, 1_700_000_000_000 + i, json.dumps(
        {"tenant": "acme", "stream": f"s{i % STREAMS}", "key_names": ["id"],
         "data": {"id": i, "name": f"n{i}", "amount": i / 7, "tags": ["a", "b"]}}).encode(), [])
        for i in range(20_000)]
    decoder = Decoder(DecodeRules(), {"acme"}.__contains__, lambda t, s: None)
    saved, chunks.Part = chunks.Part, cls
    try:
        def run():
            shaper = ChunkShaper(decoder, Directory(), 60_000, lambda *a: None)
            shaper.add_chunk("spool.fatq", 3, 0, records)
            shaper.take_parts()

        return min(timeit.repeat(run, timer=time.process_time, number=1,
                                 repeat=5)) / len(records) * 1e6
    finally:
        chunks.Part = saved


def pack_cost() -> dict:
    sparse = list(range(0, 25_000 * 50, 50))
    dense = list(range(25_000))
    small = [7, 57, 107]
    out = {}
    for name, values in (("sparse_25000", sparse), ("dense_25000", dense), ("three", small)):
        t = min(timeit.repeat(lambda v=values: offsets.pack(v), number=20, repeat=5)) / 20
        out[f"pack_{name}_ns_per_offset"] = t / len(values) * 1e9
        out[f"pack_{name}_bytes"] = len(offsets.pack(values))
    blobs = [offsets.pack(range(s, 25_000 * 50, 50)) for s in range(50)]
    t = min(timeit.repeat(lambda: offsets.unpack_many(blobs), number=3, repeat=5)) / 3
    out["unpack_many_ns_per_offset"] = t / (25_000 * 50) * 1e9
    return out


def batch_record(batch_id: str, window: int, sets: dict):
    """A READY batch holding ``sets`` ({"topic/partition": offsets})."""
    from spool.ledger.store import BatchRecord

    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=window)
    n = sum(len(v) for v in sets.values())
    return BatchRecord(
        batch_id=batch_id, tenant_id="t", stream=batch_id.split("/")[1], uri=f"/x/{batch_id}",
        window_start=start, window_end=start + timedelta(minutes=1), pane=0, record_count=n,
        row_count=n, byte_count=1, file_bytes=1, min_sequence=0, max_sequence=0,
        offsets={tp: [v[0], v[-1], len(v)] for tp, v in sets.items()}, key_names=("id",),
        columns={}, meta={},
        exact_offsets={tp: (v[0], v[-1], len(v), offsets.pack(v), True)
                       for tp, v in sets.items()})


def stream_batch(topic: str, window: int, stream: int, tag: str = "") -> object:
    """Stream ``stream``'s batch of ``window``: every 50th offset of each partition's
    stretch for the window, 20 per partition."""
    base = window * STREAMS * PER_BATCH + stream
    offs = list(range(base, base + STREAMS * PER_BATCH, STREAMS))
    return batch_record(f"t/s{stream}/{window}{tag}", window,
                        {f"{topic}/{p}": offs for p in range(PARTITIONS)})


def fill(ledger, topic: str, batches: int) -> tuple[int, float]:
    """``batches`` batches, 500 per record_batches call; (windows, seconds)."""
    windows = -(-batches // STREAMS)
    todo = [stream_batch(topic, w, s) for w in range(windows) for s in range(STREAMS)]
    t0 = time.perf_counter()
    for i in range(0, batches, 500):
        ledger.record_batches(todo[i:min(i + 500, batches)])
    return windows, time.perf_counter() - t0


def write_cost(ledger, topic: str, exact: bool, r: int) -> dict:
    """ms per batch of one record_batches call of 500 new batches."""
    import dataclasses

    todo = [stream_batch(topic, 1_000_000 + r, s % STREAMS, f"/w{exact}{s}")
            for s in range(500)]
    if not exact:
        todo = [dataclasses.replace(b, exact_offsets=None) for b in todo]
    t0 = time.perf_counter()
    ledger.record_batches(todo)
    return {"ms_per_batch": (time.perf_counter() - t0) / len(todo) * 1000}


def classification(ledger, bootstrap: str, topic: str, group: str, n: int) -> None:
    """Partition 0 of ``topic``: a record, ``n`` Singer STATE messages, a record; one batch
    holds the two records; the group committed past them."""
    from kafka import KafkaProducer

    from spool import offset_check

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20)
    record = json.dumps({"tenant": "t", "stream": "s", "data": {"id": 1}}).encode()
    producer.send(topic, record, partition=0)
    for i in range(n):
        producer.send(topic, json.dumps({"type": "STATE", "value": {"at": i}}).encode(),
                      partition=0, headers=[("tenant", b"t")])
    producer.send(topic, record, partition=0)
    producer.flush()
    producer.close()
    ledger.record_batches([batch_record("t/s/states", 0, {f"{topic}/0": [0, n + 1]})])
    offset_check.rewind(bootstrap, topic, group, {0: n + 2})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=20_000)
    parser.add_argument("--states", type=int, default=30_000,
                        help="uncovered offsets to classify (default 30000)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    notes = harness.interleave({"span_only": lambda _r: {"ns": note_cost(SpanOnly)},
                                "with_sets": lambda _r: {"ns": note_cost(Part)}}, args.runs)
    shaping = harness.interleave({"span_only": lambda _r: {"us": shaping_cost(SpanOnly)},
                                  "with_sets": lambda _r: {"us": shaping_cost(Part)}},
                                 args.runs)
    packing = pack_cost()

    from kafka.admin import KafkaAdminClient, NewTopic

    from spool import offset_check
    from spool.ledger.registry import Registry
    from spool.ledger.store import Ledger

    env = stack_env()
    tag = uuid.uuid4().hex[:8]
    admin_dsn = env["SPOOL_LEDGER_DSN"].rsplit("/", 1)[0] + "/postgres"
    bootstrap = env["SPOOL_KAFKA_BOOTSTRAP"]
    topic, states, group = f"bench.offsets.{tag}", f"bench.states.{tag}", f"bench-{tag}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1), NewTopic(states, 1, 1)])
    dsn = fresh_database(admin_dsn, f"bench_offsets_{tag}")
    ledger = Ledger(dsn)
    try:
        ledger.migrate()
        Registry(ledger).add_tenant("t")  # STATE of an unknown tenant would be rejected: lost
        writes = harness.interleave(
            {"span_only": lambda r: write_cost(ledger, "bench.write", False, r),
             "with_sets": lambda r: write_cost(ledger, "bench.write", True, r)}, args.runs)
        windows, fill_s = fill(ledger, topic, args.batches)
        end = windows * STREAMS * PER_BATCH
        offset_check.rewind(bootstrap, topic, group, dict.fromkeys(range(PARTITIONS), end))
        classification(ledger, bootstrap, states, group, args.states)

        def whole(_r):
            t0 = time.perf_counter()
            got = offset_check.check_offsets(ledger, bootstrap, topic, group)
            assert got["ok"] and got["checked"] == PARTITIONS * end, got
            return {"seconds": time.perf_counter() - t0}

        def one(_r):
            t0 = time.perf_counter()
            lo, _hi, _n = offset_check.gaps(ledger, topic, 0, 0, end)
            assert lo.size == 0
            return {"seconds": time.perf_counter() - t0}

        def classify(_r):
            t0 = time.perf_counter()
            got = offset_check.check_offsets(ledger, bootstrap, states, group)
            assert got["ok"] and got["partitions"][0]["state"] == args.states, got
            return {"seconds": time.perf_counter() - t0}

        checks = harness.interleave({"whole_check": whole, "one_partition_ledger": one,
                                     "classify_states": classify}, args.runs)
    finally:
        ledger.close()
        admin.delete_topics([topic, states])
        admin.close()
        drop_databases(admin_dsn, [f"bench_offsets_{tag}"])
    cases = {"note_record_with_sets": notes["with_sets"], "note_record_span_only":
             notes["span_only"], "shaping_with_sets": shaping["with_sets"],
             "shaping_span_only": shaping["span_only"], "write_with_sets": writes["with_sets"],
             "write_span_only": writes["span_only"], **checks}
    summary = {name: harness.summarise(samples) for name, samples in cases.items()}
    payload = {
        "benchmark": "offset_check_cost", "commit": harness.commit(),
        "machine": harness.machine(), "versions": harness.versions(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "cases": summary,
        "ratios": {"note_record": harness.ratio(summary, "note_record_with_sets",
                                                "note_record_span_only", "ns"),
                   "shaping": harness.ratio(summary, "shaping_with_sets", "shaping_span_only",
                                            "us"),
                   "ledger_write": harness.ratio(summary, "write_with_sets", "write_span_only",
                                                 "ms_per_batch")},
        "packing": {k: round(v, 2) for k, v in packing.items()},
        "ledger": {"batches": args.batches, "offsets_checked": PARTITIONS * end,
                   "batch_offsets_rows": args.batches * PARTITIONS, "fill_s": round(fill_s, 1),
                   "states_classified": args.states},
    }
    print(json.dumps(payload["packing"], indent=2))
    return harness.finish("offset_check_cost", payload, args.out,
                          {"ns": "ns", "us": "µs", "ms_per_batch": "ms", "seconds": "s"})


if __name__ == "__main__":
    sys.exit(main())
