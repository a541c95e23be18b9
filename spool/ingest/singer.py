"""Singer messages on the fat queue: SCHEMA, RECORD, ACTIVATE_VERSION and STATE.

A Singer message names no tenant: it comes in a Kafka header (``--tenant_header``), set by
``spool produce --singer --tenant T``. A RECORD needs its stream's SCHEMA first, whose
``key_properties`` become the record's key names.

A STATE is saved per (tenant, state id): the state id names the tap (or the connection of a
tap) whose state it is, in the Kafka header ``state_id``, set by ``spool produce --singer
--state-id NAME``; a STATE without it is the tenant's state ``default``. Two taps feeding
one tenant thus keep a state each.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from spool.ingest.messages import (
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

SINGER_TYPES = {"RECORD", "SCHEMA", "ACTIVATE_VERSION", "STATE"}
STATE_ID_HEADER = "state_id"
DEFAULT_STATE_ID = "default"


def state_id_of(headers) -> tuple[str | None, str | None]:
    """(state id, None) of a STATE message's headers, or (None, what is wrong with it)."""
    for key, value in headers or ():
        if key == STATE_ID_HEADER and value is not None:
            try:
                name = value.decode("utf-8")
            except UnicodeDecodeError:
                name = ""
            if not name.strip() or len(name) > MAX_NAME_CHARS or "\0" in name:
                return None, (f"the '{STATE_ID_HEADER}' header must be a name of 1 to "
                              f"{MAX_NAME_CHARS} characters in UTF-8, without NUL; send the "
                              "tap's output with 'spool produce --singer --state-id NAME'")
            return name, None
    return DEFAULT_STATE_ID, None


def decode_singer(obj: dict, tenant: str | None, tenant_header: str,
                  stream_keys: Callable[[str, str], tuple[str, ...] | None],
                  headers=None) -> Decoded:
    """A Singer message; ``stream_keys`` gives the key properties a SCHEMA declared
    for (tenant, stream), or None when none was seen yet; a STATE's state id is in
    ``headers`` (the Kafka record's)."""
    mtype = obj.get("type")
    if mtype not in SINGER_TYPES:
        return reject(Reason.UNSUPPORTED, f"unsupported Singer message type "
                      f"{json.dumps(mtype)[:40]}; Spool takes "
                      f"{', '.join(sorted(SINGER_TYPES))}", tenant)
    if tenant is None:
        return reject(Reason.NO_TENANT, f"a Singer {mtype} message needs the tenant in the "
                      f"'{tenant_header}' Kafka header; send it with "
                      "'spool produce --singer --tenant T'")
    if mtype == "STATE":
        if "value" not in obj:
            return reject(Reason.MISSING_FIELD, "a Singer STATE message needs 'value'",
                          tenant)
        state_id, why = state_id_of(headers)
        if why:
            return reject(Reason.WRONG_TYPE, why, tenant)
        return Decoded(Kind.STATE, tenant=tenant, data={"value": obj["value"]},
                       state_id=state_id)
    stream, err = name_field(obj, "stream", f"Singer {mtype} message")
    if err:
        err.tenant = tenant
        return err
    if mtype == "SCHEMA":
        return _schema(obj, tenant, stream)
    if mtype == "ACTIVATE_VERSION":
        version, why = optional_int(obj, "version")
        if why or version is None:
            return reject(Reason.WRONG_TYPE, "a Singer ACTIVATE_VERSION message needs "
                          "'version' (an integer)", tenant, stream)
        return Decoded(Kind.ACTIVATE_VERSION, tenant=tenant, stream=stream,
                       table_version=version)
    return _record(obj, tenant, stream, stream_keys)


def _schema(obj: dict, tenant: str, stream: str) -> Decoded:
    schema = obj.get("schema")
    if not isinstance(schema, dict):
        return reject(Reason.WRONG_TYPE, "a Singer SCHEMA message needs 'schema' (a "
                      "JSON schema object)", tenant, stream)
    keys = obj.get("key_properties") or []
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        return reject(Reason.BAD_KEY, "'key_properties' must be a list of field names",
                      tenant, stream)
    return Decoded(Kind.SCHEMA, tenant=tenant, stream=stream, schema=schema,
                   key_names=tuple(keys))


def _record(obj: dict, tenant: str, stream: str,
            stream_keys: Callable[[str, str], tuple[str, ...] | None]) -> Decoded:
    record = obj.get("record")
    if not isinstance(record, dict):
        return reject(Reason.DATA_NOT_OBJECT, f"a Singer RECORD needs 'record' as a JSON "
                      f"object, got a {json_type(record)}", tenant, stream)
    version, why = optional_int(obj, "version")
    if why is None:
        extracted_at, why = optional_time(obj, "time_extracted")
    if why:
        return reject(Reason.WRONG_TYPE, why, tenant, stream)
    known = stream_keys(tenant, stream)
    if known is None:
        return reject(Reason.RECORD_BEFORE_SCHEMA, f"a Singer RECORD for stream '{stream}' "
                      "arrived before its SCHEMA message; send the SCHEMA first and replay "
                      "this record", tenant, stream)
    if known:
        _, why = check_key_names(list(known), record)
        if why:
            return reject(Reason.BAD_KEY, f"the stream's key_properties {why}", tenant,
                          stream)
    return Decoded(Kind.RECORD, tenant=tenant, stream=stream, data=record, key_names=known,
                   extracted_at=extracted_at, table_version=version, singer=True)
