"""Decoding the fat queue's messages: bytes → :class:`~spool.ingest.messages.Decoded`.

Two input forms, both JSON objects in UTF-8 (see docs/envelope.md): the Spool envelope
(spool.ingest.envelope) and Singer messages (spool.ingest.singer), recognised by their
``type`` field, with the tenant in a Kafka header (``tenant`` by default).

Every message becomes exactly one :class:`Decoded`. A message that cannot be used becomes a
``REJECTED`` one that carries a reason code and a sentence a human can act on; nothing is
dropped and nothing raises. Decoding knows nothing of Kafka clients or Beam: it is given the
value bytes, the headers and the record's coordinates.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import orjson

from spool import sdc
from spool.ingest.envelope import decode_envelope
from spool.ingest.messages import Decoded, DecodeRules, Kind, Reason, reject
from spool.ingest.singer import decode_singer

__all__ = ["DecodeRules", "Decoded", "Decoder", "Kind", "Reason", "parse"]


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _parse_slow(value: bytes):
    """Exact parse with the standard library: (object, None) or (None, rejection)."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, reject(Reason.NOT_UTF8, f"the message is not UTF-8 (byte {exc.start}: "
                            f"{value[exc.start:exc.start + 1]!r}); send UTF-8 encoded JSON")
    try:
        obj = json.loads(text, parse_constant=_no_constants)
    except ValueError as exc:
        return None, reject(Reason.NOT_JSON, f"the message is not JSON: {exc}")
    except RecursionError:
        return None, reject(Reason.TOO_DEEP, "the message nests too deeply to be parsed")
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return None, reject(Reason.NOT_UTF8, "the message has a \\u escape that is not a "
                            "character (a lone surrogate); send valid Unicode")
    return obj, None


def parse(value: bytes, exact: bool = False):
    """(object, None) or (None, rejection): orjson, or the standard library when ``exact``
    or when orjson refuses the text (to tell why). orjson turns integers beyond 64 bits into
    floats; shaping notices such floats and asks for an exact parse (see Decoder.decode)."""
    if not exact:
        try:
            return orjson.loads(value), None
        except orjson.JSONDecodeError:
            pass
    return _parse_slow(value)


def _tenant_of(value: bytes) -> str | None:
    """The tenant of a message too large to load, so its rejection lands with its tenant."""
    obj, rejected = parse(value)
    if rejected is None and isinstance(obj, dict) and isinstance(obj.get("tenant"), str):
        return obj["tenant"]
    return None


def header_value(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name and value is not None:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return None
    return None


class Decoder:
    """Turns message bytes into :class:`Decoded` values.

    ``is_tenant`` answers whether a tenant is registered (the ledger's tenant registry, with
    whatever caching the caller wants); ``stream_keys`` returns the key properties a Singer
    SCHEMA declared for (tenant, stream), or None when no SCHEMA was seen yet.
    """

    def __init__(
        self,
        rules: DecodeRules,
        is_tenant: Callable[[str], bool],
        stream_keys: Callable[[str, str], tuple[str, ...] | None],
    ) -> None:
        self.rules = rules
        self.is_tenant = is_tenant
        self.stream_keys = stream_keys

    def decode(self, value: bytes | None, headers=None, exact: bool = False) -> Decoded:
        """Decode one message; ``exact`` parses with the standard library (for the rare
        message whose numbers orjson cannot hold exactly)."""
        header_tenant = header_value(headers, self.rules.tenant_header) if headers else None
        result = self._decode(value, header_tenant, exact, headers)
        if result.kind is Kind.REJECTED and result.tenant is None and header_tenant:
            result.tenant = header_tenant
        if result.tenant == sdc.UNASSIGNED_TENANT and result.kind is not Kind.REJECTED:
            # registered or not, it holds only what names no tenant: a message may not claim
            # it, or its records would land as tables in the platform's schema
            return reject(
                Reason.UNKNOWN_TENANT,
                f"tenant '{sdc.UNASSIGNED_TENANT}' is reserved for messages that name no "
                "registered tenant; send the record under its own tenant",
                tenant=result.tenant, stream=result.stream)
        if result.tenant is not None and result.reason is not Reason.UNKNOWN_TENANT and \
                not self.is_tenant(result.tenant):
            return reject(
                Reason.UNKNOWN_TENANT,
                f"tenant '{result.tenant}' is not registered; register it with "
                f"'spool tenants add {result.tenant} ...' and replay the record from here",
                tenant=result.tenant, stream=result.stream)
        return result

    def _decode(self, value: bytes | None, header_tenant: str | None, exact: bool,
                headers) -> Decoded:
        if value is None:
            return reject(Reason.NOT_OBJECT, "the message has no value (a tombstone); send a "
                          "JSON object")
        if len(value) > self.rules.max_message_bytes:
            return reject(Reason.TOO_LARGE, f"the message has {len(value)} bytes, over the "
                          f"limit of {self.rules.max_message_bytes} (--max_message_bytes); split "
                          "the record or raise the limit", tenant=_tenant_of(value),
                          stream=None)
        obj, rejected = parse(value, exact)
        if rejected is not None:
            return rejected
        if not isinstance(obj, dict):
            return reject(Reason.NOT_OBJECT, f"the message is a JSON {type(obj).__name__}, "
                          "not an object; send an envelope or a Singer message")
        if "type" in obj and "data" not in obj:
            return decode_singer(obj, header_tenant, self.rules.tenant_header, self.stream_keys,
                                 headers)
        return decode_envelope(obj, header_tenant)
