"""Batch files written before default sequences were Kafka ms (contract v3) load on today's
scale: an old default becomes its record's Kafka ms, an explicit sequence stays as sent."""

from __future__ import annotations

from spool.ingest.batchfile import ROOT_TABLE_KEY
from spool.warehouse.dialects import DIALECTS
from spool.warehouse.stage import stage_group
from tests.warehouse_helpers import make_batch

KAFKA_MS = 1_700_000_000_000  # make_batch's records arrive at this + their offset


def old_default(offset: int) -> int:
    """What Spool before contract v3 gave a record sent without a sequence."""
    return (KAFKA_MS + offset) * 1_000_000 + offset % 1_000_000


def test_old_default_sequences_become_kafka_ms_and_explicit_ones_stay():
    explicit_ns = (KAFKA_MS + 5) * 1_000_000 + 123  # an explicit ns time, not a default
    batch = make_batch("users", [{"id": 1, "tags": ["a", "b"]}, {"id": 2, "tags": ["c"]},
                                 {"id": 3}],
                       key_names=["id"], offsets=[41, 42, 43],
                       sequences=[old_default(41), explicit_ns, 1_732_612_345_000])
    group = stage_group("users", [batch], DIALECTS["postgres"])
    root = group.tables[ROOT_TABLE_KEY]
    assert root.system["_sdc_sequence"].to_pylist() == [KAFKA_MS + 41, explicit_ns,
                                                        1_732_612_345_000]
    (child,) = [t for p, t in group.tables.items() if p != ROOT_TABLE_KEY]
    assert sorted(zip(child.system["_sdc_record_id"].to_pylist(),
                      child.system["_sdc_sequence"].to_pylist(), strict=True)) == \
        [("q/0/41", KAFKA_MS + 41), ("q/0/41", KAFKA_MS + 41), ("q/0/42", explicit_ns)]


def test_a_file_of_todays_scale_is_left_as_it_is():
    batch = make_batch("users", [{"id": 1}], key_names=["id"], offsets=[7],
                       sequences=[KAFKA_MS + 7])
    group = stage_group("users", [batch], DIALECTS["postgres"])
    assert group.tables[ROOT_TABLE_KEY].system["_sdc_sequence"].to_pylist() == [KAFKA_MS + 7]
