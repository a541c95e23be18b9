"""The segments batch keys are built from, and the check before a batch file is written."""

from __future__ import annotations

import hashlib
import random
import unicodedata
from urllib.parse import quote

import pytest

from spool.ingest import writer
from spool.ingest.keys import MAX_SEGMENT, UnsafeKey, check_under, segment
from spool.ingest.parts import Part
from spool.ingest.shape import shape
from spool.objectstore import ObjectStore
from tests.nasty import hostile_names

EMPTY = "!" + hashlib.sha256(b"").hexdigest()[:16]


@pytest.mark.parametrize("name, expected", [
    ("acme", "acme"), ("t_0042", "t_0042"), ("a.b", "a.b"), ("x/y z", "x%2Fy%20z"),
    (".", "%2E"), ("..", "%2E."), (".hidden", "%2Ehidden"), ("a/../b", "a%2F..%2Fb"),
    ("%2e%2e", "%252e%252e"), ("a\0b", "a%00b"), ("..\\..", "%2E.%5C.."),
    ("\uff0e\uff0e", "%EF%BC%8E%EF%BC%8E"), ("", EMPTY),
])
def test_a_name_becomes_one_segment_that_is_never_dot_or_dotdot(name, expected):
    assert segment(name) == expected


def test_a_long_name_is_cut_and_told_apart_by_its_digest():
    long_a, long_b = "x" * 300, "x" * 299 + "y"
    assert segment(long_a) != segment(long_b)
    assert segment(long_a) == "x" * (MAX_SEGMENT - 19) + "!" + \
        hashlib.sha256(long_a.encode()).hexdigest()[:16]
    # never cut inside a %XX: what stays before the ! is a whole encoding
    emoji = segment("\U0001f389" * 300)
    assert len(emoji) <= MAX_SEGMENT and emoji.split("!")[0].endswith("%89")


def test_distinct_names_get_distinct_segments():
    names = set(hostile_names(random.Random(7), 2000))
    names |= {unicodedata.normalize(form, n) for n in list(names) for form in ("NFC", "NFD")}
    segments = {segment(n) for n in names}
    assert len(segments) == len(names)
    assert all(s not in (".", "..") and "/" not in s and "\\" not in s and "\0" not in s
               and 0 < len(s.encode()) <= MAX_SEGMENT for s in segments)


@pytest.mark.parametrize("key", ["acme/../x/f", "acme/./f", "acme//f", "../acme/f",
                                 "acmeX/f", "acme/a\\..\\b/f", "acme/a\0/f"])
def test_a_key_outside_its_tenants_prefix_is_refused(key):
    with pytest.raises(UnsafeKey, match="would leave the folder of tenant 'acme'"):
        check_under(key, "acme")
    assert check_under("acme/%2E./f", "acme") == "acme/%2E./f"


def test_the_writer_refuses_to_write_what_the_old_encoding_would_have_built(tmp_path,
                                                                           monkeypatch):
    """The check stands on its own: with names encoded as they were before issue 28, a
    stream ``..`` is stopped before a byte is written."""
    part = Part(rows=shape({"id": 1}, rid="q/0/1", sequence=1, received_at_ms=0))
    part.note_record("q/0", 1, 1, 0)
    monkeypatch.setattr(writer, "segment", lambda name: quote(name, safe=""))
    w = writer.BatchWriter(ObjectStore(), None, str(tmp_path / "spool"), 60_000)
    with pytest.raises(UnsafeKey):
        w.add("acme", "..", 0, 0, [part])
    assert list(tmp_path.iterdir()) == []
