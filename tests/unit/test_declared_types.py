"""Contract v3: a Singer stream's declared JSON schema decides a column's type where it
covers the value; the value's own type decides only where no schema covers it."""

from __future__ import annotations

from spool.warehouse.dialects import DIALECTS
from spool.warehouse.plan import CatalogState, declared_types, plan_load
from spool.warehouse.stage import stage_group
from tests.warehouse_helpers import make_batch

PG = DIALECTS["postgres"]


def columns(records, schema, stream="games"):
    """{table: {(field path, type): column}} of a first load of ``records``."""
    group = stage_group(stream, [make_batch(stream, records, key_names=["id"],
                                            schema=schema)], PG)
    plan = plan_load(PG, stream, ["id"], {t: st.observed for t, st in group.tables.items()},
                     CatalogState())
    return {tp.name: {k: c for k, c in tp.columns.items() if not k[0].startswith("_sdc")}
            for tp in plan.tables.values()}, group


def test_an_integer_in_a_declared_number_lands_in_the_number_column():
    # the issue: "score": 2 went to score__it and left score NULL
    got, group = columns([{"id": 1, "score": 1.5}, {"id": 2, "score": 2}],
                         {"properties": {"score": {"type": "number"}}})
    assert got["games"] == {('["id"]', "integer"): "id", ('["score"]', "number"): "score"}
    assert group.tables["[]"].data[('["score"]', "number")].to_pylist() == [1.5, 2.0]


def test_a_declared_nullable_string_owns_the_base_name_whatever_comes_first():
    got, _ = columns([{"id": 1, "note": 7}, {"id": 2, "note": None}, {"id": 3, "note": "x"}],
                     {"properties": {"note": {"type": ["null", "string"]}}})
    # the integer is not what the schema declares: it keeps its own type, in a split column
    assert got["games"] == {('["id"]', "integer"): "id", ('["note"]', "string"): "note",
                            ('["note"]', "integer"): "note__it"}


def test_values_no_schema_covers_keep_their_own_type():
    got, _ = columns([{"id": 1, "score": "n/a", "extra": 5}, {"id": 2, "score": 3,
                                                              "extra": 2.5}],
                     {"properties": {"score": {"type": ["null", "number"]}}})
    assert got["games"] == {
        ('["id"]', "integer"): "id",
        ('["score"]', "number"): "score", ('["score"]', "string"): "score__st",  # not covered
        ('["extra"]', "integer"): "extra", ('["extra"]', "number"): "extra__fl"}  # undeclared


def test_an_integer_a_double_cannot_hold_exactly_stays_an_integer():
    got, group = columns([{"id": 1, "score": 2 ** 53 + 1}, {"id": 2, "score": 2 ** 53}],
                         {"properties": {"score": {"type": "number"}}})
    assert got["games"][('["score"]', "number")] == "score"
    assert got["games"][('["score"]', "integer")] == "score__it"
    assert group.tables["[]"].data[('["score"]', "integer")].to_pylist() == [2 ** 53 + 1, None]


def test_nested_objects_and_arrays_follow_the_schema():
    schema = {"properties": {
        "player": {"type": ["null", "object"], "properties": {"level": {"type": "number"}}},
        "rounds": {"type": "array", "items": {"type": "object", "properties": {
            "rank": {"type": ["null", "integer"]}}}},
        "weights": {"type": "array", "items": {"type": "number"}}}}
    got, _ = columns([{"id": 1, "player": {"level": 4}, "rounds": [{"rank": 2.0}],
                       "weights": [1, 0.5]}], schema)
    assert got["games"][('["player","level"]', "number")] == "player__level"
    assert got["games__rounds"] == {('["rank"]', "integer"): "rank"}  # 2.0 is a whole number
    assert got["games__weights"] == {('["value"]', "number"): "value"}
    assert declared_types(schema)[('[["rounds"]]', '["rank"]')] == {"integer"}


def test_records_a_stream_map_made_are_typed_by_their_values():
    # a map may hash, mask or rename fields: the tap's schema describes the records before
    group = stage_group("games", [make_batch("games", [{"id": 1, "score": 2}],
                                             key_names=["id"], map_version=1,
                                             schema={"properties": {"score": {
                                                 "type": "number"}}})], PG)
    assert set(group.tables["[]"].data) == {('["id"]', "integer"), ('["score"]', "integer")}
