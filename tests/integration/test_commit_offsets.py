"""CommitOffsets at the end of a bounded input: a drain run has no next input to retry a
failed commit with, so it commits when its input ends or fails the job; it never ends as a
success with offsets it spooled left uncommitted."""

from __future__ import annotations

import socket

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from kafka import KafkaConsumer, TopicPartition

from transforms.commit_offsets import CommitConfig, CommitOffsets


def _run(bootstrap: str, topic: str, group: str, final_commit_seconds: float = 120,
         kafka_config: tuple[str, ...] = ()) -> None:
    # one take of partition 0 (offsets 0..5, two parts) and the marker recording both parts
    takes = [(topic, ("0:0", [(0, 0, 5)], {0: 0}, 2))]
    markers = [(topic, {"0:0": 0b11})]
    cfg = CommitConfig(bootstrap=bootstrap, group=group,
                       final_commit_seconds=final_commit_seconds, kafka_config=kafka_config)
    with TestPipeline() as p:
        _ = ((p | "Takes" >> beam.Create(takes), p | "Markers" >> beam.Create(markers))
             | CommitOffsets(cfg))


def test_a_drain_run_commits_what_it_spooled(stack, make_topic, unique):
    topic = make_topic(partitions=1)
    _run(stack.kafka_bootstrap, topic, unique)
    consumer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, group_id=unique,
                             enable_auto_commit=False)
    try:
        assert consumer.committed(TopicPartition(topic, 0)) == 5
    finally:
        consumer.close()


def test_a_drain_run_that_cannot_commit_fails_and_says_what_is_due(unique):
    with socket.socket() as s:  # a port nothing listens on: the broker is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Exception, match=r"cannot commit the offsets of t1 .*Due: \{0: 5\}"):
        _run(f"127.0.0.1:{port}", "t1", unique, final_commit_seconds=3,
             kafka_config=("bootstrap_timeout_ms=1000",))
