"""The spool job in streaming mode on Prism: batches appear while it runs; kills lose nothing."""

from __future__ import annotations

import random
import signal
import threading
import time

from tests import corpus
from tests.e2e.jobs import (
    batches,
    committed_offsets,
    job_env,
    kill,
    register_tenants,
    spooled,
    start_spool_job,
    store,
    wait_for,
)

WINDOW_S = 5


def streaming_args(topic, group, spool_dir, window=WINDOW_S):
    return [f"--topic={topic}", f"--consumer_group={group}", f"--spool_location={spool_dir}",
            "--mode=streaming", f"--batch_seconds={window}", "--log_level=INFO",
            "--metrics_port=0"]  # a developer's own spool job may hold the default port


def test_batches_appear_while_running_and_stop_keeps_the_same_records(
        stack, prism, make_topic, ledger_dsn, unique, tmp_path):
    topic = make_topic(partitions=3)
    messages = corpus.generate(3_000, tenants=4, streams=3, invalid_ratio=0.02, seed=11)
    register_tenants(ledger_dsn, corpus.tenants_of(messages))
    env = job_env(stack, ledger_dsn)
    objects = store(stack)
    job = start_spool_job(streaming_args(topic, unique, tmp_path / "spool"), env,
                          tmp_path / "job.log")
    try:
        log = tmp_path / "job.log"
        wait_for("the job reading its partitions",
                 lambda: log.read_text().count("to the end of time") == 3, 60)
        first_sent = time.time()
        ids = corpus.produce(stack.kafka_bootstrap, topic, messages[:1_000], 3)
        wait_for("a first batch", lambda: batches(ledger_dsn), WINDOW_S + 10)
        first_batch_at = min(b[6] for b in batches(ledger_dsn)).timestamp()
        assert first_batch_at - first_sent <= WINDOW_S + 10
        ids += corpus.produce(stack.kafka_bootstrap, topic, messages[1_000:2_000], 3)
        time.sleep(1)
        ids += corpus.produce(stack.kafka_bootstrap, topic, messages[2_000:], 3)
        wait_for("every record spooled",
                 lambda: len(spooled(ledger_dsn, objects)) == len(messages), 90, interval=2)
        before = spooled(ledger_dsn, objects)
    finally:
        kill(job, signal.SIGTERM, timeout=60)
    after = spooled(ledger_dsn, objects)
    assert after == before
    assert set(after) == set(ids)
    assert all(len(places) == 1 for places in after.values())
    assert job.returncode == 0, (tmp_path / "job.log").read_text()[-3000:]


def test_sigkill_at_three_moments_loses_nothing(stack, prism, make_topic, ledger_dsn, unique,
                                                tmp_path):
    topic = make_topic(partitions=3)
    messages = corpus.generate(12_000, tenants=5, streams=4, invalid_ratio=0.0, seed=5)
    register_tenants(ledger_dsn, corpus.tenants_of(messages))
    env = job_env(stack, ledger_dsn)
    objects = store(stack)
    ids: list[str] = []

    def feed():
        for i in range(0, len(messages), 500):
            ids.extend(corpus.produce(stack.kafka_bootstrap, topic, messages[i:i + 500], 3))
            time.sleep(0.4)

    producer = threading.Thread(target=feed)
    producer.start()
    rng = random.Random(1)
    in_flight_from: list[dict] = []
    args = streaming_args(topic, unique, tmp_path / "spool", window=2)
    for k in range(3):
        job = start_spool_job(args, env, tmp_path / f"job{k}.log")
        time.sleep(rng.uniform(6, 14))
        kill(job, signal.SIGKILL)
        # whatever the group had not committed at the kill was in flight
        in_flight_from.append(committed_offsets(stack.kafka_bootstrap, topic, unique, 3))
    producer.join()
    job = start_spool_job(args, env, tmp_path / "final.log")
    try:
        wait_for("every record spooled after the kills",
                 lambda: set(spooled(ledger_dsn, objects)) >= set(ids), 120, interval=2)
    finally:
        kill(job, signal.SIGTERM, timeout=60)
    found = spooled(ledger_dsn, objects)
    assert set(found) == set(ids)
    for rid, places in found.items():
        if len(places) > 1:
            _, partition, offset = rid.rsplit("/", 2)
            assert any((c.get(int(partition)) or 0) <= int(offset) for c in in_flight_from), \
                f"{rid} is in {len(places)} batches but was committed before every kill"


def test_a_flood_on_one_tenant_does_not_hold_back_another(stack, prism, make_topic, ledger_dsn,
                                                          unique, tmp_path):
    """The calm tenant's batch delay (ledger time minus window end) with a 100x flood on
    another tenant's stream stays within one batch interval of its delay without it."""
    import json

    from kafka import KafkaProducer

    topic = make_topic(partitions=3)
    register_tenants(ledger_dsn, {"flood", "calm"})
    env = job_env(stack, ledger_dsn)
    log = tmp_path / "job.log"
    job = start_spool_job(streaming_args(topic, unique, tmp_path / "spool"), env, log)
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, linger_ms=20)
    n = 0

    def traffic(seconds: float, flood_per_calm: int) -> tuple[float, float]:
        nonlocal n
        start, end = time.time(), time.time() + seconds
        while time.time() < end:
            for _ in range(20):
                for _ in range(flood_per_calm):
                    producer.send(topic, json.dumps({"tenant": "flood", "stream": "clicks",
                                                     "data": {"n": n, "pad": "x" * 200}}
                                                    ).encode())
                    n += 1
                producer.send(topic, json.dumps({"tenant": "calm", "stream": "orders",
                                                 "data": {"n": n}}).encode())
                n += 1
            producer.flush()
            time.sleep(0.1)
        return start, end

    def calm_delays(start: float, end: float) -> list[float]:
        # windows wholly inside the phase, so each phase is judged on its own traffic
        return [(created - window_end).total_seconds()
                for _b, tenant, *_r, created, window_end in batches(ledger_dsn)
                if tenant == "calm" and start + WINDOW_S <= window_end.timestamp() <= end]

    try:
        wait_for("the job reading its partitions",
                 lambda: log.read_text().count("to the end of time") == 3, 60)
        calm = traffic(16, flood_per_calm=0)
        flood = traffic(25, flood_per_calm=100)
        wait_for("the last flood window's calm batch",
                 lambda: any(w.timestamp() >= flood[1] - WINDOW_S
                             for _b, t, *_r, _c, w in batches(ledger_dsn) if t == "calm"),
                 60, interval=1)
    finally:
        producer.close()
        kill(job, signal.SIGTERM, timeout=60)
    flood_records = sum(b[5] for b in batches(ledger_dsn) if b[1] == "flood")
    assert flood_records > 40_000
    before, during = calm_delays(*calm), calm_delays(*flood)
    assert len(before) >= 2 and len(during) >= 4, (before, during)
    print("calm tenant batch delays (s) before / during the flood:", before, during)
    assert max(during) <= max(before) + WINDOW_S, (before, during)
