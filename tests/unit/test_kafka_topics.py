"""The rules behind ``spool topics``: which names Kafka takes, how retention reads."""

from __future__ import annotations

import pytest

from spool.kafka_topics import create_hint, name_problem, retention_text


@pytest.mark.parametrize(("ms", "text"), [(-1, "forever"), (7 * 86_400_000, "7d"),
                                          (36 * 3_600_000, "36h"), (90 * 60_000, "90m"),
                                          (15_000, "15s"), (250, "250ms"), (0, "0ms"),
                                          (None, "?")])
def test_retention_reads_in_its_largest_exact_unit(ms, text):
    assert retention_text(ms) == text


def test_a_topic_name_is_what_kafka_takes():
    assert name_problem("spool.fatq") is None and name_problem("a-b_c.9") is None
    assert name_problem("a b") and name_problem("") and name_problem("x" * 250)
    assert name_problem("..") == "topic name '..' is reserved by Kafka; choose another"


def test_the_hint_reaches_the_same_broker():
    assert create_hint("q") == "spool topics create q"
    assert create_hint("q", "--bootstrap b:9092") == "spool topics create q --bootstrap b:9092"
