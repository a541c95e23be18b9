"""The ledger's schema, as numbered migrations applied in order, each in one transaction.

A migration is never edited once released: a change is a new entry at the end. The table
``spool_schema_version`` records what was applied; ``migrate`` takes an advisory lock so
that workers starting together apply each migration once.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "tenants, streams, batches, tenant state",
        """
        CREATE TABLE tenants (
            tenant_id        text PRIMARY KEY,
            destination_kind text NOT NULL DEFAULT 'none'
                             CHECK (destination_kind IN ('postgres', 'redshift', 'none')),
            connection       jsonb NOT NULL DEFAULT '{}'::jsonb,
            schema_name      text,
            load_options     jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at       timestamptz NOT NULL DEFAULT now(),
            updated_at       timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE streams (
            tenant_id     text NOT NULL,
            stream        text NOT NULL,
            key_names     text[] NOT NULL DEFAULT '{}',
            json_schema   jsonb,
            schema_record text,
            updated_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, stream)
        );

        CREATE TYPE batch_state AS ENUM ('READY', 'LOADING', 'LOADED', 'FAILED');

        CREATE TABLE batches (
            batch_id         text PRIMARY KEY,
            tenant_id        text NOT NULL,
            stream           text NOT NULL,
            uri              text NOT NULL,
            state            batch_state NOT NULL DEFAULT 'READY',
            window_start     timestamptz NOT NULL,
            window_end       timestamptz NOT NULL,
            pane             integer NOT NULL,
            record_count     integer NOT NULL,
            row_count        integer NOT NULL,
            byte_count       bigint NOT NULL,
            file_bytes       bigint NOT NULL,
            min_sequence     bigint,
            max_sequence     bigint,
            offsets          jsonb NOT NULL,
            key_names        text[] NOT NULL DEFAULT '{}',
            columns          jsonb NOT NULL,
            meta             jsonb NOT NULL DEFAULT '{}'::jsonb,
            attempts         integer NOT NULL DEFAULT 0,
            last_error       text,
            next_attempt_at  timestamptz,
            lease_owner      text,
            lease_expires_at timestamptz,
            created_at       timestamptz NOT NULL DEFAULT now(),
            updated_at       timestamptz NOT NULL DEFAULT now(),
            load_started_at  timestamptz,
            loaded_at        timestamptz
        );
        CREATE INDEX batches_open ON batches (tenant_id, stream, min_sequence)
            WHERE state <> 'LOADED';
        CREATE INDEX batches_by_state ON batches (state, tenant_id, stream);
        CREATE INDEX batches_created ON batches (created_at);

        CREATE TABLE tenant_state (
            tenant_id  text PRIMARY KEY,
            state      jsonb NOT NULL,
            record_id  text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
    (
        2,
        "load reports: what each warehouse transaction did per table",
        """
        CREATE TABLE load_reports (
            tenant_id        text NOT NULL,
            load_id          text NOT NULL,
            stream           text NOT NULL,
            table_name       text NOT NULL,
            rows_inserted    bigint NOT NULL DEFAULT 0,
            rows_updated     bigint NOT NULL DEFAULT 0,
            rows_retired     bigint NOT NULL DEFAULT 0,
            rows_rejected    bigint NOT NULL DEFAULT 0,
            values_cut       bigint NOT NULL DEFAULT 0,
            min_received_at  timestamptz,
            max_received_at  timestamptz,
            min_extracted_at timestamptz,
            max_extracted_at timestamptz,
            batch_ids        text[] NOT NULL DEFAULT '{}',
            started_at       timestamptz,
            finished_at      timestamptz,
            recorded_at      timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (load_id, table_name)
        );
        CREATE INDEX load_reports_by_table ON load_reports (tenant_id, table_name, recorded_at);

        -- one row per stream: the newest row any load put in its tables, for spool status
        CREATE TABLE stream_freshness (
            tenant_id       text NOT NULL,
            stream          text NOT NULL,
            newest_received timestamptz,
            last_load_id    text NOT NULL,
            updated_at      timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, stream)
        );
        """,
    ),
    (
        3,
        "webhooks: each tenant's endpoint, and the outbox of events to deliver",
        """
        -- the secret is a reference (env:NAME, file:/path), resolved by the deliverer
        CREATE TABLE webhooks (
            tenant_id  text PRIMARY KEY REFERENCES tenants (tenant_id) ON DELETE CASCADE,
            url        text NOT NULL,
            secret_ref text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        -- written in the ledger transaction that marks a load or a failure; no foreign key
        -- (a webhook removed meanwhile must not fail that transaction)
        CREATE TABLE webhook_events (
            event_id         text PRIMARY KEY,
            tenant_id        text NOT NULL,
            type             text NOT NULL,
            payload          jsonb NOT NULL,
            created_at       timestamptz NOT NULL DEFAULT now(),
            attempts         integer NOT NULL DEFAULT 0,
            next_attempt_at  timestamptz NOT NULL DEFAULT now(),
            delivered_at     timestamptz,
            last_attempt_at  timestamptz,
            last_status      integer,
            last_error       text,
            lease_owner      text,
            lease_expires_at timestamptz
        );
        CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at)
            WHERE delivered_at IS NULL;
        CREATE INDEX webhook_events_by_tenant ON webhook_events (tenant_id, created_at);
        """,
    ),
    (
        4,
        "rows loaded per stream, for the metrics the jobs' launchers serve",
        """
        ALTER TABLE stream_freshness ADD COLUMN rows_loaded bigint NOT NULL DEFAULT 0;
        """,
    ),
    (
        5,
        "DuckDB destinations",
        """
        ALTER TABLE tenants DROP CONSTRAINT tenants_destination_kind_check;
        ALTER TABLE tenants ADD CONSTRAINT tenants_destination_kind_check
            CHECK (destination_kind IN ('postgres', 'redshift', 'duckdb', 'none'));
        """,
    ),
    (
        6,
        "Snowflake destinations",
        """
        ALTER TABLE tenants DROP CONSTRAINT tenants_destination_kind_check;
        ALTER TABLE tenants ADD CONSTRAINT tenants_destination_kind_check
            CHECK (destination_kind IN ('postgres', 'redshift', 'duckdb', 'snowflake',
                                        'none'));
        """,
    ),
    (
        7,
        "stream maps, every version kept",
        """
        CREATE TABLE stream_maps (
            tenant_id   text NOT NULL,
            stream      text NOT NULL,
            version     integer NOT NULL,
            document    jsonb,           -- NULL: the map was removed at this version
            created_at  timestamptz NOT NULL DEFAULT now(),
            created_by  text NOT NULL,
            PRIMARY KEY (tenant_id, stream, version)
        );
        """,
    ),
    (
        8,
        "exact offsets per batch and partition (spool check offsets); late records per batch",
        """
        -- one row per batch and partition it holds records of; written with the batch, in
        -- the same transaction, and gone with it (docs/ledger.md)
        CREATE TABLE batch_offsets (
            batch_id     text NOT NULL REFERENCES batches (batch_id) ON DELETE CASCADE,
            topic        text NOT NULL,
            partition    integer NOT NULL,
            first_offset bigint NOT NULL,
            last_offset  bigint NOT NULL,
            records      integer NOT NULL,  -- offsets in the set
            offsets      bytea NOT NULL,    -- the set, packed (spool/ingest/offsets.py)
            exact        boolean NOT NULL DEFAULT true,  -- false: [first, last] assumed whole
            PRIMARY KEY (batch_id, topic, partition)
        );
        CREATE INDEX batch_offsets_first ON batch_offsets (topic, partition, first_offset);
        CREATE INDEX batch_offsets_last ON batch_offsets (topic, partition, last_offset);

        -- meta's records_late as a column: summed by every metrics scrape, which must not
        -- read (and decompress) each batch's meta
        ALTER TABLE batches ADD COLUMN records_late integer NOT NULL DEFAULT 0;
        """,
    ),
    (
        9,
        "read stalls: partitions the spool job cannot reach, for spool status and metrics",
        """
        -- one row per (consumer group, topic, partition): its current stall (ended_at NULL)
        -- or its last one; written best-effort by the spool job's reader (docs/spool-job.md)
        CREATE TABLE read_stalls (
            consumer_group text NOT NULL,
            topic          text NOT NULL,
            partition      integer NOT NULL,
            started_at     timestamptz NOT NULL,
            ended_at       timestamptz,
            error          text NOT NULL,
            updated_at     timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (consumer_group, topic, partition)
        );
        """,
    ),
    (
        10,
        "load reports count superseded records (lost to a stored higher sequence)",
        """
        ALTER TABLE load_reports ADD COLUMN rows_superseded bigint NOT NULL DEFAULT 0;
        """,
    ),
    (
        11,
        "Singer state per (tenant, state id): two taps of one tenant keep a state each",
        """
        -- the state a tenant had before is the state of its id 'default' (what a STATE sent
        -- without a state id is saved as), so a tap resumes from it as before
        ALTER TABLE tenant_state ADD COLUMN state_id text NOT NULL DEFAULT 'default';
        ALTER TABLE tenant_state ALTER COLUMN state_id DROP DEFAULT;
        ALTER TABLE tenant_state DROP CONSTRAINT tenant_state_pkey;
        ALTER TABLE tenant_state ADD PRIMARY KEY (tenant_id, state_id);
        """,
    ),
]
