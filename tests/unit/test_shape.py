"""Shaping rules: flattening, child tables, system fields, exact numbers (golden rows)."""

from __future__ import annotations

from collections import namedtuple

import pytest

from spool.ingest.chunks import MAX_FUTURE_MS, ChunkShaper
from spool.ingest.decode import Decoder, DecodeRules
from spool.ingest.shape import InexactNumber, default_sequence, shape
from spool.sdc import REJECTED as REJECTED_STREAM
from tests import nasty

Rec = namedtuple("Rec", "offset timestamp value headers")


def test_nested_objects_and_arrays_golden():
    data = {"id": 7, "customer": {"name": "Zoë", "address": {"city": "Köln"}},
            "items": [{"sku": "a", "qty": 2, "subs": [1, 2]}, {"sku": "b"}],
            "tags": ["x"], "empty": {}, "none": []}
    rows = shape(data, rid="q/0/5", sequence=9, received_at_ms=1000, key_names=["id"])
    assert rows == [
        ((), {'["id"]': 7, '["customer","name"]': "Zoë", '["customer","address","city"]': "Köln",
              "_sdc_record_id": "q/0/5", "_sdc_sequence": 9, "_sdc_received_at": 1000}),
        (('["items"]', '["subs"]'), {"_sdc_record_id": "q/0/5", "_sdc_sequence": 9,
                                     "_sdc_source_key_id": 7, "_sdc_level_0_id": 0,
                                     "_sdc_level_1_id": 0, '["value"]': 1}),
        (('["items"]', '["subs"]'), {"_sdc_record_id": "q/0/5", "_sdc_sequence": 9,
                                     "_sdc_source_key_id": 7, "_sdc_level_0_id": 0,
                                     "_sdc_level_1_id": 1, '["value"]': 2}),
        (('["items"]',), {"_sdc_record_id": "q/0/5", "_sdc_sequence": 9, "_sdc_source_key_id": 7,
                          "_sdc_level_0_id": 0, '["sku"]': "a", '["qty"]': 2}),
        (('["items"]',), {"_sdc_record_id": "q/0/5", "_sdc_sequence": 9, "_sdc_source_key_id": 7,
                          "_sdc_level_0_id": 1, '["sku"]': "b"}),
        (('["tags"]',), {"_sdc_record_id": "q/0/5", "_sdc_sequence": 9, "_sdc_source_key_id": 7,
                         "_sdc_level_0_id": 0, '["value"]': "x"}),
    ]


def test_array_of_arrays_and_objects_inside_arrays():
    rows = shape({"m": [[1], [2, 3]], "o": [{"p": {"q": [True]}}]}, rid="r", sequence=1,
                 received_at_ms=0)
    tables = sorted({t for t, _ in rows})
    assert tables == [(), ('["m"]',), ('["m"]', '["value"]'), ('["o"]',),
                      ('["o"]', '["p","q"]')]
    grand = [r for t, r in rows if t == ('["m"]', '["value"]')]
    assert [(r["_sdc_level_0_id"], r["_sdc_level_1_id"], r['["value"]']) for r in grand] == \
        [(0, 0, 1), (1, 0, 2), (1, 1, 3)]


def test_optional_system_fields():
    (_, root), = shape({"a": 1}, rid="r", sequence=1, received_at_ms=5, extracted_at_us=7,
                       table_version=3)
    assert (root["_sdc_extracted_at"], root["_sdc_table_version"]) == (7, 3)


def test_fast_parser_floats_beyond_int64_ask_for_an_exact_parse():
    with pytest.raises(InexactNumber):
        shape({"n": 1.2345678901234568e29}, rid="r", sequence=1, received_at_ms=0, exact=False)
    (_, root), = shape({"n": 1.5e29}, rid="r", sequence=1, received_at_ms=0, exact=True)
    assert root['["n"]'] == 1.5e29


def test_default_sequence_is_the_kafka_time_in_ms_like_the_documented_example():
    # docs/envelope.md's example sequence is a time in ms: an explicit sequence taken a ms
    # later than a record's Kafka time is higher than that record's default, one before lower
    kafka_ms = 1_732_612_345_000
    assert default_sequence(kafka_ms) < kafka_ms + 1
    assert default_sequence(kafka_ms) > kafka_ms - 1


def shaper():
    tenants = {"acme", "a.b"}
    dec = Decoder(DecodeRules(), tenants.__contains__, lambda t, s: None)

    class Directory:
        def schema(self, t, s):
            return None

        def stream_keys(self, t, s):
            return None

    return ChunkShaper(dec, Directory(), 60_000, lambda *a: None)


@pytest.mark.parametrize("case", nasty.CASES, ids=lambda c: c.name)
def test_nasty_case_lands_in_a_part_with_the_expected_rows(case):
    sh = shaper()
    sh.add_chunk("q", 0, 0, [Rec(11, 1_000, case.value, case.headers)])
    parts = sh.take_parts()
    assert len(parts) == 1
    (tenant, stream, _window, _keys), part = parts[0]
    assert part.records == 1 and part.offsets == {"q/0": [11, 11, 1]}
    rows = part.table.to_pylist()
    if case.expect == "record":
        assert stream != REJECTED_STREAM
        root = next(r for r in rows if r["_sdc_table"] == "[]")
        data = {k.split(",", 1)[1].rsplit(",", 1)[0]: v for k, v in root.items()
                if k.startswith("[") and v is not None}
        expected = {k: v for k, v in case.root.items() if v is not None}
        assert data == expected
        assert root["_sdc_record_id"] == "q/0/11"
    else:
        assert stream == REJECTED_STREAM
        (row,) = rows
        assert row["reason_code"] == case.expect
        assert row["raw"] == (case.value or b"")
        assert row["_sdc_record_id"] == "q/0/11"
        assert tenant == case.tenant


def test_event_time_is_clamped_to_never_go_back_in_a_partition():
    sh = shaper()
    recs = [Rec(0, 120_000, nasty.env({"i": 0}), []), Rec(1, 30_000, nasty.env({"i": 1}), [])]
    floor = sh.add_chunk("q", 0, 0, recs)
    assert floor == 120_000
    ((_, _, window, _), part), = sh.take_parts()
    assert window == 120_000 and part.records == 2  # the late record joins its predecessor


def test_a_producer_clock_far_ahead_does_not_carry_the_partition_into_the_future():
    sh = shaper()
    sh.clock = lambda: 1_000.0  # the spool job's clock: 1,000 s after the epoch
    year_2100 = 4_102_444_800_000
    recs = [Rec(0, year_2100, nasty.env({"i": 0}), []), Rec(1, 999_000, nasty.env({"i": 1}), [])]
    floor = sh.add_chunk("q", 0, 0, recs)
    assert floor == 1_000_000 + MAX_FUTURE_MS  # ten minutes ahead at most
    ((_, _, window, _), part), = sh.take_parts()
    assert window == 1_560_000 and part.records == 2
    received = [t.timestamp() * 1000 for t in part.table.column("_sdc_received_at").to_pylist()]
    assert received == [1_000_000 + MAX_FUTURE_MS, 999_000]


def test_every_part_of_a_keyed_stream_carries_its_keys():
    sh = shaper()
    sh.part_max_rows = 1  # each record fills a part
    recs = [Rec(i, 1_000, nasty.env({"id": i}, key_names=["id"]), []) for i in range(3)]
    sh.add_chunk("q", 0, 0, recs)
    parts = sh.take_parts()
    assert len(parts) == 3 and all(p.key_names == ("id",) for _k, p in parts)


def test_ids_used_as_keys_do_not_grow_the_path_cache_without_bound(monkeypatch):
    from spool.ingest import shape as shape_module

    monkeypatch.setattr(shape_module, "_PATH_CACHE_LIMIT", 100)
    for i in range(1_000):  # new keys under one parent every time
        rows = shape({"scores": {f"u{i}": i}}, rid=f"q/0/{i}", sequence=i, received_at_ms=1)
        assert rows[0][1][f'["scores","u{i}"]'] == i
    assert sum(len(c) for c in shape_module._PATHS.values()) <= 101


def test_a_chunk_shaped_again_later_gives_the_same_rows():
    """A retried bundle reshapes the same chunk later: nothing in its rows comes from the
    clock (a rejected message is rejected 'at' its queue time), so the batch files match."""
    recs = [Rec(0, 1_000, nasty.env({"id": 1}), []), Rec(1, 2_000, b"{oops", []),
            Rec(2, 3_000, nasty.env({"id": 2}, tenant="nobody"), [])]

    def shaped(now: float):
        sh = shaper()
        sh.clock = lambda: now
        sh.add_chunk("q", 0, 0, recs)
        return [(key, part.table) for key, part in sh.take_parts()]

    first, later = shaped(1_000.0), shaped(90_000.0)  # a day later
    assert [k for k, _ in first] == [k for k, _ in later]
    assert all(a.equals(b) for (_, a), (_, b) in zip(first, later, strict=True))
    rejected = [t for (_, stream, _, _), t in first if stream == REJECTED_STREAM]
    assert sorted(r["_sdc_rejected_at"].timestamp() for t in rejected
                  for r in t.to_pylist()) == [2.0, 3.0]
