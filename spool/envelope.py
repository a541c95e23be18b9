"""The fat queue's message formats, decoded and validated.

Two input forms, both JSON objects in UTF-8 (see docs/envelope.md):

* the Spool envelope, close to the Stitch Import API::

    {"tenant": "acme", "stream": "orders", "key_names": ["id"],
     "sequence": 1732612345000, "data": {...}}

  optional: ``extracted_at`` (ISO 8601 text), ``table_version`` (integer).

* Singer messages (``SCHEMA``, ``RECORD``, ``ACTIVATE_VERSION``, ``STATE``), recognised by
  their ``type`` field, with the tenant in a Kafka header (``tenant`` by default).

Every message becomes exactly one :class:`Decoded`. A message that cannot be used becomes a
``REJECTED`` one that carries a reason code and a sentence a human can act on; nothing is
dropped and nothing raises. Decoding knows nothing of Kafka clients or Beam: it is given the
value bytes, the headers and the record's coordinates.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

MAX_NAME_CHARS = 255
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Kind(enum.Enum):
    RECORD = "record"
    SCHEMA = "schema"
    ACTIVATE_VERSION = "activate_version"
    STATE = "state"
    REJECTED = "rejected"


class Reason(enum.Enum):
    """Why a message was rejected; the value is the stable code stored with it."""

    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_FIELD = "unknown_field"
    NO_TENANT = "no_tenant"
    UNKNOWN_TENANT = "unknown_tenant"
    DATA_NOT_OBJECT = "data_not_object"
    BAD_KEY = "bad_key"
    RECORD_BEFORE_SCHEMA = "record_before_schema"
    UNSUPPORTED = "unsupported_message"
    TOO_DEEP = "too_deep"


@dataclass(frozen=True)
class DecodeRules:
    """Options of decoding: size limit and where a Singer message's tenant comes from."""

    max_message_bytes: int = 4 * 1024 * 1024
    tenant_header: str = "tenant"


@dataclass(slots=True)
class Decoded:
    kind: Kind
    tenant: str | None = None
    stream: str | None = None
    data: dict | None = None  # RECORD: the record object; STATE: the state value
    key_names: tuple[str, ...] | None = None  # None: the stream's known keys apply
    sequence: int | None = None
    extracted_at: int | None = None  # microseconds since the epoch, UTC
    table_version: int | None = None
    schema: dict | None = None  # SCHEMA: the JSON schema
    reason: Reason | None = None
    message: str | None = None  # REJECTED: what was wrong and what to do
    singer: bool = False


ENVELOPE_FIELDS = {"tenant", "stream", "key_names", "sequence", "data", "extracted_at",
                   "table_version"}
FAST_FIELDS = {"tenant", "stream", "key_names", "sequence", "data"}
SINGER_TYPES = {"RECORD", "SCHEMA", "ACTIVATE_VERSION", "STATE"}


def _reject(reason: Reason, message: str, tenant: str | None = None,
            stream: str | None = None) -> Decoded:
    return Decoded(Kind.REJECTED, tenant=tenant, stream=stream, reason=reason, message=message)


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")




def _parse_slow(value: bytes):
    """Exact parse with the standard library: (object, None) or (None, rejection)."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, _reject(Reason.NOT_UTF8, f"the message is not UTF-8 (byte {exc.start}: "
                             f"{value[exc.start:exc.start + 1]!r}); send UTF-8 encoded JSON")
    try:
        obj = json.loads(text, parse_constant=_no_constants)
    except ValueError as exc:
        return None, _reject(Reason.NOT_JSON, f"the message is not JSON: {exc}")
    except RecursionError:
        return None, _reject(Reason.TOO_DEEP, "the message nests too deeply to be parsed")
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return None, _reject(Reason.NOT_UTF8, "the message has a \\u escape that is not a "
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


def _name(obj: dict, field: str, what: str) -> tuple[str | None, Decoded | None]:
    value = obj.get(field)
    if value is None:
        return None, _reject(Reason.MISSING_FIELD, f"the {what} has no '{field}' field; "
                             f"add it (a non-empty string)")
    if not isinstance(value, str) or not value.strip():
        return None, _reject(Reason.WRONG_TYPE, f"'{field}' must be a non-empty string, "
                             f"got {json.dumps(value)[:80]}")
    if len(value) > MAX_NAME_CHARS:
        return None, _reject(Reason.WRONG_TYPE, f"'{field}' is longer than {MAX_NAME_CHARS} "
                             "characters")
    return value, None


def _key_names(value, data: dict) -> tuple[tuple[str, ...] | None, str | None]:
    """Validate key names against the record; returns (names, error sentence)."""
    if not isinstance(value, list) or not all(isinstance(k, str) and k for k in value):
        return None, f"must be a list of field names, got {json.dumps(value)[:80]}"
    if len(set(value)) != len(value):
        return None, f"names a field twice: {json.dumps(value)[:80]}"
    for key in value:
        if key not in data:
            return None, f"names '{key}', which is missing from the record"
        v = data[key]
        if v is None or isinstance(v, dict | list):
            kind = "null" if v is None else type(v).__name__
            return None, f"names '{key}', whose value is {kind}; a key must be a string or number"
    return tuple(value), None


def _optional_int(obj: dict, field: str) -> tuple[int | None, str | None]:
    value = obj.get(field)
    if value is None:
        return None, None
    if isinstance(value, bool) or not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX:
        return None, f"'{field}' must be a 64-bit integer, got {json.dumps(value)[:80]}"
    return value, None


def _optional_time(obj: dict, field: str) -> tuple[int | None, str | None]:
    """An ISO 8601 date-time as microseconds since the epoch (UTC; naive means UTC)."""
    value = obj.get(field)
    if value is None:
        return None, None
    try:
        if not isinstance(value, str):
            raise TypeError(value)
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None, (f"'{field}' must be an ISO 8601 date-time such as "
                      f"2024-11-26T10:00:00Z, got {json.dumps(value)[:80]}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds, None


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
        result = self._decode(value, header_tenant, exact)
        if result.kind is Kind.REJECTED and result.tenant is None and header_tenant:
            result.tenant = header_tenant
        if result.tenant is not None and result.reason is not Reason.UNKNOWN_TENANT and \
                not self.is_tenant(result.tenant):
            return _reject(
                Reason.UNKNOWN_TENANT,
                f"tenant '{result.tenant}' is not registered; register it with "
                f"'spool tenants add {result.tenant} ...' and replay the record from here",
                tenant=result.tenant, stream=result.stream)
        return result

    def _decode(self, value: bytes | None, header_tenant: str | None, exact: bool) -> Decoded:
        if value is None:
            return _reject(Reason.NOT_OBJECT, "the message has no value (a tombstone); send a "
                           "JSON object")
        if len(value) > self.rules.max_message_bytes:
            return _reject(Reason.TOO_LARGE, f"the message has {len(value)} bytes, over the "
                           f"limit of {self.rules.max_message_bytes} (--max_message_bytes); split "
                           "the record or raise the limit", tenant=_tenant_of(value),
                           stream=None)
        obj, rejected = parse(value, exact)
        if rejected is not None:
            return rejected
        if not isinstance(obj, dict):
            return _reject(Reason.NOT_OBJECT, f"the message is a JSON {type(obj).__name__}, "
                           "not an object; send an envelope or a Singer message")
        if "type" in obj and "data" not in obj:
            return self._singer(obj, header_tenant)
        return self._envelope(obj, header_tenant)

    # -- Spool envelope -----------------------------------------------------------------

    def _envelope(self, obj: dict, header_tenant: str | None, fast: bool = True) -> Decoded:
        if fast:
            quick = self._envelope_fast(obj, header_tenant)
            if quick is not None:
                return quick
        tenant, err = _name(obj, "tenant", "envelope")
        if err:
            err.tenant = header_tenant
            return err
        stream, err = _name(obj, "stream", "envelope")
        if err:
            err.tenant = tenant
            return err
        unknown = sorted(set(obj) - ENVELOPE_FIELDS)
        if unknown:
            return _reject(Reason.UNKNOWN_FIELD, f"unexpected envelope field '{unknown[0]}'; "
                           f"allowed: {', '.join(sorted(ENVELOPE_FIELDS))}", tenant, stream)
        if header_tenant is not None and header_tenant != tenant:
            return _reject(Reason.WRONG_TYPE, f"the tenant header says '{header_tenant}' but "
                           f"the envelope says '{tenant}'; send one tenant", tenant, stream)
        if "data" not in obj:
            return _reject(Reason.MISSING_FIELD, "the envelope has no 'data' field; put the "
                           "record in 'data' (a JSON object)", tenant, stream)
        data = obj["data"]
        if not isinstance(data, dict):
            return _reject(Reason.DATA_NOT_OBJECT, f"'data' must be a JSON object, got a "
                           f"{_json_type(data)}", tenant, stream)
        key_names: tuple[str, ...] = ()
        if obj.get("key_names") is not None:
            key_names, why = _key_names(obj["key_names"], data)
            if why:
                return _reject(Reason.BAD_KEY, f"'key_names' {why}", tenant, stream)
        sequence, why = _optional_int(obj, "sequence")
        if why is None:
            table_version, why = _optional_int(obj, "table_version")
        if why is None:
            extracted_at, why = _optional_time(obj, "extracted_at")
        if why:
            return _reject(Reason.WRONG_TYPE, why, tenant, stream)
        return Decoded(Kind.RECORD, tenant=tenant, stream=stream, data=data, key_names=key_names,
                       sequence=sequence, extracted_at=extracted_at, table_version=table_version)

    @staticmethod
    def _envelope_fast(obj: dict, header_tenant: str | None) -> Decoded | None:
        """The common well-formed envelope without optional fields other than key names and
        sequence; None sends the message through the full checks (same verdicts)."""
        tenant = obj.get("tenant")
        stream = obj.get("stream")
        data = obj.get("data")
        if not (tenant.__class__ is str and stream.__class__ is str and data.__class__ is dict
                and obj.keys() <= FAST_FIELDS and header_tenant in (None, tenant)
                and 0 < len(tenant) <= MAX_NAME_CHARS and 0 < len(stream) <= MAX_NAME_CHARS
                and not tenant.isspace() and not stream.isspace()):
            return None
        seq = obj.get("sequence")
        if seq is not None and not (seq.__class__ is int and INT64_MIN <= seq <= INT64_MAX):
            return None
        keys = obj.get("key_names")
        if keys is None:
            return Decoded(Kind.RECORD, tenant=tenant, stream=stream, data=data, key_names=(),
                           sequence=seq)
        if keys.__class__ is not list:
            return None
        for k in keys:
            v = data.get(k) if k.__class__ is str and k else None
            if v is None or v.__class__ in (dict, list):
                return None
        if len(set(keys)) != len(keys):
            return None
        return Decoded(Kind.RECORD, tenant=tenant, stream=stream, data=data,
                       key_names=tuple(keys), sequence=seq)

    # -- Singer ---------------------------------------------------------------------------

    def _singer(self, obj: dict, tenant: str | None) -> Decoded:
        mtype = obj.get("type")
        if mtype not in SINGER_TYPES:
            return _reject(Reason.UNSUPPORTED, f"unsupported Singer message type "
                           f"{json.dumps(mtype)[:40]}; Spool takes "
                           f"{', '.join(sorted(SINGER_TYPES))}", tenant)
        if tenant is None:
            return _reject(Reason.NO_TENANT, f"a Singer {mtype} message needs the tenant in the "
                           f"'{self.rules.tenant_header}' Kafka header; send it with "
                           "'spool produce --singer --tenant T'")
        if mtype == "STATE":
            if "value" not in obj:
                return _reject(Reason.MISSING_FIELD, "a Singer STATE message needs 'value'",
                               tenant)
            return Decoded(Kind.STATE, tenant=tenant, data={"value": obj["value"]})
        stream, err = _name(obj, "stream", f"Singer {mtype} message")
        if err:
            err.tenant = tenant
            return err
        if mtype == "SCHEMA":
            schema = obj.get("schema")
            if not isinstance(schema, dict):
                return _reject(Reason.WRONG_TYPE, "a Singer SCHEMA message needs 'schema' (a "
                               "JSON schema object)", tenant, stream)
            keys = obj.get("key_properties") or []
            if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
                return _reject(Reason.BAD_KEY, "'key_properties' must be a list of field names",
                               tenant, stream)
            return Decoded(Kind.SCHEMA, tenant=tenant, stream=stream, schema=schema,
                           key_names=tuple(keys))
        if mtype == "ACTIVATE_VERSION":
            version, why = _optional_int(obj, "version")
            if why or version is None:
                return _reject(Reason.WRONG_TYPE, "a Singer ACTIVATE_VERSION message needs "
                               "'version' (an integer)", tenant, stream)
            return Decoded(Kind.ACTIVATE_VERSION, tenant=tenant, stream=stream,
                           table_version=version)
        # RECORD
        record = obj.get("record")
        if not isinstance(record, dict):
            return _reject(Reason.DATA_NOT_OBJECT, f"a Singer RECORD needs 'record' as a JSON "
                           f"object, got a {_json_type(record)}", tenant, stream)
        version, why = _optional_int(obj, "version")
        if why is None:
            extracted_at, why = _optional_time(obj, "time_extracted")
        if why:
            return _reject(Reason.WRONG_TYPE, why, tenant, stream)
        known = self.stream_keys(tenant, stream)
        if known is None:
            return _reject(Reason.RECORD_BEFORE_SCHEMA, f"a Singer RECORD for stream '{stream}' "
                           "arrived before its SCHEMA message; send the SCHEMA first and replay "
                           "this record", tenant, stream)
        if known:
            _, why = _key_names(list(known), record)
            if why:
                return _reject(Reason.BAD_KEY, f"the stream's key_properties {why}", tenant,
                               stream)
        return Decoded(Kind.RECORD, tenant=tenant, stream=stream, data=record, key_names=known,
                       extracted_at=extracted_at, table_version=version, singer=True)


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
