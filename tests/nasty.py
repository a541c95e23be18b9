"""A shared corpus of nasty inputs (STYLE 16): grow it with every bug.

Each case is a message as it sits in the queue plus what must become of it: ``"record"``
(accepted; ``check`` says something about the shaped rows) or a rejection reason code.
Unit tests decode and shape every case; the end-to-end tests send them through Kafka.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class Case:
    name: str
    value: bytes
    expect: str
    headers: list = field(default_factory=list)
    root: dict | None = None  # expected root row, data fields only (path key -> value)
    tenant: str = "acme"  # whose _sdc_rejected keeps a rejected message


def env(data, tenant="acme", stream="orders", **extra) -> bytes:
    return json.dumps({"tenant": tenant, "stream": stream, "data": data, **extra},
                      ensure_ascii=False).encode()


CASES = [
    Case("camel_case", env({"firstName": "Ann", "lastName": "Lee"}), "record",
         root={'["firstName"]': "Ann", '["lastName"]': "Lee"}),
    Case("unicode_names_and_values", env({"Größe": "€", "名前": "東京", "emoji 🎉": "✓"}),
         "record", root={'["Größe"]': "€", '["名前"]': "東京", '["emoji 🎉"]': "✓"}),
    Case("deep_nesting", env({"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}), "record",
         root={'["a","b","c","d","e","f"]': 1}),
    Case("too_deep_to_parse", b'{"tenant":"acme","stream":"s","data":' + b'{"a":' * 1500 + b"1"
         + b"}" * 1501, "too_deep", tenant="_unassigned"),
    Case("sql_in_names", env({'x"; DROP TABLE t; --': 1, "select": 2, "order": 3}),
         "record", root={'["x\\"; DROP TABLE t; --"]': 1, '["select"]': 2, '["order"]': 3}),
    Case("dots_and_slashes_in_names", env({"a.b": 1, "c/d": 2, "__e__": 3}), "record",
         root={'["a.b"]': 1, '["c/d"]': 2, '["__e__"]': 3}),
    Case("huge_string", env({"s": "x" * 100_000}), "record", root={'["s"]': "x" * 100_000}),
    Case("big_integer", env({"n": 123456789012345678901234567890}), "record",
         root={'["n"]': "123456789012345678901234567890"}),
    Case("u64_integer", env({"n": 18446744073709551615}), "record",
         root={'["n"]': "18446744073709551615"}),
    Case("big_float", env({"f": 1.5e300}), "record", root={'["f"]': 1.5e300}),
    Case("infinity_literal", b'{"tenant":"acme","stream":"s","data":{"f":1e999}}', "record",
         root={'["f"]': "inf"}),
    Case("nan_is_not_json", b'{"tenant":"acme","stream":"s","data":{"f":NaN}}', "not_json",
         tenant="_unassigned"),
    Case("lone_surrogate", b'{"tenant":"acme","stream":"s","data":{"s":"\\ud800"}}',
         "not_utf8", tenant="_unassigned"),
    Case("duplicate_keys_last_wins", b'{"tenant":"acme","stream":"s","data":{"a":1,"a":2}}',
         "record", root={'["a"]': 2}),
    Case("empty_object_and_array", env({"o": {}, "a": [], "x": 1}), "record",
         root={'["x"]': 1}),
    Case("null_value", env({"n": None, "x": 1}), "record", root={'["n"]': None, '["x"]': 1}),
    Case("bool_not_int", env({"b": True, "i": 1}), "record", root={'["b"]': True, '["i"]': 1}),
    Case("missing_key_value", env({"name": "x"}, key_names=["id"]), "bad_key"),
    Case("null_key_value", env({"id": None}, key_names=["id"]), "bad_key"),
    Case("object_key_value", env({"id": {"a": 1}}, key_names=["id"]), "bad_key"),
    Case("key_names_not_list", env({"id": 1}, key_names="id"), "bad_key"),
    Case("empty_key_name", env({"": 1}, key_names=[""]), "bad_key"),
    Case("not_utf8", b'{"tenant":"acme","stream":"s","data":{"s":"\xff"}}', "not_utf8",
         tenant="_unassigned"),
    Case("not_json", b'{"tenant": "acme", ', "not_json", tenant="_unassigned"),
    Case("json_array", b"[1, 2, 3]", "not_object", tenant="_unassigned"),
    Case("tombstone", None, "not_object", tenant="_unassigned"),
    Case("no_tenant", json.dumps({"stream": "s", "data": {}}).encode(), "missing_field",
         tenant="_unassigned"),
    Case("blank_stream", env({}, stream="  "), "wrong_type"),
    Case("stream_is_number", json.dumps({"tenant": "acme", "stream": 1, "data": {}}).encode(),
         "wrong_type"),
    Case("data_is_list", env([1, 2]), "data_not_object"),
    Case("data_is_string", env("hello"), "data_not_object"),
    Case("no_data", json.dumps({"tenant": "acme", "stream": "s"}).encode(), "missing_field"),
    Case("typo_field", json.dumps({"tenant": "acme", "stream": "s", "data": {},
                                   "sequense": 1}).encode(), "unknown_field"),
    Case("sequence_is_text", env({}, sequence="12"), "wrong_type"),
    Case("sequence_is_float", env({}, sequence=1.5), "wrong_type"),
    Case("bad_extracted_at", env({}, extracted_at="yesterday"), "wrong_type"),
    Case("unknown_tenant", env({"x": 1}, tenant="nobody"), "unknown_tenant", tenant="_unassigned"),
    Case("tenant_with_dot", env({"x": 1}, tenant="a.b"), "record", root={'["x"]': 1}),
    Case("singer_record_before_schema",
         json.dumps({"type": "RECORD", "stream": "fresh", "record": {"id": 1}}).encode(),
         "record_before_schema", headers=[("tenant", b"acme")]),
    Case("singer_without_tenant_header",
         json.dumps({"type": "RECORD", "stream": "s", "record": {"id": 1}}).encode(),
         "no_tenant", tenant="_unassigned"),
    Case("singer_batch_message", json.dumps({"type": "BATCH", "stream": "s"}).encode(),
         "unsupported_message", headers=[("tenant", b"acme")]),
    # names that became path segments as they were (issue 28): stored under acme/, safely
    Case("stream_dot_dot", env({"x": 1}, stream=".."), "record", root={'["x"]': 1}),
    Case("stream_climbing_out", env({"x": 1}, stream="../../a/../b"), "record",
         root={'["x"]': 1}),
    # no database stores a NUL in a name or a text: rejected, or quoted without it
    Case("nul_in_stream", env({"x": 1}, stream="a\u0000b"), "wrong_type"),
    Case("nul_in_tenant", env({"x": 1}, tenant="a\u0000b"), "wrong_type", tenant="_unassigned"),
    Case("nul_in_unknown_field", env({"x": 1}, **{"x\u0000": 1}), "unknown_field"),
    Case("nul_in_singer_header_tenant",
         json.dumps({"type": "RECORD", "stream": "s", "record": {"id": 1}}).encode(),
         "unknown_tenant", headers=[("tenant", b"a\x00b")], tenant="_unassigned"),
]


def by_name(name: str) -> Case:
    return next(c for c in CASES if c.name == name)


# Tenant and stream names that would steer a batch file out of its folder if they became
# path segments as they are (issue 28): the ones seen, then random mixes of their parts.
HOSTILE_NAMES = [".", "..", "...", "%2e%2e", "%2E", "a/../b", "../..", "/", "//", "\\",
                 "..\\..", "a\0b", "\0", "\uff0e\uff0e", "\uff0e.", "\u2024\u2024", "", " ",
                 "~", "!", "x" * 300, "é" * 300, "\U0001f389" * 300, "caf\u00e9", "cafe\u0301",
                 "\u212b", "\u00c5", "A\u030a", "acme/..", "../acme", "-", "_", ".hidden"]
_PIECES = [".", "..", "/", "\\", "\0", "%", "%2e", "%2F", "\uff0e", "\u0301", "é", "e", "A",
           "_", "!", " ", "\n", "~", "\U0001f389", "\u202e", "a", "z9"]


def hostile_names(rng, count: int) -> list[str]:
    """:data:`HOSTILE_NAMES`, then ``count`` random names made of their pieces (some long)."""
    names = list(HOSTILE_NAMES)
    for _ in range(count):
        length = rng.choice([1, 2, 3, 5, 8, 40, 150])
        names.append("".join(rng.choice(_PIECES) for _ in range(length)))
    return names
