"""Stream maps as pure functions: what a map document may say (and the message when it may
not), what a compiled map makes of records, and a fuzz test of random maps and records."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import random

import pytest

from spool.maps import Applied, CannotApply, MapError, compile_map, load_text, parse

KEY = "k3y"


def resolve(ref: str) -> str:
    assert ref == "env:MAP_KEY"
    return KEY


def mapped(doc: dict, data: dict, stream: str = "users") -> Applied:
    return compile_map(parse(doc, resolve_secret=False), stream, resolve)(data)


@pytest.mark.parametrize("doc, message", [
    ({"dorp": ["ssn"]}, "unknown operation 'dorp'"),
    ({}, "the map has no operation"),
    ({"drop": "ssn"}, "drop: give a list of paths"),
    ({"drop": [["profile", ""]]}, "is not a path"),
    ({"drop": [["profile", 3]]}, "is not a path"),
    ({"hash": ["email"]}, "hash needs a secret"),
    ({"hash": ["email"], "secret": "s3cr3t"}, "by reference"),
    ({"mask": {"card": {"a": 1}}}, "not an object or a list"),
    ({"rename": {"email": ""}}, "non-empty string"),
    ({"alias": ""}, "alias:"),
    ({"filter": {"matches": ["a", "b"]}}, "unknown predicate 'matches'"),
    ({"filter": {"eq": ["a"]}}, "eq takes [path, value]"),
    ({"filter": {"lt": ["a", [1]]}}, "compares with a number or a string"),
    ({"filter": {"and": []}}, "and takes a list"),
    ({"filter": "status == 'x'"}, "is not a predicate"),
])
def test_a_map_that_cannot_be_stored_is_refused_with_what_is_wrong(doc, message):
    with pytest.raises(MapError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(doc, resolve_secret=False)


def test_a_secret_that_cannot_be_read_is_refused(monkeypatch):
    monkeypatch.delenv("SPOOL_TEST_NO_SUCH_KEY", raising=False)
    with pytest.raises(MapError, match="secret env:SPOOL_TEST_NO_SUCH_KEY"):
        parse({"hash": ["email"], "secret": "env:SPOOL_TEST_NO_SUCH_KEY"})


@pytest.mark.parametrize("doc", [{"drop": ["id"]}, {"mask": {"id": None}},
                                 {"keep": ["email"]}])
def test_a_map_that_would_remove_a_key_field_is_refused(doc):
    with pytest.raises(MapError, match="key field 'id'"):
        parse(doc, key_names=("id",), resolve_secret=False)
    # hashing or renaming a key is allowed: hashed keys still upsert
    parse({"hash": ["id"], "secret": "env:MAP_KEY"}, key_names=("id",), resolve_secret=False)


def test_yaml_and_json_say_the_same():
    text = "drop: [ssn, [profile, pii]]\nfilter: {eq: [status, active]}\n"
    assert load_text(text) == load_text('{"drop": ["ssn", ["profile", "pii"]], '
                                        '"filter": {"eq": ["status", "active"]}}')
    with pytest.raises(MapError, match="object of operations"):
        load_text("- drop")


def test_text_that_starts_like_json_is_json_or_refused_with_line_and_column():
    assert load_text('  {"drop": ["ssn"]}') == {"drop": ["ssn"]}
    with pytest.raises(MapError, match=r"starts with \{ but is not JSON: line 2 column 18"):
        load_text('{"hash": ["email"],\n "drop": ["name",]}')  # YAML would drop no rule
    with pytest.raises(MapError, match=r"starts with \{ but is not JSON: line 1 column 2"):
        load_text("{drop: [ssn]}")  # YAML's flow style: write it as drop: [ssn]


def test_changes_name_each_rule_added_removed_or_changed_and_what_lets_fields_through():
    from spool.maps import changes

    old = parse({"filter": {"eq": ["status", "active"]}, "rename": {"email": "mail"},
                 "alias": "people", "keep": ["id", "email"]}, resolve_secret=False)
    new = parse({"filter": {"ne": ["status", "test"]}, "rename": {"email": "contact"},
                 "keep": ["id", "email", ["address", "city"]]}, resolve_secret=False)
    got = [(str(c), c.loosens) for c in changes(old, new)]
    assert got == [('~ filter: {"eq": ["status", "active"]} → {"ne": ["status", "test"]}', False),
                   ("+ keep [address, city]", True),
                   ("~ rename email: mail → contact", False),
                   ("- alias", False)]
    assert changes(new, new) == []


def test_keep_drop_mask_rename_and_alias_on_nested_fields():
    data = {"id": 7, "email": "a@b.c", "ssn": "123", "n": 1.5,
            "profile": {"pii": {"dob": "1990"}, "city": "Oslo"}, "phone": "555"}
    before = copy.deepcopy(data)
    got = mapped({"keep": ["id", "email", "n", ["profile", "city"], ["profile", "pii"],
                           "phone"],
                  "drop": [["profile", "pii"]], "mask": [[["phone"], None]],
                  "rename": {"email": "contact"}, "alias": "people"}, data)
    assert got == Applied({"id": 7, "contact": "a@b.c", "n": 1.5,
                           "profile": {"city": "Oslo"}, "phone": None}, "people")
    assert data == before  # the record itself is not changed


def test_hash_is_keyed_deterministic_typed_and_leaves_null():
    doc = {"hash": ["email", "id", ["user", "ssn"]], "secret": "env:MAP_KEY"}
    a = mapped(doc, {"email": "a@b.c", "id": 7, "user": {"ssn": None}}).data
    b = mapped(doc, {"email": "a@b.c", "id": 7, "user": {"ssn": "x"}}).data
    want = hmac.new(KEY.encode(), b"a@b.c", hashlib.sha256).hexdigest()
    assert a["email"] == b["email"] == want
    assert a["id"] == hmac.new(KEY.encode(), b"7", hashlib.sha256).hexdigest()
    assert a["user"] == {"ssn": None} and len(b["user"]["ssn"]) == 64
    # types kept where the map does not say otherwise
    kept = mapped({"drop": ["x"]}, {"i": 1, "f": 2.5, "b": True, "s": "t", "o": {"i": 2}})
    assert kept.data == {"i": 1, "f": 2.5, "b": True, "s": "t", "o": {"i": 2}}
    assert type(kept.data["i"]) is int and type(kept.data["b"]) is bool


@pytest.mark.parametrize("doc, data, message", [
    ({"hash": ["profile"], "secret": "env:MAP_KEY"}, {"profile": {"a": 1}},
     "hash profile: the value is an object"),
    ({"drop": [["tags", "x"]]}, {"tags": ["a"]}, "tags is not an object"),
    ({"rename": {"a": "b"}}, {"a": 1, "b": 2}, "has a field b already"),
    ({"filter": {"gt": ["n", 3]}}, {"n": "four"}, "n is a str, compared with a int"),
])
def test_a_record_the_map_cannot_apply_to_is_refused_naming_the_path(doc, data, message):
    with pytest.raises(CannotApply, match=message):
        mapped(doc, data)


@pytest.mark.parametrize("pred, data, keep", [
    ({"eq": ["s", "a"]}, {"s": "a"}, True),
    ({"eq": ["n", 1]}, {"n": True}, False),
    ({"eq": ["n", 1]}, {"n": 1.0}, True),
    ({"ne": ["s", "a"]}, {}, True),
    ({"in": ["s", ["a", "b"]]}, {"s": "b"}, True),
    ({"lt": ["n", 3]}, {"n": 2}, True),
    ({"ge": ["n", 3]}, {"n": None}, False),
    ({"gt": [["o", "n"], "b"]}, {"o": {"n": "c"}}, True),
    ({"exists": "x"}, {"x": None}, True),
    ({"is_null": "x"}, {"x": None}, True),
    ({"is_null": "x"}, {}, True),
    ({"not": {"exists": "x"}}, {}, True),
    ({"and": [{"exists": "a"}, {"eq": ["b", 2]}]}, {"a": 1, "b": 3}, False),
    ({"or": [{"exists": "a"}, {"eq": ["b", 2]}]}, {"b": 2}, True),
])
def test_the_filter_keeps_the_records_its_predicate_holds_for(pred, data, keep):
    got = mapped({"filter": pred}, data, stream="s")
    assert (got.data is not None) == keep and got.stream == "s"


def _random_path(rng) -> list[str]:
    return [rng.choice(["a", "b", "c", "id", "x.y", "ü"]) for _ in range(rng.randint(1, 3))]


def _random_value(rng, depth=0):
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 5:
        return {k: _random_value(rng, depth + 1) for k in rng.sample(["a", "b", "c", "id"], 2)}
    if kind == 6:
        return [_random_value(rng, depth + 1)]
    return [None, True, rng.randint(-5, 5), rng.random(), rng.choice(["a", "b", ""]), None,
            None, {"b": {"c": 1}}][kind]


def _random_pred(rng, depth=0):
    op = rng.choice(["eq", "ne", "in", "lt", "ge", "exists", "is_null", "and", "or", "not"]
                    if depth < 3 else ["eq", "exists"])
    if op in ("and", "or"):
        return {op: [_random_pred(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    if op == "not":
        return {op: _random_pred(rng, depth + 1)}
    if op in ("exists", "is_null"):
        return {op: _random_path(rng)}
    if op == "in":
        return {op: [_random_path(rng), [rng.randint(0, 3), "a"]]}
    return {op: [_random_path(rng), rng.choice([1, 2.5, "a"])]}


def test_random_maps_on_random_records_never_crash_and_never_drop_silently():
    rng = random.Random(16)
    applied = refused = filtered = 0
    for _ in range(3000):
        doc: dict = {}
        for op in rng.sample(["filter", "keep", "drop", "hash", "mask", "rename", "alias"],
                             rng.randint(1, 4)):
            doc[op] = {"filter": lambda: _random_pred(rng),
                       "keep": lambda: [_random_path(rng) for _ in range(2)],
                       "drop": lambda: [_random_path(rng)],
                       "hash": lambda: [_random_path(rng)],
                       "mask": lambda: [[_random_path(rng), rng.choice([None, "*", 0])]],
                       "rename": lambda: [[_random_path(rng), rng.choice(["n", "a"])]],
                       "alias": lambda: "other"}[op]()
        if "hash" in doc:
            doc["secret"] = "env:MAP_KEY"
        m = parse(doc, resolve_secret=False)
        data = {k: _random_value(rng) for k in rng.sample(["a", "b", "c", "id", "x.y"], 3)}
        before = copy.deepcopy(data)
        try:
            got = compile_map(m, "s", resolve)(data)
        except CannotApply as exc:
            assert str(exc)  # a reason for _sdc_rejected
            refused += 1
            continue
        assert data == before
        if got.data is None:
            assert "filter" in doc  # only the filter drops a record (and it is counted)
            filtered += 1
        else:
            applied += 1
        assert got.stream == doc.get("alias", "s")
    assert min(applied, refused, filtered) > 50, (applied, refused, filtered)


def test_random_documents_are_stored_or_refused_with_a_message_never_a_crash():
    rng = random.Random(61)
    ops = ["filter", "keep", "drop", "hash", "mask", "rename", "alias", "secret", "bogus"]
    refused = 0
    for _ in range(3000):
        doc = {rng.choice(ops): rng.choice([_random_value(rng), _random_pred(rng),
                                            [_random_path(rng)], "env:MAP_KEY", {"a": "b"}])
               for _ in range(rng.randint(1, 3))}
        try:
            parse(doc, key_names=("id",), resolve_secret=False)
        except MapError as exc:
            assert str(exc)
            refused += 1
    assert 100 < refused < 3000


# -- applied in the spool job's per-record step ---------------------------------------------

def _version(n: int, document: dict | None, at_ms: int, stream: str = "users"):
    from datetime import UTC, datetime

    from spool.ledger.maps import MapVersion
    return MapVersion("acme", stream, n, document, datetime.fromtimestamp(at_ms / 1000, UTC),
                      "test")


ID, EMAIL = '[[],["id"],"integer"]', '[[],["email"],"string"]'  # columns of a part


def _snapshots(versions, read_at_ms=10_000_000):
    """A MapStore.read of ``versions``, read at ``read_at_ms`` by the ledger's clock."""
    from spool.ledger.maps import Snapshot
    return lambda stamp: Snapshot(read_at_ms, (len(versions),), list(versions))


def _shaper(versions, resolve=resolve):
    from spool.ingest.chunks import ChunkShaper
    from spool.ingest.decode import Decoder, DecodeRules
    from spool.ingest.directory import MapDirectory

    class Directory:
        def schema(self, t, s):
            return None

        def stream_keys(self, t, s):
            return None

    maps = MapDirectory(_snapshots(versions), resolve=resolve)
    return ChunkShaper(Decoder(DecodeRules(), {"acme"}.__contains__, lambda t, s: None),
                       Directory(), 60_000, lambda *a: None, maps=maps)


def _messages(*records, at_ms=120_000):
    import json as _json

    from tests.unit.test_shape import Rec
    return [Rec(i, at_ms, _json.dumps({"tenant": "acme", "stream": "users", "data": r,
                                       "key_names": ["id"]}).encode(), [])
            for i, r in enumerate(records)]


def _roots(parts):
    out = {}
    for (_tenant, stream, _w, _k), part in parts:
        rows = [{k: v for k, v in r.items() if v is not None and (k.startswith("[") or
                                                                 k == "reason_code")}
                for r in part.table.to_pylist() if r["_sdc_table"] == "[]"]
        out[stream] = (part.map_versions, rows)
    return out


def test_the_spool_job_maps_filters_and_rejects_records_by_the_version_of_their_window():
    doc = {"filter": {"ne": ["status", "test"]}, "hash": ["email"], "secret": "env:MAP_KEY",
           "drop": ["ssn"], "alias": "people"}
    sh = _shaper([_version(1, doc, 0)])
    sh.add_chunk("q", 0, 0, _messages({"id": 1, "email": "a@b.c", "ssn": "1"},
                                      {"id": 2, "status": "test"},
                                      {"id": 3, "email": {"x": 1}}))
    parts = sh.take_parts()
    got = _roots(parts)
    # the batch says which version made its records
    from spool.ingest.writer import assemble
    (key, part), = [(k, p) for k, p in parts if k[1] == "people"]
    _uri, _data, record = assemble("acme", "people", key[2], 60_000, 0, part, "/unused")
    assert record.meta["map_versions"] == {"users": 1}  # the map of users made people's rows
    assert (record.meta["records_filtered"], record.record_count) == (1, 2)  # 1 in, 1 out
    digest = hmac.new(KEY.encode(), b"a@b.c", hashlib.sha256).hexdigest()
    assert set(got) == {"people", "_sdc_rejected"}
    version, rows = got["people"]
    assert version == {"users": 1}
    assert [{k.split(",", 1)[1].rsplit(",", 1)[0]: v for k, v in r.items()} for r in rows] \
        == [{'["id"]': 1, '["email"]': digest}]
    assert got["_sdc_rejected"][1] == [{"reason_code": "map_failed"}]
    (rejected,) = [p for k, p in parts if k[1] == "_sdc_rejected"]
    (row,) = rejected.table.to_pylist()
    assert "hash email: the value is an object" in row["reason"]
    assert row["record"] == "" and row["raw"] == b""  # the record's PII is not copied
    assert sh.take_stats().filtered == {("acme", "users", 1): 1}


def test_a_map_set_mid_window_applies_to_every_record_timestamped_after_it():
    later = _version(2, {"drop": ["email"]}, 130_000)  # set inside the window [120 s, 180 s)
    sh = _shaper([_version(1, {"drop": ["ssn"]}, 0), later])
    first, second = (_messages({"id": n, "email": "e", "ssn": "s"}, at_ms=at)[0]
                     for n, at in ((1, 129_999), (2, 130_000)))
    sh.add_chunk("q", 0, 0, [first, second._replace(offset=1)])
    ((_t, _s, window, _k), part), = sh.take_parts()  # one window: one part, both versions
    rows = {r[ID]: (r["_sdc_map_version"], r.get(EMAIL))
            for r in part.table.to_pylist()}
    assert window == 120_000 and rows == {1: (1, "e"), 2: (2, None)}
    assert part.map_versions == {"users": 2}  # the batch names the newest that made it


def test_a_record_past_the_last_read_of_the_maps_reads_them_again_before_it_is_shaped():
    from spool.ledger.maps import Snapshot

    stored = [_version(1, {"drop": ["ssn"]}, 0)]
    reads = []

    def read(stamp):  # the ledger: its clock at 130 s, then at 200 s with v2 (set at 150 s)
        reads.append(stamp)
        if len(reads) == 1:
            return Snapshot(130_000, (1,), list(stored))
        stored.append(_version(2, {"drop": ["email"]}, 150_000))
        return Snapshot(200_000, (2,), list(stored))

    from spool.ingest.chunks import ChunkShaper
    from spool.ingest.decode import Decoder, DecodeRules
    from spool.ingest.directory import MapDirectory

    sh = ChunkShaper(Decoder(DecodeRules(), {"acme"}.__contains__, lambda t, s: None),
                     None, 3_600_000, lambda *a: None,
                     maps=MapDirectory(read, resolve=resolve))
    sh.add_chunk("q", 0, 0, _messages({"id": 1, "email": "e"}, at_ms=125_000))
    assert reads == [None]  # covered by the first read: no second
    sh.add_chunk("q", 0, 0, _messages({"id": 2, "email": "e"}, at_ms=160_000))
    assert reads == [None, (1,)]
    (_key, part), = sh.take_parts()
    rows = {r[ID]: (r["_sdc_map_version"], r.get(EMAIL))
            for r in part.table.to_pylist()}
    assert rows == {1: (1, "e"), 2: (2, None)}


def test_a_map_whose_secret_cannot_be_read_rejects_records_never_passes_them_unmapped():
    def unreadable(ref):
        raise LookupError(f"{ref}: not set on this worker")

    sh = _shaper([_version(1, {"hash": ["email"], "secret": "env:MAP_KEY"}, 0)],
                 resolve=unreadable)
    sh.add_chunk("q", 0, 0, _messages({"id": 1, "email": "a@b.c"}))
    got = _roots(sh.take_parts())
    assert got == {"_sdc_rejected": (None, [{"reason_code": "map_failed"}])}


def test_each_mapped_row_says_which_version_made_it_and_removing_the_map_is_a_version_too():
    removed = _version(2, None, 130_000)  # removed inside the window [120 s, 180 s)
    sh = _shaper([_version(1, {"drop": ["ssn"]}, 0), removed])
    sh.add_chunk("q", 0, 0, _messages({"id": 1, "ssn": "s"}, at_ms=125_000))
    sh.add_chunk("q", 0, 0, _messages({"id": 2, "ssn": "s"}, at_ms=185_000))
    got = []
    for (_t, _s, window, _k), part in sh.take_parts():
        (root,) = [r for r in part.table.to_pylist() if r["_sdc_table"] == "[]"]
        got.append((window, part.map_versions, root.get("_sdc_map_version"),
                    any("ssn" in c for c in part.table.column_names)))
    # mapped by v1: the row says so; after v2 removed the map, records load unmapped (the
    # batch still says v2, so the loader sees the change), and their rows carry no version
    assert sorted(got) == [(120_000, {"users": 1}, 1, False), (180_000, {"users": 2}, None, True)]


def test_a_key_field_the_map_renames_stays_the_key():
    sh = _shaper([_version(1, {"rename": {"id": "user_id"}}, 0)])
    sh.add_chunk("q", 0, 0, _messages({"id": 7, "items": [{"sku": "a"}]}))
    ((_t, _s, _w, keys), part), = sh.take_parts()
    assert keys == ("user_id",) and part.key_names == ("user_id",)
    child = [r for r in part.table.to_pylist() if r["_sdc_table"] != "[]"]
    assert [v for r in child for k, v in r.items() if "user_id" in k and v is not None] == [7]


def test_random_maps_in_the_spool_job_account_for_every_message():
    """Through the spool job's per-record step: each message is a row, a rejection or a
    filtered count, never nothing."""
    rng = random.Random(1616)
    outcomes = {"row": 0, "rejected": 0, "filtered": 0}
    for _ in range(300):
        doc: dict = {"filter": _random_pred(rng)} if rng.random() < 0.5 else {}
        doc.update({"hash": [_random_path(rng)], "secret": "env:MAP_KEY",
                    "rename": [[_random_path(rng), "n"]], "drop": [_random_path(rng)]})
        try:
            parse(doc, key_names=("id",), resolve_secret=False)
        except MapError:
            continue
        sh = _shaper([_version(1, doc, 0)])
        # numbers beyond 64 bits too: the fast decoder rounds them, the map must not
        records = [{"id": i, **{k: _random_value(rng) for k in ("a", "b", "c")},
                    "a": rng.choice([_random_value(rng), 10 ** 20 + rng.randint(0, 2)])}
                   for i in range(5)]
        sh.add_chunk("q", 0, 0, _messages(*records))
        seen, filtered = set(), 0
        for (_t, stream, _w, _k), part in sh.take_parts():
            filtered += part.filtered
            for row in part.table.to_pylist():
                if row["_sdc_table"] == "[]" or stream == "_sdc_rejected":
                    assert row["_sdc_record_id"] not in seen
                    seen.add(row["_sdc_record_id"])
                    outcomes["rejected" if stream == "_sdc_rejected" else "row"] += 1
        outcomes["filtered"] += filtered
        assert len(seen) + filtered == len(records), doc
    assert min(outcomes.values()) > 20, outcomes


def test_numbers_beyond_64_bits_are_compared_and_hashed_as_sent_not_as_rounded():
    doc = {"filter": {"le": ["n", 10 ** 20]}, "hash": ["n"], "secret": "env:MAP_KEY"}
    sh = _shaper([_version(1, doc, 0)])
    sh.add_chunk("q", 0, 0, _messages({"id": 1, "n": 10 ** 20}, {"id": 2, "n": 10 ** 20 + 1},
                                      {"id": 3, "n": 10 ** 20 - 1}))
    ((_k, part),) = sh.take_parts()
    assert part.filtered == 1  # 10**20 + 1 is not <= 10**20, though the rounded float is
    hashes = [v for r in part.table.to_pylist() for k, v in r.items() if '["n"]' in k]
    assert hashes == [hmac.new(KEY.encode(), str(n).encode(), hashlib.sha256).hexdigest()
                      for n in (10 ** 20, 10 ** 20 - 1)]


@pytest.mark.parametrize("doc, stream", [({"rename": {"id": "user_id"}}, "users"),
                                         ({"rename": {"id": "user_id"}, "alias": "people"},
                                          "people")])
def test_an_activation_joins_the_records_of_a_stream_whose_map_renames_its_key(doc, stream):
    from spool.ingest.chunks import ChunkShaper
    from spool.ingest.decode import Decoder, DecodeRules
    from spool.ingest.directory import MapDirectory
    from tests.unit.test_shape import Rec

    class Directory:
        def schema(self, t, s):
            return None

        def stream_keys(self, t, s):
            return ("id",)

    maps = MapDirectory(_snapshots([_version(1, doc, 0)]), resolve=resolve)
    sh = ChunkShaper(Decoder(DecodeRules(), {"acme"}.__contains__, lambda t, s: ("id",)),
                     Directory(), 60_000, lambda *a: None, maps=maps)
    tenant = [("tenant", b"acme")]
    sh.add_chunk("q", 0, 0, [
        Rec(0, 120_000, json.dumps({"type": "RECORD", "stream": "users", "version": 2,
                                    "record": {"id": 1}}).encode(), tenant),
        Rec(1, 120_000, json.dumps({"type": "ACTIVATE_VERSION", "stream": "users",
                                    "version": 2}).encode(), tenant)])
    ((key, part),) = sh.take_parts()  # one part: one batch, one transaction
    assert (key[1], key[3]) == (stream, ("user_id",)) and part.activate_version == 2
    assert part.map_versions == {"users": 1}


def test_an_activation_stays_with_its_stream_when_the_map_cannot_be_used_on_the_worker():
    from spool.ingest.chunks import ChunkShaper
    from spool.ingest.decode import Decoder, DecodeRules
    from spool.ingest.directory import MapDirectory
    from tests.unit.test_shape import Rec

    def unreadable(ref):
        raise LookupError(f"{ref}: not set on this worker")

    class Directory:
        def stream_keys(self, t, s):
            return ("id",)

    doc = {"hash": ["id"], "secret": "env:MAP_KEY", "alias": "people"}
    maps = MapDirectory(_snapshots([_version(1, doc, 0)]), resolve=unreadable)
    sh = ChunkShaper(Decoder(DecodeRules(), {"acme"}.__contains__, lambda t, s: ("id",)),
                     Directory(), 60_000, lambda *a: None, maps=maps)
    sh.add_chunk("q", 0, 0, [Rec(0, 120_000, json.dumps(
        {"type": "ACTIVATE_VERSION", "stream": "users", "version": 2}).encode(),
        [("tenant", b"acme")])])
    # its records are rejected (map_failed): the table they would have loaded into is not
    # touched by their activation
    assert [k[1] for k, _p in sh.take_parts()] == ["users"]


def test_a_map_that_removes_a_key_rejects_the_record_never_crashes_the_bundle():
    # stored before the stream was seen, so `maps set` could not know id is its key
    sh = _shaper([_version(1, {"drop": ["id"]}, 0)])
    sh.add_chunk("q", 0, 0, _messages({"id": 1, "items": [1, 2]}))
    ((_k, part),) = sh.take_parts()
    (row,) = part.table.to_pylist()
    assert row["reason_code"] == "map_failed" and "removes the key field id" in row["reason"]


def test_a_mapped_record_rejected_after_its_alias_is_kept_without_its_text():
    deep: object = 1
    for _ in range(70):
        deep = [deep]
    sh = _shaper([_version(1, {"drop": ["ssn"], "alias": "people"}, 0)])
    sh.add_chunk("q", 0, 0, _messages({"id": 1, "ssn": "123-45", "deep": deep}))
    ((_k, part),) = sh.take_parts()
    (row,) = part.table.to_pylist()
    assert row["reason_code"] == "too_deep" and not row["record"] and not row["raw"]


def test_filtered_counts_of_parts_from_before_per_map_counts_are_kept():
    from spool.ingest.writer import merge_parts
    old = _old_part(filtered=3)
    assert merge_parts([old]).filtered == 3


def _old_part(**kw):
    from spool.ingest.parts import Part
    part = Part(**kw)
    part.rows.append(((), {"_sdc_record_id": "q/0/1"}))
    return part


def test_a_map_that_removes_a_key_is_refused_by_the_function_the_preview_runs_too():
    apply = compile_map(parse({"drop": ["id"]}), "users", resolve)
    with pytest.raises(CannotApply, match="removes the key field id"):
        apply({"id": 1, "items": [1]}, ("id",))
    renames = parse({"rename": {"id": "user_id"}})
    assert renames.renamed_keys(("id", "n")) == ("user_id", "n")
    assert renames.renamed_keys(("user_id", "n"), back=True) == ("id", "n")
