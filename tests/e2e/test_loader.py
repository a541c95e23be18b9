"""Spool job + loader end to end: the warehouse equals an independent reference model,
exactly once, through kills, parallel loaders and a warehouse outage."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import urllib.request
from collections import Counter

import psycopg2
import psycopg2.extras
import pytest

from spool.warehouse.duckdb_session import DuckDBConnection
from tests import corpus
from tests.conftest import private_schema, search_path_dsn
from tests.e2e.jobs import (
    ROOT,
    job_env,
    kill,
    ledger_rows,
    run_spool_job,
    wait_for,
)
from tests.reference import canonical, expected_tables, norm, rows_from_warehouse

PARTITIONS = 6


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def register(ledger_dsn, tenants, schema_prefix, dsn_env="SPOOL_WAREHOUSE_DSN", kinds=None,
             duckdb_files=None):
    """Tenants load into ``<prefix>_<tenant>`` of the PostgreSQL warehouse, or, those in
    ``duckdb_files`` (tenant → file), into a DuckDB file."""
    from spool.ledger.registry import Registry
    from spool.ledger.store import Ledger

    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    for t in sorted(tenants):
        if t in (duckdb_files or {}):
            Registry(ledger).add_tenant(t, "duckdb", {"path": str(duckdb_files[t])},
                                        f"{schema_prefix}_{t}")
            continue
        Registry(ledger).add_tenant(t, (kinds or {}).get(t, "postgres"),
                                    {"dsn": f"env:{dsn_env}"},
                          f"{schema_prefix}_{t}")
    ledger.close()


def run_loader(env, *args, timeout=600, failpoints=None):
    env = dict(env)
    if failpoints:
        env["SPOOL_FAILPOINTS"] = failpoints
    proc = subprocess.run([sys.executable, "-m", "pipelines.loader_job", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout,
                          start_new_session=True, check=False)
    return proc


def batch_states(ledger_dsn) -> Counter:
    conn = psycopg2.connect(ledger_dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT state FROM batches WHERE stream <> '_sdc_rejected' "
                    "OR tenant_id <> '_unassigned'")
        out = Counter(r[0] for r in cur.fetchall())
    conn.close()
    return out


def schemas_of(stack, prefix):
    conn = psycopg2.connect(stack.warehouse_dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (prefix + "%",))
        out = [r[0] for r in cur.fetchall()]
    conn.close()
    return out


@pytest.fixture
def drop_schemas(stack):
    prefixes = []
    yield prefixes.append
    conn = psycopg2.connect(stack.warehouse_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        for prefix in prefixes:
            cur.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                        (prefix + "%",))
            for (name,) in cur.fetchall():
                cur.execute(f'DROP SCHEMA "{name}" CASCADE')
    conn.close()


def snapshot(stack, prefix) -> dict:
    """Every table of every schema with the prefix: sorted rows (catalog tables left out),
    and of the history tables what does not depend on how batches were grouped into loads:
    the columns the change log says each table got, and per root table the rows its load
    reports add up to (checked here against the table itself)."""
    conn = psycopg2.connect(stack.warehouse_dsn)
    out = {}
    with conn.cursor() as cur:
        for schema in sorted(schemas_of(stack, prefix)):
            snapshot_schema(cur, schema, schema[len(prefix):], out)
    conn.close()
    return out


def snapshot_schema(cur, schema: str, name: str, out: dict) -> None:
    """One schema's part of a snapshot, under ``name`` (a DB-API cursor of any target)."""
    # the contract's tables, without the loader's own bookkeeping and helpers
    cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "AND table_name NOT IN ('_sdc_load_log', '_sdc_contract', '_sdc_tables', "
                "'_sdc_columns', '_sdc_stage', '_sdc_loads', '_sdc_schema_changes')",
                (schema,))
    for (table,) in cur.fetchall():
        cur.execute(f'SELECT * FROM "{schema}"."{table}"')
        names = [d[0] for d in cur.description]
        out[(name, table)] = sorted(tuple(sorted(zip(names, map(repr, r), strict=True)))
                                    for r in cur.fetchall())
    out[(name, "_sdc_schema_changes: columns")] = columns_in_change_log(cur, schema)
    out[(name, "_sdc_loads: rows")] = reported_rows(cur, schema)


def columns_in_change_log(cur, schema) -> list[tuple]:
    cur.execute(f"""SELECT DISTINCT kind, stream, table_name, column_name, source, json_type,
                           new_type FROM "{schema}"._sdc_schema_changes
                    WHERE kind IN ('table_created', 'child_table_created', 'column_added',
                                   'split_column_added') ORDER BY 1, 2, 3, 4, 5, 6, 7""")
    return cur.fetchall()


def reported_rows(cur, schema) -> dict[str, int]:
    """Per root table, rows inserted minus rows retired over all its load reports: the rows
    it holds (updates replace rows; a record loaded twice is in one report only)."""
    cur.execute(f"""SELECT l.table_name, sum(l.rows_inserted) - sum(l.rows_retired)
                    FROM "{schema}"._sdc_loads l JOIN "{schema}"._sdc_tables t
                      ON t.table_name = l.table_name AND t.table_path = '[]'
                    WHERE l.table_name <> '_sdc_rejected' GROUP BY 1""")
    reported = {t: int(n) for t, n in cur.fetchall()}
    for table, n in reported.items():
        cur.execute(f'SELECT count(*) FROM "{schema}"."{table}"')
        assert cur.fetchone()[0] == n, f"{schema}.{table}: the load reports add up to {n} rows"
    return reported


def differences(got: dict, want: dict, limit: int = 3) -> str:
    """What differs between two snapshots, table by table (empty when they are equal)."""
    out = []
    for table in sorted(set(got) | set(want)):
        g, w = got.get(table), want.get(table)
        if g == w:
            continue
        if g is None or w is None:
            out.append(f"{table}: only in {'expected' if g is None else 'actual'}")
            continue
        extra = [r for r in g if r not in w][:limit]
        missing = [r for r in w if r not in g][:limit]
        out.append(f"{table}: {len(g)} rows, expected {len(w)}\n  unexpected: "
                   + "\n              ".join(map(str, extra))
                   + "\n  missing:    " + "\n              ".join(map(str, missing)))
    return "\n".join(out)


def test_200k_records_load_to_exactly_the_reference_model(stack, make_topic, ledger_dsn, unique,
                                                          tmp_path, drop_schemas):
    messages = corpus.generate(200_000, tenants=50, streams=20, seed=3)
    topic = make_topic(partitions=PARTITIONS)
    tenants = corpus.tenants_of(messages)
    # every fifth tenant loads into a DuckDB file of its own, the rest into PostgreSQL
    duck = {t: tmp_path / "duckdb" / f"{t}_warehouse.duckdb" for t in sorted(tenants)[::5]}
    register(ledger_dsn, tenants, unique, duckdb_files=duck)
    drop_schemas(unique)
    ids = corpus.produce(stack.kafka_bootstrap, topic, messages, PARTITIONS)
    env = job_env(stack, ledger_dsn)
    run_spool_job([f"--topic={topic}", f"--consumer_group={unique}",
                   f"--spool_location={tmp_path / 'spool'}",
                   f"--max_message_bytes={corpus.TOO_LARGE_LIMIT}"], env)
    res = run_loader(env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert set(batch_states(ledger_dsn)) == {"LOADED"}

    expected = expected_tables(messages, ids)
    assert len(expected) > 1_500  # 50 tenants x 20 streams, plus child tables
    assert {t for t, _table in expected} & set(duck)  # both kinds of warehouse are checked
    conn = psycopg2.connect(stack.warehouse_dsn)
    files = {t: DuckDBConnection(str(p), read_only=True) for t, p in duck.items()}
    with conn.cursor() as cur:
        cur.execute("SELECT table_schema, table_name FROM information_schema.tables WHERE "
                    "table_schema LIKE %s AND table_name NOT LIKE '\\_sdc\\_%%'",
                    (unique + "%",))
        found = {(s[len(unique) + 1:], t) for s, t in cur.fetchall()}
        for tenant, db in files.items():
            dcur = db.cursor()
            dcur.execute("SELECT table_name FROM information_schema.tables WHERE "
                         "table_catalog = current_database() AND table_schema = %s AND "
                         "table_name NOT LIKE '\\_sdc\\_%%' ESCAPE '\\'",
                         (f"{unique}_{tenant}",))
            found |= {(tenant, t) for (t,) in dcur.fetchall()}
        assert found == set(expected)
        for (tenant, table), exp in sorted(expected.items()):
            schema = f"{unique}_{tenant}"
            cur = files[tenant].cursor() if tenant in files else conn.cursor()
            depth = 1 if "__" in table else 0
            got = rows_from_warehouse(cur, schema, table, depth)
            want = sorted((rid, lv, {p: canonical(v) for p, v in d.items()})
                          for rid, lv, d in exp["rows"])
            got = sorted((rid, lv, {p: canonical(v) for p, v in d.items()})
                         for rid, lv, d in got)
            assert len(got) == len(want), f"{schema}.{table}: {len(got)} rows, want {len(want)}"
            assert got == want, f"{schema}.{table} differs from the reference model"
            # every field path owns the column its name derives from; drifted types get
            # suffixed columns beside it
            cur.execute(f'SELECT source, json_type, column_name FROM "{schema}"."_sdc_columns" '
                        "WHERE table_name = %s", (table,))
            by_path: dict = {}
            for source, json_type, col in cur.fetchall():
                by_path.setdefault(tuple(eval_path(source)), {})[json_type] = col
            for path in exp["paths"]:
                base = "__".join(norm(p) for p in path)
                assert base in by_path[path].values(), (table, path, by_path[path])
                assert all(c == base or c.startswith(base + "__") for c in
                           by_path[path].values())
        # the rejected records of every tenant are in its _sdc_rejected table
        for tenant, n in corpus.rejected_by_tenant(messages).items():
            cur = files[tenant].cursor() if tenant in files else conn.cursor()
            cur.execute(f'SELECT count(*) FROM "{unique}_{tenant}"."_sdc_rejected"')
            assert cur.fetchone()[0] == n
    conn.close()
    for db in files.values():
        db.close()


def eval_path(source: str):
    import json

    return json.loads(source)


@pytest.fixture
def spooled_small(stack, make_topic, ledger_dsn, unique, tmp_path):
    """5,000 records spooled once into a ledger; returns (messages, ids, env, ledger dsn)."""
    messages = corpus.generate(5_000, tenants=4, streams=6, invalid_ratio=0.01, seed=9)
    topic = make_topic(partitions=3)
    register(ledger_dsn, corpus.tenants_of(messages), f"{unique}_a")
    ids = corpus.produce(stack.kafka_bootstrap, topic, messages, 3)
    env = job_env(stack, ledger_dsn)
    run_spool_job([f"--topic={topic}", f"--consumer_group={unique}",
                   f"--spool_location={tmp_path / 'spool'}", "--batch_max_rows=300",
                   f"--max_message_bytes={corpus.TOO_LARGE_LIMIT}"], env)
    return messages, ids, env


def copy_ledger(src_dsn: str, dst_dsn: str, tenants, schema_prefix: str, **destination) -> None:
    """The same READY batches in a second ledger whose tenants load into other schemas
    (``destination``: register()'s arguments)."""
    register(dst_dsn, tenants, schema_prefix, **destination)
    src = psycopg2.connect(src_dsn)
    dst = psycopg2.connect(dst_dsn)
    with src.cursor() as s, dst, dst.cursor() as d:
        s.execute("SELECT * FROM batches")
        cols = [c[0] for c in s.description]
        rows = s.fetchall()
        placeholders = ", ".join(["%s"] * len(cols))
        d.executemany(f"INSERT INTO batches ({', '.join(cols)}) VALUES ({placeholders})",
                      [tuple(psycopg2.extras.Json(v) if isinstance(v, dict | list) and
                             c not in ("key_names",) else v for c, v in zip(cols, r, strict=True))
                       for r in rows])
    src.close()
    dst.close()


@pytest.fixture
def second_ledger(stack, unique):
    with private_schema(stack.ledger_dsn, f"{unique}_l2") as name:
        yield search_path_dsn(stack.ledger_dsn, name)


def test_ten_kills_at_injected_points_leave_the_same_warehouse(
        stack, spooled_small, ledger_dsn, second_ledger, unique, drop_schemas):
    messages, _ids, env = spooled_small
    drop_schemas(f"{unique}_a")
    drop_schemas(f"{unique}_b")
    tenants = corpus.tenants_of(messages)
    copy_ledger(ledger_dsn, second_ledger, tenants, f"{unique}_b")

    clean = run_loader(env, "--load_max_rows=2000")
    assert clean.returncode == 0, clean.stderr[-3000:]

    env_b = dict(env, SPOOL_LEDGER_DSN=second_ledger)
    # DDL happens only in a table's first load: those kills come first
    points = ["load.ddl", "load.copy", "load.ddl", "load.after_commit", "load.before_commit"]
    rng = random.Random(4)
    kills, runs = 0, 0
    while kills < 10 and runs < 30:
        point = points[min(kills, len(points) - 1)] if kills < 3 else \
            rng.choice(points[1:])
        # one batch per transaction: many commits to die between
        res = run_loader(env_b, "--load_max_rows=1", "--lease_seconds=1",
                         failpoints=f"{point}={rng.randint(1, 3)}")
        runs += 1
        if res.returncode == -signal.SIGKILL:
            kills += 1
        else:
            assert res.returncode == 0, res.stderr[-3000:]
        wait_for("the dead loader's leases to expire",
                 lambda: not leases_held(second_ledger), 10, interval=0.2)
    assert kills == 10, f"only {kills} kills in {runs} runs"

    def finished():
        res = run_loader(env_b, "--lease_seconds=1")
        assert res.returncode == 0, res.stderr[-3000:]
        return set(batch_states(second_ledger)) == {"LOADED"}

    wait_for("every batch LOADED after the kills", finished, 120, interval=1.5)
    diff = differences(snapshot(stack, f"{unique}_b"), snapshot(stack, f"{unique}_a"))
    assert not diff, diff
    assert load_log_counts(stack, f"{unique}_b") == load_log_counts(stack, f"{unique}_a")
    # a load whose loader died after the warehouse commit still reached the ledger's reports
    # (the retry found it committed and handed its report on)
    in_warehouse = reported_batches(stack, f"{unique}_b")
    assert in_warehouse and in_warehouse <= ledger_reported_batches(second_ledger)


def reported_batches(stack, prefix) -> set[str]:
    conn = psycopg2.connect(stack.warehouse_dsn)
    out: set[str] = set()
    with conn.cursor() as cur:
        for schema in schemas_of(stack, prefix):
            cur.execute(f'SELECT batch_ids FROM "{schema}"."_sdc_loads"')
            out.update(b for (ids,) in cur.fetchall() for b in json.loads(ids))
    conn.close()
    return out


def ledger_reported_batches(ledger_dsn) -> set[str]:
    conn = psycopg2.connect(ledger_dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT DISTINCT unnest(batch_ids) FROM load_reports")
        out = {r[0] for r in cur.fetchall()}
    conn.close()
    return out


def leases_held(ledger_dsn) -> int:
    conn = psycopg2.connect(ledger_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM batches WHERE state = 'LOADING' "
                        "AND lease_expires_at > now()")
            return cur.fetchone()[0]
    finally:
        conn.close()


def load_log_counts(stack, prefix) -> Counter:
    conn = psycopg2.connect(stack.warehouse_dsn)
    counts: Counter = Counter()
    with conn.cursor() as cur:
        for schema in schemas_of(stack, prefix):
            cur.execute(f'SELECT batch_id FROM "{schema}"."_sdc_load_log"')
            counts.update(r[0] for r in cur.fetchall())
    conn.close()
    assert all(n == 1 for n in counts.values()), "a batch is in a load log twice"
    return counts


def test_two_loaders_side_by_side_equal_one(stack, spooled_small, ledger_dsn, second_ledger,
                                            unique, drop_schemas):
    messages, _ids, env = spooled_small
    drop_schemas(f"{unique}_a")
    drop_schemas(f"{unique}_b")
    copy_ledger(ledger_dsn, second_ledger, corpus.tenants_of(messages),
                f"{unique}_b")
    assert run_loader(env).returncode == 0
    env_b = dict(env, SPOOL_LEDGER_DSN=second_ledger)
    procs = [subprocess.Popen([sys.executable, "-m", "pipelines.loader_job",
                               "--load_max_batches=3"], cwd=ROOT, env=env_b,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    if set(batch_states(second_ledger)) != {"LOADED"}:
        assert run_loader(env_b).returncode == 0
    assert set(batch_states(second_ledger)) == {"LOADED"}
    diff = differences(snapshot(stack, f"{unique}_b"), snapshot(stack, f"{unique}_a"))
    assert not diff, diff
    assert load_log_counts(stack, f"{unique}_b") == load_log_counts(stack, f"{unique}_a")


def test_an_unreachable_warehouse_delays_only_its_tenant(stack, spooled_small, ledger_dsn,
                                                         unique, drop_schemas, tmp_path):
    messages, ids, env = spooled_small
    drop_schemas(f"{unique}_a")
    tenants = sorted(corpus.tenants_of(messages))
    away = tenants[0]
    subprocess.run([sys.executable, str(ROOT / "scripts/stack.py"), "start", "postgres2"],
                   check=True, capture_output=True)
    register(ledger_dsn, [away], f"{unique}_a", dsn_env="SPOOL_WAREHOUSE2_DSN")
    subprocess.run([sys.executable, str(ROOT / "scripts/stack.py"), "stop", "postgres2"],
                   check=True, capture_output=True)
    log = open(tmp_path / "loader.log", "wb")  # noqa: SIM115 - closed below
    port = free_port()
    loader = subprocess.Popen([sys.executable, "-m", "pipelines.loader_job", "--mode=follow",
                               "--poll_seconds=1", "--retry_base_seconds=1",
                               "--retry_cap_seconds=2", "--connect_timeout=2",
                               f"--metrics_port={port}"], cwd=ROOT,
                              env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        def others_loaded():
            conn = psycopg2.connect(env["SPOOL_LEDGER_DSN"])
            with conn.cursor() as cur:
                cur.execute("SELECT tenant_id, state, count(*) FROM batches WHERE tenant_id "
                            "<> '_unassigned' GROUP BY 1, 2")
                rows = cur.fetchall()
            conn.close()
            others = {s for t, s, _ in rows if t != away}
            mine = {s for t, s, _ in rows if t == away}
            return others == {"LOADED"} and "LOADED" not in mine and mine

        mine = wait_for("the other tenants loaded while one warehouse is down",
                        others_loaded, 120, interval=1)
        assert mine <= {"READY", "LOADING"}
        subprocess.run([sys.executable, str(ROOT / "scripts/stack.py"), "start", "postgres2"],
                       check=True, capture_output=True)
        wait_for("the returned warehouse's batches loaded",
                 lambda: set(batch_states(env["SPOOL_LEDGER_DSN"])) == {"LOADED"}, 120,
                 interval=1)
        # the follow-mode loader tells Prometheus what it did, retries included
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        text = scraped.decode()
        assert f'spool_loader_batches_total{{outcome="retry",tenant="{away}"}}' in text
        assert f'spool_loader_rows_loaded_total{{tenant="{away}"}}' in text
        # and what the ledger says, for every loader together
        assert "spool_ledger_up 1.0" in text
        assert f'spool_batches{{state="READY",tenant="{away}"}} 0.0' in text
        assert f'spool_ledger_rows_loaded_total{{tenant="{away}"}}' in text
    finally:
        kill(loader, signal.SIGTERM, timeout=60)
        log.close()
    expected = expected_tables(messages, ids)
    conn = psycopg2.connect(stack.warehouse2_dsn)
    with conn.cursor() as cur:
        for (tenant, table), exp in expected.items():
            if tenant != away:
                continue
            cur.execute(f'SELECT count(*) FROM "{unique}_a_{away}"."{table}"')
            assert cur.fetchone()[0] == len(exp["rows"]), table
        cur.execute(f'SELECT batch_id, count(*) FROM "{unique}_a_{away}"."_sdc_load_log" '
                    "GROUP BY 1 HAVING count(*) > 1")
        assert cur.fetchall() == []
        cur.execute(f'DROP SCHEMA "{unique}_a_{away}" CASCADE')
    conn.commit()
    conn.close()
    subprocess.run([sys.executable, str(ROOT / "scripts/stack.py"), "stop", "postgres2"],
                   check=True, capture_output=True)


def test_a_misconfigured_destination_fails_its_batches_at_once(stack, spooled_small, ledger_dsn,
                                                               unique, drop_schemas):
    """A tenant whose dsn reference cannot be resolved: its batches end FAILED with a reason
    that names the missing variable; the other tenants load."""
    messages, _ids, env = spooled_small
    drop_schemas(f"{unique}_a")
    broken = sorted(corpus.tenants_of(messages))[0]
    register(ledger_dsn, [broken], f"{unique}_a", dsn_env=f"SPOOL_UNSET_{unique.upper()}")
    res = run_loader(env, "--load_max_rows=100000")
    # the drain tells, in one line, and ends with 1: its batches did not load
    assert res.returncode == 1, res.stderr[-3000:]
    (line,) = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert line.startswith(f"error: tenant {broken}: ") and " FAILED: " in line, line
    assert f"SPOOL_UNSET_{unique.upper()} is not set" in line, line
    rows = ledger_rows(ledger_dsn, "SELECT tenant_id = %s, state, last_error FROM batches "
                                   "WHERE tenant_id <> '_unassigned'", broken)
    mine = [(state, error) for is_broken, state, error in rows if is_broken]
    assert len(mine) > 1 and {s for s, _ in mine} == {"FAILED"}
    assert all(f"SPOOL_UNSET_{unique.upper()}" in error for _, error in mine)
    assert {state for is_broken, state, _ in rows if not is_broken} == {"LOADED"}


def test_a_following_loader_loads_batches_as_soon_as_they_are_recorded(
        stack, make_topic, ledger_dsn, unique, drop_schemas, tmp_path):
    """The spool job announces the batches it records; a following loader whose next poll is
    an hour away loads them, exactly as a drain would."""
    messages = corpus.generate(2_000, tenants=2, streams=3, invalid_ratio=0.0, seed=13)
    topic = make_topic(partitions=3)
    drop_schemas(f"{unique}_a")
    register(ledger_dsn, corpus.tenants_of(messages), f"{unique}_a")
    env = job_env(stack, ledger_dsn)
    app = "spool-loader-listen"

    def listening():
        conn = psycopg2.connect(ledger_dsn)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                        "AND datname = current_database()", (app,))
            n = cur.fetchone()[0]
        conn.close()
        return n > 0

    log = open(tmp_path / "loader.log", "wb")  # noqa: SIM115 - closed below
    loader = subprocess.Popen([sys.executable, "-m", "pipelines.loader_job", "--mode=follow",
                               "--poll_seconds=3600", "--metrics_port=0"], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # it listens once its first look at the (empty) ledger has gone out
        wait_for("the loader listening on the ledger", listening, 120)
        ids = corpus.produce(stack.kafka_bootstrap, topic, messages, 3)
        run_spool_job([f"--topic={topic}", f"--consumer_group={unique}",
                       f"--spool_location={tmp_path / 'spool'}", "--batch_max_rows=300"], env)
        assert sum(batch_states(ledger_dsn).values()) > 0
        wait_for("every batch loaded without a poll",
                 lambda: set(batch_states(ledger_dsn)) == {"LOADED"}, 120)
    finally:
        kill(loader, signal.SIGTERM, timeout=60)
        log.close()
    conn = psycopg2.connect(stack.warehouse_dsn)
    with conn.cursor() as cur:
        for (tenant, table), exp in expected_tables(messages, ids).items():
            cur.execute(f'SELECT count(*) FROM "{unique}_a_{tenant}"."{table}"')
            assert cur.fetchone()[0] == len(exp["rows"]), (tenant, table)
    conn.close()
