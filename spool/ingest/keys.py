"""Object keys of batch files: built from encoded names, and checked before a file is written.

A batch's key is ``<tenant>/<stream>/<window start>/<file name>`` (spool.ingest.writer). The
tenant and the stream come from registrations and records, so any text can arrive: ``..``,
``a/../b``, NUL, 300 characters. Each becomes one *segment* that is safe on a local folder
and on S3, and that no other name becomes:

* percent-encoded, every byte but ``A-Z a-z 0-9 _ . - ~`` (UTF-8; ``acme`` stays ``acme``,
  ``x/y`` becomes ``x%2Fy``, NUL ``%00``, ``\\`` ``%5C``), as batch files always were named;
* a leading ``.`` written ``%2E``: no segment is ``.`` or ``..`` (nor a hidden file);
* an empty name, or one whose encoding is longer than :data:`MAX_SEGMENT` characters, is
  the encoding of its first characters (at most ``MAX_SEGMENT - 19`` characters of it), then
  ``!`` and 16 hex digits of the SHA-256 of the name (``!`` is never part of an encoding, so
  such a segment is never another name's). A segment fits a file name (255 bytes) and a key
  fits S3's 1,024 bytes.

:func:`check_under` is the last word before a write: the key must lie under its tenant's
prefix, segment by segment, or nothing is written.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote

MAX_SEGMENT = 120


class UnsafeKey(ValueError):
    """A key that would leave its tenant's prefix; nothing was written."""


def segment(name: str) -> str:
    """The one key segment of a tenant or stream name (see the module's rules)."""
    raw = name.encode("utf-8", "surrogatepass")
    enc = _dot(quote(raw, safe=""))
    if enc and len(enc) <= MAX_SEGMENT:
        return enc
    head, room = [], MAX_SEGMENT - 19  # a leading %2E may add 2
    for char in name:  # cut between characters, never inside one's encoding
        room -= len(piece := quote(char.encode("utf-8", "surrogatepass"), safe=""))
        if room < 0:
            break
        head.append(piece)
    return f"{_dot(''.join(head))}!{hashlib.sha256(raw).hexdigest()[:16]}"


def _dot(enc: str) -> str:
    return "%2E" + enc[1:] if enc.startswith(".") else enc


def tenant_prefix(tenant: str) -> str:
    """The key prefix every batch of ``tenant`` lies under."""
    return segment(tenant) + "/"


def check_under(key: str, tenant: str) -> str:
    """``key`` if it lies under ``tenant``'s prefix: it starts with it and none of its
    segments is empty, ``.`` or ``..`` or holds a NUL or a backslash (which a local folder
    or a tool reading S3 would resolve elsewhere). Raises :class:`UnsafeKey` otherwise."""
    parts = key.split("/")
    bad = [p for p in parts if p in ("", ".", "..") or "\0" in p or "\\" in p]
    if bad or not key.startswith(tenant_prefix(tenant)):
        raise UnsafeKey(f"batch key {key!r} would leave the folder of tenant {tenant!r} "
                        f"({tenant_prefix(tenant)!r}); nothing was written")
    return key
