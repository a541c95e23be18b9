"""The spool job as a user starts it, pointed at a topic or broker that is not there: one line
that says what to do, before any pipeline is launched."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.jobs import ROOT, job_env

JOB = [sys.executable, "-m", "pipelines.spool_job", "--mode=drain"]


def run_job(env, *args, timeout: float):
    """The job's process; ``timeout`` is the bound a user waits at most (exceeding it fails)."""
    return subprocess.run([*JOB, *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=timeout, check=False)


def test_a_missing_topic_ends_the_job_before_launch_naming_how_to_create_it(
        stack, ledger_dsn, unique):
    # the bound: the job must have answered within 10 s (it used to take 66 s and a
    # traceback). It answers in 1-3 s, imports included; 5 s left too little room beside a
    # busy broker and database on two cores
    res = run_job(job_env(stack, ledger_dsn), f"--topic={unique}", timeout=10)
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        f"error: topic '{unique}' does not exist on Kafka at {stack.kafka_bootstrap} (the broker "
        "does not create topics on first use); create it with "
        f"'spool topics create {unique}'"]


def test_an_unreachable_broker_ends_the_job_in_one_line(stack, ledger_dsn, unique):
    res = run_job(job_env(stack, ledger_dsn), f"--topic={unique}",
                  "--kafka_bootstrap=127.0.0.1:1", timeout=30)
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        "error: cannot reach Kafka at 127.0.0.1:1: no broker answered within 5 s; check that "
        "it runs and that --kafka_bootstrap (or $SPOOL_KAFKA_BOOTSTRAP) names it"]
