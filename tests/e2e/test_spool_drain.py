"""The spool job in drain mode on 200,000 mixed records: every record lands exactly once."""

from __future__ import annotations

from collections import Counter

from tests import corpus
from tests.e2e.jobs import (
    committed_offsets,
    job_env,
    register_tenants,
    run_spool_job,
    spooled,
    store,
)

PARTITIONS = 6


def test_200k_records_each_in_exactly_one_batch_or_rejected_with_its_reason(
        stack, make_topic, ledger_dsn, s3_prefix, unique):
    messages = corpus.generate(200_000, tenants=50, streams=20)
    kinds = Counter(m.expect for m in messages)
    assert all(kinds[k] > 200 for k in corpus.INVALID_KINDS), kinds  # ~1 % of every kind
    topic = make_topic(partitions=PARTITIONS)
    register_tenants(ledger_dsn, corpus.tenants_of(messages))
    ids = corpus.produce(stack.kafka_bootstrap, topic, messages, PARTITIONS)
    location = f"s3://{stack.s3_bucket}/{s3_prefix}spool"

    run_spool_job([f"--topic={topic}", f"--consumer_group={unique}",
                   f"--spool_location={location}", f"--max_message_bytes={corpus.TOO_LARGE_LIMIT}",
                   "--batch_max_rows=20000"], job_env(stack, ledger_dsn))

    found = spooled(ledger_dsn, store(stack))
    assert len(found) == len(messages)
    for rid, message in zip(ids, messages, strict=True):
        places = found.get(rid)
        assert places is not None, f"{rid} ({message.expect}) is in no batch"
        assert len(places) == 1, f"{rid} is in {len(places)} batches"
        (_batch, tenant, stream, code), = places
        if message.expect == "valid":
            assert (tenant, stream, code) == (message.tenant, message.stream, None)
        else:
            assert stream == "_sdc_rejected" and code == message.expect, (rid, places)
    # the consumer group now points past everything that was spooled
    assert committed_offsets(stack.kafka_bootstrap, topic, unique, PARTITIONS) == {
        p: sum(1 for i in range(len(messages)) if i % PARTITIONS == p)
        for p in range(PARTITIONS)}


def test_rerun_after_drain_reads_nothing_new(stack, make_topic, ledger_dsn, unique, tmp_path):
    messages = corpus.generate(2_000, tenants=3, streams=4, invalid_ratio=0)
    topic = make_topic(partitions=2)
    register_tenants(ledger_dsn, corpus.tenants_of(messages))
    corpus.produce(stack.kafka_bootstrap, topic, messages, 2)
    args = [f"--topic={topic}", f"--consumer_group={unique}",
            f"--spool_location={tmp_path / 'spool'}"]
    env = job_env(stack, ledger_dsn)
    run_spool_job(args, env)
    first = spooled(ledger_dsn, store(stack))
    run_spool_job(args, env)
    assert spooled(ledger_dsn, store(stack)) == first
    assert sum(len(v) for v in first.values()) == 2_000


def test_jobs_over_disjoint_partitions_share_a_topic_and_a_group(stack, make_topic, ledger_dsn,
                                                                 unique, tmp_path):
    """--partitions=0,2 reads those partitions only; a second job over the rest, in the same
    consumer group, spools the others: together every record once."""
    import subprocess
    import sys

    from tests.e2e.jobs import ROOT

    messages = corpus.generate(3_000, tenants=3, streams=3, invalid_ratio=0)
    topic = make_topic(partitions=3)
    register_tenants(ledger_dsn, corpus.tenants_of(messages))
    ids = corpus.produce(stack.kafka_bootstrap, topic, messages, 3)
    args = [f"--topic={topic}", f"--consumer_group={unique}",
            f"--spool_location={tmp_path / 'spool'}"]
    env = job_env(stack, ledger_dsn)
    run_spool_job([*args, "--partitions=0,2"], env)
    first = spooled(ledger_dsn, store(stack))
    assert set(first) == {rid for rid in ids if rid.rsplit("/", 2)[1] in ("0", "2")}
    assert committed_offsets(stack.kafka_bootstrap, topic, unique, 3)[1] is None
    run_spool_job([*args, "--partitions=1"], env)
    found = spooled(ledger_dsn, store(stack))
    assert set(found) == set(ids)
    assert all(len(places) == 1 for places in found.values())
    # a partition list that is not one is named, before anything is read (a flag's mistake)
    res = subprocess.run([sys.executable, "-m", "pipelines.spool_job", *args, "--partitions=1,x"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 2 and "--partitions=1,x" in res.stderr
