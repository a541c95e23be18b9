"""Both jobs report what they did through Beam metrics, readable from the job result."""

from __future__ import annotations

from pipelines import loader_job, spool_job
from pipelines.common import job_metrics
from tests import corpus
from tests.e2e.jobs import register_tenants


def test_spool_and_loader_metrics_from_the_job_results(stack, make_topic, ledger_dsn, unique,
                                                       tmp_path, pg_schema, monkeypatch):
    messages = corpus.generate(600, tenants=2, streams=2, invalid_ratio=0.05, seed=1)
    topic = make_topic(partitions=2)
    register_tenants(ledger_dsn, corpus.tenants_of(messages))
    corpus.produce(stack.kafka_bootstrap, topic, messages, 2)
    for k, v in stack.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("SPOOL_LEDGER_DSN", ledger_dsn)
    result = spool_job.run([f"--topic={topic}", f"--consumer_group={unique}",
                            f"--spool_location={tmp_path}",
                            f"--max_message_bytes={corpus.TOO_LARGE_LIMIT}"])
    got = job_metrics(result)
    rejected = sum(v for k, v in got.items() if k.startswith("spool.rejected:"))
    assert got["spool:records_read"] == 600
    assert rejected == sum(m.expect != "valid" for m in messages) > 0
    assert got["spool:batches_written"] >= 4 and got["spool:bytes_written"] > 0

    from spool.ledger.registry import Registry
    from spool.ledger.store import Ledger

    ledger = Ledger(ledger_dsn)
    for t in corpus.tenants_of(messages):
        Registry(ledger).add_tenant(t, "postgres", {"dsn": "env:SPOOL_WAREHOUSE_DSN"},
                                    f"{pg_schema}_{t}")
    ledger.close()
    result = loader_job.run([])
    got = job_metrics(result)
    assert got["spool.loader:batches_loaded"] >= 4
    assert got["spool.loader:rows_loaded"] > 600
    assert got["spool.loader:load_ms.count"] >= 1
