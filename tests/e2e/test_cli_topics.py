"""``spool topics`` and ``spool produce`` against the real broker, which creates no topic on
first use: a missing topic or a dead broker is one line that says what to do, at once."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import pytest
from kafka.admin import KafkaAdminClient

from tests.e2e.jobs import ROOT

SPOOL = [sys.executable, "-m", "spool.cli"]
# a bound for a command that should answer at once; passing it fails the test, never slows it
QUICK = 30


def spool(env, *args, stdin: bytes = b""):
    return subprocess.run([*SPOOL, *args], input=stdin, capture_output=True, env=env,
                          cwd=ROOT, timeout=QUICK, check=False)


@pytest.fixture
def env(stack):
    return dict(os.environ, **stack.env)


@pytest.fixture
def topic_name(stack, unique):
    """A topic name nobody has created; the topic is deleted afterwards if a test made it."""
    yield unique
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    with contextlib.suppress(Exception):
        admin.delete_topics([unique])
    admin.close()


ENVELOPES = b'{"tenant":"a","stream":"s","data":{"i":1}}\n{"tenant":"a","stream":"s","data":{}}\n'


def test_produce_to_a_missing_topic_names_it_and_the_command_that_creates_it(env, topic_name):
    res = spool(env, "produce", "--topic", topic_name, stdin=ENVELOPES)
    err = res.stderr.decode()
    assert res.returncode == 1
    assert err.splitlines() == [
        f"error: topic '{topic_name}' does not exist on Kafka at {env['SPOOL_KAFKA_BOOTSTRAP']} "
        "(the broker does not create topics on first use); create it with "
        f"'spool topics create {topic_name}'; 0 messages delivered, 2 not delivered"]
    assert "Traceback" not in err and "KafkaTimeoutError" not in err


def test_a_created_topic_is_listed_with_its_partitions_and_retention_and_takes_messages(
        env, topic_name):
    res = spool(env, "topics", "create", topic_name, "--partitions", "2",
                "--retention-hours", "36")
    assert (res.returncode, res.stdout.decode()) == (
        0, f"topic '{topic_name}' created: 2 partition(s), retention 36h\n"), res.stderr

    listed = spool(env, "topics", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.decode().splitlines()]
    assert {"topic": topic_name, "partitions": 2, "retention_ms": 36 * 3_600_000} in rows
    text = spool(env, "topics", "list").stdout.decode().splitlines()
    assert text[0].split() == ["topic", "partitions", "retention"]
    assert [topic_name, "2", "36h"] in [line.split() for line in text]

    again = spool(env, "topics", "create", topic_name)
    assert again.returncode == 1
    assert again.stderr.decode() == (
        f"error: topic '{topic_name}' already exists on Kafka at "
        f"{env['SPOOL_KAFKA_BOOTSTRAP']}; 'spool topics list' shows its partitions and "
        "retention\n")

    sent = spool(env, "produce", "--topic", topic_name, stdin=ENVELOPES)
    assert (sent.returncode, sent.stdout.decode()) == (
        0, f"2 message(s) delivered to {topic_name}\n"), sent.stderr


def test_retention_forever_and_a_bad_name_or_count(env, topic_name):
    res = spool(env, "topics", "create", topic_name, "--partitions", "1", "--retention-ms", "-1")
    assert (res.returncode, res.stdout.decode()) == (
        0, f"topic '{topic_name}' created: 1 partition(s), retention forever\n"), res.stderr
    bad = spool(env, "topics", "create", "no spaces")
    assert bad.returncode == 2
    assert bad.stderr.decode().splitlines()[-1] == (
        "spool topics create: error: argument topic: topic name 'no spaces' is not valid: use "
        "1 to 249 letters, digits, '.', '_' or '-'")
    zero = spool(env, "topics", "create", topic_name + "x", "--partitions", "0")
    assert zero.returncode == 2 and "--partitions: '0': give a whole number of 1 or more" in \
        zero.stderr.decode()


@pytest.mark.parametrize("command", [["topics", "list"], ["topics", "create", "t"],
                                     ["produce", "--topic", "t"]], ids=" ".join)
def test_an_unreachable_broker_is_one_line(env, command):
    res = spool(env, *command, "--bootstrap", "127.0.0.1:1", "--timeout", "1", stdin=ENVELOPES)
    err = res.stderr.decode()
    assert res.returncode == 1
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: cannot reach Kafka at 127.0.0.1:1: no broker answered within "
                          "1 s; check that it runs and that --bootstrap (or "
                          "$SPOOL_KAFKA_BOOTSTRAP) names it")
