"""The registry: tenants and their destinations, streams' Singer schemas, tenant state.

Every statement on the ``tenants``, ``streams`` and ``tenant_state`` tables is here. The
spool job asks it which tenants exist and what a Singer SCHEMA declared (through the cached
:class:`spool.ingest.directory.Directory`); ``spool tenants`` and the loader read and write
tenants' registrations. A registration is stored as given: secrets stay references
(``env:NAME``, ``file:/path``), and what a destination means is
:class:`spool.warehouse.destination.Destination`'s to say.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from spool.ledger.store import Ledger


@dataclass(frozen=True)
class TenantRecord:
    """A tenant's row of the registry, as stored."""

    tenant_id: str
    destination_kind: str  # postgres | redshift | duckdb | snowflake | none
    connection: dict  # secrets are references (env:NAME, file:/path)
    schema_name: str | None  # None: the default schema (the tenant id, normalised)
    load_options: dict
    created_at: object = None


@dataclass(frozen=True)
class SavedState:
    """The latest Singer STATE of one state id of a tenant."""

    state_id: str
    updated_at: object
    record_id: str  # the queue record it came in (topic/partition/offset)
    value: object  # the STATE message's value: what a tap takes with --state


def _json(value) -> dict:
    return value if isinstance(value, dict) else json.loads(value or "{}")


class Registry:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    # -- tenants ----------------------------------------------------------------------------

    def tenant_ids(self) -> set[str]:
        def q(cur):
            cur.execute("SELECT tenant_id FROM tenants")
            return {r[0] for r in cur.fetchall()}

        return self.ledger.run(q)

    def add_tenant(self, tenant_id: str, destination_kind: str = "none",
                   connection: dict | None = None, schema_name: str | None = None,
                   load_options: dict | None = None) -> None:
        """Register a tenant, or replace its registration."""

        def q(cur):
            cur.execute(
                """INSERT INTO tenants (tenant_id, destination_kind, connection, schema_name,
                                        load_options)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (tenant_id) DO UPDATE SET
                     destination_kind = EXCLUDED.destination_kind,
                     connection = EXCLUDED.connection, schema_name = EXCLUDED.schema_name,
                     load_options = EXCLUDED.load_options, updated_at = now()""",
                (tenant_id, destination_kind, json.dumps(connection or {}), schema_name,
                 json.dumps(load_options or {})))

        self.ledger.run(q)

    def remove_tenant(self, tenant_id: str) -> bool:
        """Unregister a tenant (its batches stay); False if there was none."""

        def q(cur):
            cur.execute("DELETE FROM tenants WHERE tenant_id = %s", (tenant_id,))
            return cur.rowcount

        return bool(self.ledger.run(q))

    def tenant(self, tenant_id: str) -> TenantRecord | None:
        def q(cur):
            cur.execute("SELECT tenant_id, destination_kind, connection, schema_name, "
                        "load_options, created_at FROM tenants WHERE tenant_id = %s",
                        (tenant_id,))
            row = cur.fetchone()
            return None if row is None else TenantRecord(row[0], row[1], _json(row[2]), row[3],
                                                         _json(row[4]), row[5])

        return self.ledger.run(q)

    def tenants(self) -> list[TenantRecord]:
        def q(cur):
            cur.execute("SELECT tenant_id, destination_kind, connection, schema_name, "
                        "load_options, created_at FROM tenants ORDER BY tenant_id")
            return [TenantRecord(t, k, _json(c), s, _json(o), at)
                    for t, k, c, s, o, at in cur.fetchall()]

        return self.ledger.run(q)

    def schema_owners(self, connection: dict, schema_name: str, besides: str) -> list[str]:
        """Tenants other than ``besides`` that load into ``schema_name`` of the warehouse
        reached by ``connection``."""

        def q(cur):
            cur.execute("SELECT tenant_id FROM tenants WHERE tenant_id <> %s AND connection = %s "
                        "AND coalesce(schema_name, '') = %s AND destination_kind <> 'none' "
                        "ORDER BY tenant_id", (besides, json.dumps(connection), schema_name))
            return [r[0] for r in cur.fetchall()]

        return self.ledger.run(q)

    # -- streams and state (the spool job) -------------------------------------------------

    def stream_keys(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """Key properties of every stream whose Singer SCHEMA was seen."""

        def q(cur):
            cur.execute("SELECT tenant_id, stream, key_names FROM streams")
            return {(t, s): tuple(k) for t, s, k in cur.fetchall()}

        return self.ledger.run(q)

    def stream_schema(self, tenant_id: str, stream: str) -> tuple[tuple[str, ...], dict] | None:
        def q(cur):
            cur.execute("SELECT key_names, json_schema FROM streams WHERE tenant_id = %s "
                        "AND stream = %s", (tenant_id, stream))
            row = cur.fetchone()
            return (tuple(row[0]), row[1]) if row else None

        return self.ledger.run(q)

    def save_stream_schema(self, tenant_id: str, stream: str, key_names: tuple[str, ...],
                           schema: dict | None, record_id: str) -> None:
        def q(cur):
            cur.execute(
                """INSERT INTO streams (tenant_id, stream, key_names, json_schema, schema_record)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (tenant_id, stream) DO UPDATE SET
                     key_names = EXCLUDED.key_names, json_schema = EXCLUDED.json_schema,
                     schema_record = EXCLUDED.schema_record, updated_at = now()""",
                (tenant_id, stream, list(key_names),
                 json.dumps(schema) if schema is not None else None, record_id))

        self.ledger.run(q)

    def save_tenant_state(self, tenant_id: str, state_id: str, state,
                          record_id: str) -> None:
        """The latest Singer STATE of a tenant's state id, and the record it came in."""

        def q(cur):
            cur.execute(
                """INSERT INTO tenant_state (tenant_id, state_id, state, record_id)
                   VALUES (%s, %s, %s, %s)
                   ON CONFLICT (tenant_id, state_id) DO UPDATE SET state = EXCLUDED.state,
                     record_id = EXCLUDED.record_id, updated_at = now()""",
                (tenant_id, state_id, json.dumps(state), record_id))

        self.ledger.run(q)

    def tenant_states(self, tenant_id: str) -> list[SavedState]:
        """A tenant's saved Singer states, by state id (``spool state``)."""

        def q(cur):
            cur.execute("SELECT state_id, updated_at, record_id, state FROM tenant_state "
                        "WHERE tenant_id = %s ORDER BY state_id", (tenant_id,))
            return [SavedState(*row) for row in cur.fetchall()]

        return self.ledger.run(q)
