"""What the spool job must know about tenants and streams while it decodes, cached.

The registry lives in the ledger; decoding asks per record, so answers are cached and
refreshed: the tenant list at most every ``refresh_seconds`` and only when a tenant is not
found; a stream's Singer key properties when its SCHEMA passes by, or from the ledger on a
miss (at most once per stream per refresh interval). Time is injected as ``clock``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from spool import maps


class Registry(Protocol):
    def tenant_ids(self) -> set[str]: ...
    def stream_keys(self) -> dict[tuple[str, str], tuple[str, ...]]: ...
    def stream_schema(self, tenant_id: str, stream: str): ...
    def save_stream_schema(self, tenant_id, stream, key_names, schema, record_id) -> None: ...


class Directory:
    def __init__(self, registry: Registry, refresh_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._registry = registry
        self._refresh = refresh_seconds
        self._clock = clock
        self._tenants: set[str] = registry.tenant_ids()
        self._tenants_at = clock()
        self._keys: dict[tuple[str, str], tuple[str, ...]] = registry.stream_keys()
        self._schemas: dict[tuple[str, str], dict | None] = {}
        self._misses: dict[tuple[str, str], float] = {}

    def is_tenant(self, tenant: str) -> bool:
        if tenant in self._tenants:
            return True
        now = self._clock()
        if now - self._tenants_at >= self._refresh:
            self._tenants = self._registry.tenant_ids()
            self._tenants_at = now
        return tenant in self._tenants

    def stream_keys(self, tenant: str, stream: str) -> tuple[str, ...] | None:
        key = (tenant, stream)
        found = self._keys.get(key)
        if found is not None:
            return found
        if "\0" in tenant or "\0" in stream:  # PostgreSQL holds no such name: none to ask
            return None
        now = self._clock()
        if now - self._misses.get(key, -1e18) < self._refresh:
            return None
        self._misses[key] = now
        row = self._registry.stream_schema(tenant, stream)
        if row is None:
            return None
        self._keys[key], self._schemas[key] = row
        return row[0]

    def schema(self, tenant: str, stream: str) -> dict | None:
        key = (tenant, stream)
        if key not in self._schemas and key in self._keys:
            row = self._registry.stream_schema(tenant, stream)
            self._schemas[key] = row[1] if row else None
        return self._schemas.get(key)

    def learn_schema(self, tenant: str, stream: str, key_names: tuple[str, ...],
                     schema: dict, record_id: str) -> None:
        """A SCHEMA message: remember it here and in the ledger (only when it changed)."""
        key = (tenant, stream)
        if self._keys.get(key) == key_names and self._schemas.get(key) == schema:
            return
        self._registry.save_stream_schema(tenant, stream, key_names, schema, record_id)
        self._keys[key] = key_names
        self._schemas[key] = schema
        self._misses.pop(key, None)


class MapDirectory:
    """The tenants' stream maps (spool.maps), by (tenant, stream), compiled once per
    version.

    Each record meets the newest version set at or before its time (its Kafka timestamp,
    as the partition's event time carries it): a record sent after ``spool maps set``
    returned is always mapped by that version or a newer one, whatever its window, and a
    record the job reads again meets the same version. ``read`` is
    spool.ledger.maps.MapStore.read: the versions, and the ledger's clock before it read
    them, so they are all that will ever apply up to that moment; a record past it sends
    the job back to the ledger first (:meth:`cover`, once per chunk: a cheap check while
    nothing changed). A map that cannot be compiled here (its secret cannot be read on this
    worker) rejects its stream's records, never lets them through unmapped.
    """

    def __init__(self, read: Callable, resolve: Callable[[str], str] | None = None) -> None:
        self._read_from = read
        self._resolve = resolve
        self._by_stream: dict[tuple[str, str], list] = {}
        self._compiled: dict[tuple[str, str, int], Callable] = {}
        self._parsed: dict[tuple[str, str, int], maps.StreamMap] = {}
        self._stamp = None
        self._read_at_ms = -1
        self._read()

    def _read(self) -> None:
        snapshot = self._read_from(self._stamp)
        if snapshot.versions is not None:
            by_stream: dict[tuple[str, str], list] = {}
            for v in snapshot.versions:  # (from when, in ms; the version)
                by_stream.setdefault((v.tenant_id, v.stream), []).append((v.from_ms, v))
            for found in by_stream.values():
                found.sort(key=lambda pair: pair[1].version)
            self._by_stream = by_stream
        self._stamp = snapshot.stamp
        self._read_at_ms = snapshot.read_at_ms

    def cover(self, event_ms: int) -> None:
        """Make sure the versions known here are all that apply to records up to
        ``event_ms``: read them again if it is past the last read."""
        if event_ms > self._read_at_ms:
            self._read()

    def at(self, tenant: str, stream: str, event_ms: int):
        """(version, apply) of the map in force for a record of ``event_ms``: apply is None
        when that version removed the map; None when the stream had none by then. The
        caller has called :meth:`cover` for ``event_ms`` (once per chunk): reading again per
        record could find nothing newer while the ledger's clock is behind the record's."""
        found = self._by_stream.get((tenant, stream))
        if not found:
            return None
        current = None
        for from_ms, v in found:
            if from_ms <= event_ms:
                current = v
        if current is None:
            return None
        if current.document is None:
            return current.version, None
        key = (tenant, stream, current.version)
        apply = self._compiled.get(key)
        if apply is None:
            apply = self._compiled[key] = self._compile(current, stream)
        return current.version, apply

    def routed(self, tenant: str, stream: str, event_ms: int,
               key_names: tuple[str, ...]) -> tuple[str, tuple[str, ...], int | None]:
        """The stream records of ``stream`` at ``event_ms`` load into (its map's alias), their
        key properties as the map renames them, and the map's version (None: no map made
        them): where a control message for the stream (an activation) belongs. A map that
        cannot be used here (its records are rejected) sends nothing anywhere."""
        found = self.at(tenant, stream, event_ms)
        m = self._parsed.get((tenant, stream, found[0])) if found and found[1] else None
        if m is None:
            return stream, key_names, None
        return m.alias or stream, m.renamed_keys(key_names), found[0]

    def _compile(self, version, stream: str) -> Callable:
        try:
            m = maps.parse(version.document, resolve_secret=False)
            apply = maps.compile_map(m, stream) if self._resolve is None else \
                maps.compile_map(m, stream, self._resolve)
            self._parsed[(version.tenant_id, stream, version.version)] = m  # usable here
            return apply
        except (maps.MapError, LookupError) as exc:  # LookupError: a SecretError
            message = str(exc)

            def refuse(_data, _key_names=(), _exact=True):
                raise maps.CannotApply(f"the map cannot be used here: {message}")

            return refuse
