"""Records that reach their window after it closed are batched in a later pane, never lost.

A failpoint holds one partition's reader for a few seconds between its poll and its chunk,
as a slow broker or a starved bundle would, while the other partitions read on. With each
reader reporting its own watermark (``--watermark_scope=partition``), Prism lets the
watermark pass the held records: their windows close before they arrive. The job must spool
every one of them exactly once (in later panes when they come after their window closed)
and commit no offset past a record before its batch is in the ledger.
"""

from __future__ import annotations

import signal
import threading
import time

from tests import corpus
from tests.e2e.jobs import (
    committed_offsets,
    job_env,
    kill,
    register_tenants,
    spooled,
    start_spool_job,
    store,
    wait_for,
)

PARTITIONS = 3


def test_records_held_back_past_their_window_are_spooled_in_a_late_pane(
        stack, prism, make_topic, ledger_dsn, unique, tmp_path):
    topic = make_topic(partitions=PARTITIONS)
    messages = corpus.generate(4_000, tenants=3, streams=3, invalid_ratio=0.0, seed=27)
    register_tenants(ledger_dsn, corpus.tenants_of(messages))
    env = job_env(stack, ledger_dsn)
    env["SPOOL_STALLS"] = "read.partition.1=8@3"  # partition 1's third chunk waits 8 s
    objects = store(stack)
    log = tmp_path / "job.log"
    job = start_spool_job(
        [f"--topic={topic}", f"--consumer_group={unique}",
         f"--spool_location={tmp_path / 'spool'}", "--mode=streaming", "--batch_seconds=1",
         "--watermark_scope=partition", "--read_chunk_records=100", "--log_level=INFO",
         # windows keep their state past the stall, so a held part is known to be late
         "--allowed_lateness_seconds=60",
         "--metrics_port=0"], env, log)
    ids: list[str] = []
    try:
        wait_for("the job reading its partitions",
                 lambda: log.read_text().count("to the end of time") == PARTITIONS, 60)

        def feed():
            for i in range(0, len(messages), 200):
                ids.extend(corpus.produce(stack.kafka_bootstrap, topic, messages[i:i + 200],
                                          PARTITIONS))
                time.sleep(0.5)

        producer = threading.Thread(target=feed)
        producer.start()
        producer.join()
        wait_for("every record spooled",
                 lambda: len(spooled(ledger_dsn, objects)) >= len(ids), 120, interval=2)
        wait_for("every offset committed",
                 lambda: sum((c or 0) for c in committed_offsets(
                     stack.kafka_bootstrap, topic, unique, PARTITIONS).values()) == len(ids),
                 60, interval=1)
    finally:
        kill(job, signal.SIGTERM, timeout=60)
    found = spooled(ledger_dsn, objects)
    assert set(found) == set(ids)
    assert all(len(places) == 1 for places in found.values())
    # whether a held part reached its window after that stream's timer fired depends on
    # Prism's scheduling; the late pane itself is pinned by tests/unit/test_batching_streaming
