"""The Spool envelope, the fat queue's own message form (docs/envelope.md).

Close to the Stitch Import API::

    {"tenant": "acme", "stream": "orders", "key_names": ["id"],
     "sequence": 1732612345000, "data": {...}}

optional: ``extracted_at`` (ISO 8601 text), ``table_version`` (integer). Most messages take
a fast path that checks only what they hold; anything unusual goes through the full checks,
which give the same verdicts and say what is wrong.
"""

from __future__ import annotations

from spool.ingest.messages import (
    INT64_MAX,
    INT64_MIN,
    MAX_NAME_CHARS,
    Decoded,
    Kind,
    Reason,
    check_key_names,
    json_type,
    name_field,
    optional_int,
    optional_time,
    reject,
)

ENVELOPE_FIELDS = {"tenant", "stream", "key_names", "sequence", "data", "extracted_at",
                   "table_version"}
FAST_FIELDS = {"tenant", "stream", "key_names", "sequence", "data"}


def decode_envelope(obj: dict, header_tenant: str | None, fast: bool = True) -> Decoded:
    if fast:
        quick = _fast(obj, header_tenant)
        if quick is not None:
            return quick
    tenant, err = name_field(obj, "tenant", "envelope")
    if err:
        err.tenant = header_tenant
        return err
    stream, err = name_field(obj, "stream", "envelope")
    if err:
        err.tenant = tenant
        return err
    unknown = sorted(set(obj) - ENVELOPE_FIELDS)
    if unknown:
        return reject(Reason.UNKNOWN_FIELD, f"unexpected envelope field '{unknown[0]}'; "
                      f"allowed: {', '.join(sorted(ENVELOPE_FIELDS))}", tenant, stream)
    if header_tenant is not None and header_tenant != tenant:
        return reject(Reason.WRONG_TYPE, f"the tenant header says '{header_tenant}' but "
                      f"the envelope says '{tenant}'; send one tenant", tenant, stream)
    if "data" not in obj:
        return reject(Reason.MISSING_FIELD, "the envelope has no 'data' field; put the "
                      "record in 'data' (a JSON object)", tenant, stream)
    data = obj["data"]
    if not isinstance(data, dict):
        return reject(Reason.DATA_NOT_OBJECT, f"'data' must be a JSON object, got a "
                      f"{json_type(data)}", tenant, stream)
    key_names: tuple[str, ...] = ()
    if obj.get("key_names") is not None:
        key_names, why = check_key_names(obj["key_names"], data)
        if why:
            return reject(Reason.BAD_KEY, f"'key_names' {why}", tenant, stream)
    sequence, why = optional_int(obj, "sequence")
    if why is None:
        table_version, why = optional_int(obj, "table_version")
    if why is None:
        extracted_at, why = optional_time(obj, "extracted_at")
    if why:
        return reject(Reason.WRONG_TYPE, why, tenant, stream)
    return Decoded(Kind.RECORD, tenant=tenant, stream=stream, data=data, key_names=key_names,
                   sequence=sequence, extracted_at=extracted_at, table_version=table_version)


def _fast(obj: dict, header_tenant: str | None) -> Decoded | None:
    """The common well-formed envelope without optional fields other than key names and
    sequence; None sends the message through the full checks (same verdicts)."""
    tenant = obj.get("tenant")
    stream = obj.get("stream")
    data = obj.get("data")
    if not (tenant.__class__ is str and stream.__class__ is str and data.__class__ is dict
            and obj.keys() <= FAST_FIELDS and header_tenant in (None, tenant)
            and 0 < len(tenant) <= MAX_NAME_CHARS and 0 < len(stream) <= MAX_NAME_CHARS
            and not tenant.isspace() and not stream.isspace()
            and "\0" not in tenant and "\0" not in stream):
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
