"""What decoding a queue message yields: a :class:`Decoded` value, or a rejection.

The vocabulary shared by the two input forms (spool.ingest.envelope, spool.ingest.singer)
and the decoder that dispatches between them (spool.ingest.decode): message kinds, stable
reason codes with a sentence a person can act on, and the checks of single fields.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import UTC, datetime

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
    MAP_FAILED = "map_failed"  # the tenant's stream map cannot be applied to the record


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
    state_id: str | None = None  # STATE: whose state it is (of the tenant's taps)


def reject(reason: Reason, message: str, tenant: str | None = None,
           stream: str | None = None) -> Decoded:
    return Decoded(Kind.REJECTED, tenant=tenant, stream=stream, reason=reason, message=message)


def name_field(obj: dict, field: str, what: str) -> tuple[str | None, Decoded | None]:
    value = obj.get(field)
    if value is None:
        return None, reject(Reason.MISSING_FIELD, f"the {what} has no '{field}' field; "
                            f"add it (a non-empty string)")
    if not isinstance(value, str) or not value.strip():
        return None, reject(Reason.WRONG_TYPE, f"'{field}' must be a non-empty string, "
                            f"got {json.dumps(value)[:80]}")
    if len(value) > MAX_NAME_CHARS:
        return None, reject(Reason.WRONG_TYPE, f"'{field}' is longer than {MAX_NAME_CHARS} "
                            "characters")
    if "\0" in value:  # no database stores it in a name (the ledger's, the warehouse's)
        return None, reject(Reason.WRONG_TYPE, f"'{field}' holds a NUL character (\\u0000); "
                            "send the name without it")
    return value, None


def check_key_names(value, data: dict) -> tuple[tuple[str, ...] | None, str | None]:
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


def optional_int(obj: dict, field: str) -> tuple[int | None, str | None]:
    value = obj.get(field)
    if value is None:
        return None, None
    if isinstance(value, bool) or not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX:
        return None, f"'{field}' must be a 64-bit integer, got {json.dumps(value)[:80]}"
    return value, None


def optional_time(obj: dict, field: str) -> tuple[int | None, str | None]:
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


def json_type(value) -> str:
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
