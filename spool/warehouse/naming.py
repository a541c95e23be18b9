"""Naming rules of the warehouse contract: source names → table and column names.

The rule for one name segment (a source field or stream name), in order:

1. camelCase and PascalCase words are split: ``firstName`` → ``first_Name``,
   ``HTTPServer`` → ``HTTP_Server``;
2. letters lose their accents (NFKD) and everything is lowercased: ``Größe`` → ``grosse``
   (ß becomes ss), ``Zoë`` → ``zoe``;
3. every run of characters outside ``[a-z0-9]`` becomes one ``_``; underscores at the end
   go; one leading underscore stays if the source had one;
4. a segment left empty (``東京``, ``🎉``) becomes ``field`` (``table`` for streams);
5. a name that starts with a digit gets a leading ``_``.

Paths join their segments with ``__`` (``customer.address.city`` →
``customer__address__city``); a child table is its parent's name, ``__``, and the array's
path (``orders__items``). Names that start with ``_sdc`` are reserved for system columns and
tables: a source name that normalises to one gets the prefix ``x`` (``x_sdc_batched_at``),
except the top-level field ``_sdc_deleted_at``, which *is* the system column of that name.

Length: names are cut to the dialect's identifier limit in bytes (PostgreSQL 63, Redshift
127), keeping room for a type suffix (``__st``) and a collision suffix (``_2``); the cut
never splits the suffix. Collisions (two source paths, one name) go to the path seen first;
later ones get ``_2``, ``_3``, ... — decided once, stored in the table's column map and never
changed, so the same input always meets the same names.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from spool import sdc

TYPE_SUFFIXES = {"string": "__st", "integer": "__it", "number": "__fl", "boolean": "__bo",
                 "date-time": "__ti"}
RESERVED_PREFIX = sdc.PREFIX
SYSTEM_DATA_FIELDS = {sdc.DELETED_AT}  # top-level source fields that are system columns

_CAMEL_1 = re.compile(r"([a-z0-9])([A-Z])")
_CAMEL_2 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")
_SPECIAL = {"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D",
            "ł": "l", "Ł": "L", "œ": "oe", "Œ": "OE", "þ": "th", "Þ": "TH"}


@functools.lru_cache(maxsize=65536)
def segment(name: str, empty: str = "field") -> str:
    """One source name segment → ``[a-z0-9_]`` (rules 1-5)."""
    text = _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", name))
    text = "".join(_SPECIAL.get(ch, ch) for ch in text)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    lead = "_" if name.startswith("_") else ""
    text = _NON_WORD.sub("_", text).strip("_")
    text = (lead + text) if text else empty
    if text[0].isdigit():
        text = "_" + text
    return text


def path_name(path: list[str] | tuple[str, ...], top_level_system: bool = True) -> str:
    """A field path → its base column name (before type suffix, length and collisions)."""
    if top_level_system and len(path) == 1 and path[0] in SYSTEM_DATA_FIELDS:
        return path[0]
    name = "__".join(segment(p) for p in path)
    if name.startswith(RESERVED_PREFIX):
        name = "x" + name
    return name


def table_name(stream: str, table_path: list[list[str]] | None = None) -> str:
    """A stream (and a child table path: a list of field paths) → its base table name."""
    name = segment(stream, empty="table")
    if name.startswith(RESERVED_PREFIX):
        name = "x" + name
    for path in table_path or ():
        name += "__" + "__".join(segment(p) for p in path)
    return name


def fit(name: str, limit_bytes: int, suffix: str = "") -> str:
    """``name`` + ``suffix`` within ``limit_bytes`` (names are ASCII after normalising)."""
    room = limit_bytes - len(suffix)
    base = name[:room].rstrip("_") if len(name) > room else name
    return (base or "x") + suffix


def unique(base: str, taken, limit_bytes: int, suffix: str = "") -> str:
    """The first of ``base+suffix``, ``base_2+suffix``, ... (each cut to fit) not in
    ``taken``."""
    candidate = fit(base, limit_bytes, suffix)
    n = 2
    while candidate in taken:
        candidate = fit(base, limit_bytes, f"_{n}{suffix}")
        n += 1
    return candidate
