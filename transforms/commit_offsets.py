"""CommitOffsets: a partition's group offset passes only records already in the ledger.

Read positions ``((topic, partition), next_offset)`` carry the event time of the chunk's last
record; event times are non-decreasing within a partition (ReadFromKafka clamps them), so
every record before ``next_offset`` lies in that window or an earlier one. Positions and the
markers WriteBatches emits after recording batches are windowed alike and grouped under one
key: the group for window W fires only when the watermark has passed W's end on *both*
inputs, that is, after every batch holding records of W or earlier is in the ledger. Then
the largest position per partition is committed to the consumer group.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import FixedWindows

from spool.kafka_config import consumer_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommitConfig:
    bootstrap: str
    group: str
    window_seconds: float
    kafka_config: tuple[str, ...] = ()


class _CommitFn(beam.DoFn):
    def __init__(self, cfg: CommitConfig) -> None:
        self.cfg = cfg
        self.commits = Metrics.counter("spool", "offset_commits")

    def setup(self):
        from kafka import KafkaConsumer

        self._consumer = KafkaConsumer(**consumer_config(
            self.cfg.bootstrap, self.cfg.kafka_config, group_id=self.cfg.group))
        self._committed: dict = {}

    def process(self, element):
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        _, items = element
        best: dict = {}
        for kind, value in items:
            if kind == "pos":
                (topic, partition), offset = value
                tp = TopicPartition(topic, partition)
                if offset > best.get(tp, -1):
                    best[tp] = offset
        todo = {}
        for tp, offset in best.items():
            known = self._committed.get(tp)
            if known is None:
                known = self._consumer.committed(tp) or 0
            if offset > known:
                todo[tp] = OffsetAndMetadata(offset, "", -1)
        if todo:
            self._consumer.commit(todo)
            for tp, om in todo.items():
                self._committed[tp] = om.offset
            self.commits.inc(len(todo))
            log.info("committed offsets %s", {f"{tp.topic}/{tp.partition}": om.offset
                                              for tp, om in todo.items()})

    def teardown(self):
        consumer = getattr(self, "_consumer", None)
        if consumer is not None:
            consumer.close(autocommit=False)


class CommitOffsets(beam.PTransform):
    def __init__(self, cfg: CommitConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def expand(self, inputs):
        positions, written = inputs
        window = FixedWindows(self.cfg.window_seconds)
        pos = (positions
               | "WindowPositions" >> beam.WindowInto(window)
               | "TagPositions" >> beam.Map(lambda kv: ("offsets", ("pos", kv))))
        done = (written
                | "WindowMarkers" >> beam.WindowInto(window)
                | "TagMarkers" >> beam.Map(lambda batch_id: ("offsets", ("batch", batch_id))))
        return (
            (pos, done)
            | "Merge" >> beam.Flatten()
            | "AfterBatchesRecorded" >> beam.GroupByKey()
            | "Commit" >> beam.ParDo(_CommitFn(self.cfg))
        )
