"""The offset check: is every record the spool job's consumer group committed in a batch?

The spool job commits a partition's offset past a record only once the batch holding it is
in the ledger (docs/spool-job.md). So, per partition, every offset in the *checked range*

    [first offset a batch in the ledger holds (of batches created since --since), committed)

is in some batch's exact offset set (``batch_offsets``, docs/ledger.md), or is a message
that never goes into a batch: a Singer SCHEMA (learnt into the stream directory) or STATE
(saved as the tenant's state). Offsets before the range are not checked: Kafka may have
deleted them, the group may have started at the end of the topic, an older Spool kept no
sets. Offsets from the committed one on are still being spooled.

1. Kafka first: the topic's partitions, the group's committed offsets, each partition's log
   start. (Read before the ledger: a batch below a committed offset was recorded before
   the commit, so the ledger read after it has it.)
2. The ledger: per partition, the sets of the batches overlapping the range, in order of
   their first offset, unpacked in chunks (numpy); what no set holds are the *gaps*.
3. Kafka again: the messages at the gaps' offsets (at most ``max_read`` per partition),
   decoded as the spool job decodes them (spool.ingest.decode) and classified:

   ``schema``, ``state``  a Singer control message: never in a batch, not lost
   ``no_message``         Kafka holds no message there (a transaction marker, compacted):
                          the spool job never saw one either
   ``deleted``            before the partition's log start (retention): cannot be read
   ``lost``               any other message: a record, a rejection, an ACTIVATE_VERSION
                          that should be in a batch and is in none
   ``unread``             over ``max_read``, or Kafka did not answer in time

:func:`check_offsets` returns the answer as a dict (``spool check offsets --json`` prints
it; benchmarks/streaming_soak.py keeps it); :func:`rewind` moves a group back to its first
lost record so that the spool job, started again, spools from there.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime

import numpy as np

from spool import kafka_topics
from spool.ingest.decode import Decoder, DecodeRules, Kind
from spool.ingest.offsets import sorted_unique, unpack_many
from spool.kafka_config import consumer_config
from spool.ledger import coverage
from spool.ledger.store import Ledger

CONTROL = ("schema", "state")
CLASSES = ("schema", "state", "no_message", "deleted", "lost", "unread")
MAX_READ = 100_000  # uncovered offsets read from Kafka per partition
SAMPLES = 20  # lost offsets listed per partition
SEEK_AHEAD = 5_000  # a gap this far past the read position is sought, not read up to
TIMEOUT_S = 10.0
BITMAP_MIN = 1 << 20  # offsets a sweep step may map as a bitmap however few it holds


class CheckError(Exception):
    """The check could not run (Kafka or the ledger); the text says why and what to do."""


# -- 2. the ledger: gaps ----------------------------------------------------------------------

class _Gaps:
    """The offsets in [start, stop) no set holds, from sets arriving in order of their first
    offset: everything below the next set's first offset is settled."""

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop, self.frontier = start, stop, start
        self.carry = np.zeros(0, dtype=np.int64)  # offsets at or past the frontier
        self.held: list[tuple] | None = None
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []
        self.inexact = 0

    def add(self, rows: list[tuple]) -> None:
        if self.held is not None:
            self._settle(self.held, rows[0][0])
        self.held = rows

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """(first, last) offsets of each gap, ascending; adjacent gaps joined."""
        if self.held is not None:
            self._settle(self.held, self.stop)
        elif self.frontier < self.stop:
            self._settle([], self.stop)
        if not self.lo:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        lo, hi = np.concatenate(self.lo), np.concatenate(self.hi)
        joined = np.flatnonzero(lo[1:] != hi[:-1] + 1) + 1  # gaps that start afresh
        keep = np.concatenate(([0], joined))
        ends = np.concatenate((joined - 1, [lo.size - 1]))
        return lo[keep], hi[ends]

    def _settle(self, rows: list[tuple], upto: int) -> None:
        self.inexact += sum(1 for r in rows if not r[3])
        offsets = unpack_many([r[2] for r in rows]) if rows else np.zeros(0, dtype=np.int64)
        offsets = np.concatenate((self.carry, offsets))
        hi = min(upto, self.stop)
        if hi < self.frontier:
            hi = self.frontier
        self.carry = offsets[(offsets >= hi) & (offsets < self.stop)]
        done = offsets[(offsets >= self.frontier) & (offsets < hi)]
        width = hi - self.frontier
        if width <= 4 * done.size + BITMAP_MIN:  # mostly covered: a bitmap, no sort
            held = np.zeros(width + 2, dtype=bool)
            held[0] = held[-1] = True  # the frontier - 1 and hi, as edges
            held[done - self.frontier + 1] = True
            edges = np.flatnonzero(held) + self.frontier - 1
        else:  # a wide stretch with few offsets held (a huge gap)
            edges = np.concatenate(([self.frontier - 1], sorted_unique(done), [hi]))
        at = np.flatnonzero(np.diff(edges) > 1)
        if at.size:
            self.lo.append(edges[at] + 1)
            self.hi.append(edges[at + 1] - 1)
        self.frontier = hi


def gaps(ledger: Ledger, topic: str, partition: int, start: int,
         stop: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(firsts, lasts, batches assumed whole) of the offsets in [start, stop) that no
    batch's set holds."""
    found = _Gaps(start, stop)
    if start < stop:
        coverage.stream_sets(ledger, topic, partition, start, stop, found.add)
    lo, hi = found.finish()
    return lo, hi, found.inexact


# -- 3. Kafka: what the gaps hold ---------------------------------------------------------------

class _Reader:
    """Messages of one partition by offset range, ascending, reading on where the ranges are
    close and seeking where they are not."""

    def __init__(self, consumer, tp, timeout_s: float) -> None:
        self.consumer, self.tp, self.timeout_s = consumer, tp, timeout_s
        self.pending: deque = deque()  # fetched, not looked at yet
        self.next: int | None = None  # the offset the consumer fetches next

    def read(self, lo: int, hi: int) -> tuple[list, int]:
        """(messages at offsets lo..hi, the offset up to which Kafka answered: hi + 1 unless
        it did not within the timeout)."""
        while self.pending and self.pending[0].offset < lo:
            self.pending.popleft()
        if not self.pending and (self.next is None or lo < self.next
                                 or lo > self.next + SEEK_AHEAD):
            self.consumer.seek(self.tp, lo)
            self.next = lo
        out = []
        quiet_since = time.monotonic()
        while True:
            while self.pending:
                if self.pending[0].offset > hi:
                    return out, hi + 1
                out.append(self.pending.popleft())
            if self.next > hi:
                return out, hi + 1
            if time.monotonic() - quiet_since > self.timeout_s:
                return out, self.next
            polled = self.consumer.poll(timeout_ms=500, max_records=2000).get(self.tp, [])
            if polled:
                quiet_since = time.monotonic()
            self.pending.extend(r for r in polled if r.offset >= lo)
            self.next = max(self.next, self.consumer.position(self.tp))


def _classify(decoder: Decoder, message) -> tuple[str, dict]:
    decoded = decoder.decode(message.value, message.headers)
    if decoded.kind is Kind.SCHEMA:
        return "schema", {}
    if decoded.kind is Kind.STATE:
        return "state", {}
    return "lost", {"offset": message.offset, "kind": decoded.kind.value,
                    "tenant": decoded.tenant, "stream": decoded.stream,
                    **({"reason": decoded.reason.value} if decoded.reason else {})}


def _read_gaps(reader: _Reader, decoder: Decoder, lo: np.ndarray, hi: np.ndarray,
               log_start: int, max_read: int) -> tuple[dict, list, list]:
    """(offsets per class, the first lost messages, per gap: its class counts)."""
    counts = dict.fromkeys(CLASSES, 0)
    lost: list[dict] = []
    per_gap = []
    budget = max_read
    for first, last in zip(lo.tolist(), hi.tolist(), strict=True):
        gap = dict.fromkeys(CLASSES, 0)
        if first < log_start:  # retention took them
            gap["deleted"] = min(last, log_start - 1) - first + 1
            first = log_start
        if first <= last:
            take = min(last - first + 1, budget)
            if take:
                messages, answered = reader.read(first, first + take - 1)
                budget -= take
                for message in messages:
                    cls, about = _classify(decoder, message)
                    gap[cls] += 1
                    if about and len(lost) < SAMPLES:
                        lost.append(about)
                gap["no_message"] = answered - first - len(messages)
                gap["unread"] = last + 1 - answered
            else:
                gap["unread"] = last - first + 1
        for k, v in gap.items():
            counts[k] += v
        per_gap.append(gap)
    return counts, lost, per_gap


# -- 1 .. 3 together ------------------------------------------------------------------------------

def _committed(consumer, topic: str, partitions: list[int]) -> tuple[dict, dict]:
    from kafka import TopicPartition

    tps = [TopicPartition(topic, p) for p in partitions]
    committed = {tp.partition: consumer.committed(tp) for tp in tps}
    starts = consumer.beginning_offsets(tps)
    return committed, {tp.partition: off for tp, off in starts.items()}


def check_offsets(ledger: Ledger, bootstrap: str, topic: str = "spool.fatq",
                  group: str = "spool", since: datetime | None = None,
                  partitions: Iterable[int] | None = None, max_read: int = MAX_READ,
                  show_gaps: int = 5, tenant_header: str = "tenant",
                  kafka_config: Iterable[str] = (), timeout_s: float = TIMEOUT_S) -> dict:
    """Per partition of ``topic``: the offset ``group`` committed, the range checked, the
    gaps (the first ``show_gaps``, each with its classes) and the lost records. ``ok`` is
    True when nothing was lost and every gap was read; ``lost``, ``unread`` are totals.
    Raises CheckError when Kafka or the ledger cannot answer."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    with kafka_topics.quiet():
        try:
            found = kafka_topics.require(bootstrap, topic, kafka_config, timeout_s)
        except kafka_topics.TopicError as exc:
            raise CheckError(str(exc)) from None
        wanted = sorted(set(range(found.partitions)) if partitions is None else set(partitions))
        bad = [p for p in wanted if p not in range(found.partitions)]
        if bad:
            raise CheckError(f"topic {topic!r} has partitions 0 to {found.partitions - 1}; "
                             f"--partition {bad[0]} is not one of them")
        try:
            consumer = KafkaConsumer(**consumer_config(
                bootstrap, kafka_config, group_id=group, client_id="spool-check",
                request_timeout_ms=int(timeout_s * 1000) + 1000, enable_auto_commit=False))
        except KafkaError as exc:
            raise CheckError(f"cannot read from Kafka at {bootstrap}: {exc}") from None
        try:
            committed, log_starts = _committed(consumer, topic, wanted)
            if not any(v is not None for v in committed.values()):
                raise CheckError(
                    f"consumer group {group!r} has committed no offset of topic {topic!r}: "
                    "nothing to check yet, or not the spool job's group (its "
                    "--consumer_group, default 'spool')")
            try:
                firsts = coverage.first_offsets(ledger, topic, wanted, since)
                tenants = coverage.known_tenants(ledger)
            except Exception as exc:  # noqa: BLE001 - whatever the driver raised, one line
                raise CheckError(f"cannot read the ledger: {type(exc).__name__}: "
                                 f"{str(exc).strip().splitlines()[0]}") from None
            decoder = Decoder(DecodeRules(tenant_header=tenant_header), tenants.__contains__,
                              lambda _t, _s: ())
            rows = [_partition(ledger, consumer, TopicPartition(topic, p), committed[p],
                               firsts.get(p), log_starts[p], decoder, max_read, show_gaps,
                               timeout_s) for p in wanted]
        except KafkaError as exc:
            raise CheckError(f"Kafka at {bootstrap} did not answer: {type(exc).__name__}") \
                from None
        finally:
            consumer.close(autocommit=False)
    lost = sum(r["lost"] for r in rows)
    unread = sum(r["unread"] for r in rows)
    return {"topic": topic, "consumer_group": group,
            "since": since.isoformat() if since else None,
            "ok": lost == 0 and unread == 0, "lost": lost, "unread": unread,
            "checked": sum(r["checked"] for r in rows), "partitions": rows}


def _partition(ledger: Ledger, consumer, tp, committed, first: int | None, log_start: int,
               decoder: Decoder, max_read: int, show_gaps: int, timeout_s: float) -> dict:
    row = {"partition": tp.partition, "committed": committed, "from": first, "checked": 0,
           "uncovered": 0, **dict.fromkeys(CLASSES, 0), "inexact_batches": 0,
           "gap_count": 0, "gaps": [], "first_lost": None, "lost_records": [], "note": None}
    if committed is None:
        row["note"] = "the group has committed no offset here"
        return row
    if first is None:
        row["note"] = "no batch holds records of this partition"
        return row
    if first >= committed:
        row["note"] = "the batches start at or after the committed offset"
        return row
    try:
        lo, hi, row["inexact_batches"] = gaps(ledger, tp.topic, tp.partition, first, committed)
    except Exception as exc:  # noqa: BLE001 - whatever the driver raised, one line
        raise CheckError(f"cannot read the ledger: {type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0]}") from None
    row["checked"] = committed - first
    row["uncovered"] = int((hi - lo + 1).sum()) if lo.size else 0
    row["gap_count"] = int(lo.size)
    if lo.size:
        consumer.assign([tp])
        counts, lost, per_gap = _read_gaps(_Reader(consumer, tp, timeout_s), decoder, lo, hi,
                                           log_start, max_read)
        row.update(counts)
        row["lost_records"] = lost
        row["gaps"] = [{"first": int(a), "last": int(b),
                        **{k: v for k, v in g.items() if v}}
                       for a, b, g in zip(lo[:show_gaps].tolist(), hi[:show_gaps].tolist(),
                                          per_gap[:show_gaps], strict=True)]
        # gaps are read in order: the first lost message is the smallest lost offset
        row["first_lost"] = lost[0]["offset"] if lost else None
    return row


def rewind(bootstrap: str, topic: str, group: str, to: dict[int, int],
           kafka_config: Iterable[str] = (), timeout_s: float = TIMEOUT_S) -> None:
    """Commit ``to`` (partition → offset) for ``group``: the spool job, started again, reads
    those partitions from there. Stop the job first: a running one commits over it."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata

    with kafka_topics.quiet():
        try:
            consumer = KafkaConsumer(**consumer_config(
                bootstrap, kafka_config, group_id=group, client_id="spool-check",
                request_timeout_ms=int(timeout_s * 1000) + 1000, enable_auto_commit=False))
            try:
                consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1)
                                 for p, o in to.items()})
            finally:
                consumer.close(autocommit=False)
        except KafkaError as exc:
            raise CheckError(f"Kafka at {bootstrap} did not take the offsets: "
                             f"{type(exc).__name__}") from None
