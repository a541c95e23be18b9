"""The loader job into Snowflake end to end: tenants registered as Snowflake destinations,
the loader as its own process speaking the real Snowflake connector's HTTP protocol to a
fakesnow server (an emulator: docs/warehouse-contract.md says what it cannot check).

Kills are not tested here: fakesnow runs a MERGE as several statements around a temporary
table, which its emulation commits (and DuckDB cannot write in the same transaction as the
tenant's tables), so a load killed after its MERGE would leave rows Snowflake would not. A
load killed after its DDL, Snowflake's own departure from one transaction, is tested in
tests/integration/test_loader_snowflake.py; the rest is the opt-in live test's.
"""

from __future__ import annotations

import warnings
from collections import Counter

import fakesnow
import pytest

from spool.warehouse.snowflake_session import SnowflakeConnection
from tests import corpus
from tests.e2e.test_loader import (
    batch_states,
    copy_ledger,
    differences,
    register,
    run_loader,
    second_ledger,  # noqa: F401 - a fixture
    snapshot_schema,
    spooled_small,  # noqa: F401 - a fixture
)

URL_ENV = "SPOOL_TEST_SNOWFLAKE_FAKE_URL"


@pytest.fixture
def snowflake_url(unique):
    """A fakesnow server in this process (a thread); a database of this test's own."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with fakesnow.server() as kw:
            yield (f"snowflake://{kw['user']}:{kw['password']}@{kw['account']}/{unique}"
                   f"?host={kw['host']}&port={kw['port']}&protocol=http"
                   # a statement fakesnow fails with a server error is not retried for long
                   "&network_timeout=30")


def snapshot(url: str, prefix: str) -> dict:
    """Every table of every schema with the prefix (catalog tables left out), the columns
    the change log says each table got, and per root table the rows its load reports add up
    to (checked against the table)."""
    conn = SnowflakeConnection(url, application="spool-test")
    out = {}
    with conn:
        cur = conn.cursor()
        cur.execute("SELECT schema_name FROM information_schema.schemata "
                    "WHERE schema_name LIKE %s", (prefix + "%",))
        for (schema,) in sorted(cur.fetchall()):
            snapshot_schema(cur, schema, schema[len(prefix):], out)
        cur.execute("SELECT table_schema FROM information_schema.tables WHERE table_schema "
                    "LIKE %s AND table_name = '_sdc_load_log'", (prefix + "%",))
        logged: Counter = Counter()
        for (schema,) in cur.fetchall():
            cur.execute(f'SELECT batch_id FROM "{schema}"."_sdc_load_log"')
            logged.update(b for (b,) in cur.fetchall())
    conn.close()
    assert logged and all(n == 1 for n in logged.values()), "a batch is in a load log twice"
    out[("", "_sdc_load_log")] = sorted(logged)
    return out


def test_the_loader_job_loads_snowflake_tenants_alike_in_one_load_or_one_per_batch(
        spooled_small, ledger_dsn, second_ledger, unique, snowflake_url):  # noqa: F811
    """Tenants on Snowflake, loaded by the loader job once with every batch in one load
    (new tables, rows copied straight in) and once one batch per load (every later batch
    merged through the stage, counted with queries): the same tables, rows, change log and
    reports that add up, each batch in one load log once."""
    messages, _ids, env = spooled_small
    tenants = corpus.tenants_of(messages)
    snowflake = {t: "snowflake" for t in tenants}
    register(ledger_dsn, tenants, f"{unique}_a", dsn_env=URL_ENV, kinds=snowflake)
    copy_ledger(ledger_dsn, second_ledger, tenants, f"{unique}_b", dsn_env=URL_ENV,
                kinds=snowflake)
    env = dict(env, **{URL_ENV: snowflake_url})

    whole = run_loader(env, "--load_max_rows=100000")
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert set(batch_states(ledger_dsn)) == {"LOADED"}
    one_by_one = run_loader(dict(env, SPOOL_LEDGER_DSN=second_ledger), "--load_max_rows=1")
    assert one_by_one.returncode == 0, one_by_one.stderr[-3000:]
    assert set(batch_states(second_ledger)) == {"LOADED"}

    merged = snapshot(snowflake_url, f"{unique}_b")
    assert len(merged) > 10
    diff = differences(merged, snapshot(snowflake_url, f"{unique}_a"))
    assert not diff, diff
