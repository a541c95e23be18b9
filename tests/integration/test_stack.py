"""The local stack itself: loopback only, and a SIGKILLed broker comes back with its data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.conftest import STACK


def listening_sockets() -> list[tuple[str, int]]:
    """(address, port) of every LISTEN socket, read from /proc like `ss -ltn` does."""
    out = []
    for path, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        with open(path) as fh:
            next(fh)
            for line in fh:
                local, state = line.split()[1], line.split()[3]
                if state != "0A":  # LISTEN
                    continue
                addr_hex, port_hex = local.split(":")
                raw = bytes.fromhex(addr_hex)
                if v6:
                    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
                    raw = b"".join(words)
                    if raw[:12] == b"\0" * 10 + b"\xff\xff":
                        addr = ".".join(str(b) for b in raw[12:])
                    else:
                        addr = raw.hex()
                else:
                    addr = ".".join(str(b) for b in raw[::-1])
                out.append((addr, int(port_hex, 16)))
    return out


def test_services_listen_on_loopback_only(stack):
    ports = {int(stack.kafka_bootstrap.rsplit(":", 1)[1]),
             int(stack.kafka_bootstrap.rsplit(":", 1)[1]) + 1,  # KRaft controller
             int(stack.ledger_dsn.rsplit(":", 1)[1].split("/")[0]),
             int(stack.s3_endpoint.rsplit(":", 1)[1])}
    found = [(a, p) for a, p in listening_sockets() if p in ports]
    assert {p for _, p in found} == ports, f"not all services listen: {found}"
    assert all(a == "127.0.0.1" for a, _ in found), found


def status() -> dict:
    out = subprocess.run([*STACK, "status", "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_sigkilled_broker_restarts_through_the_script_with_its_data(stack, make_topic):
    topic = make_topic(partitions=1)
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    for i in range(100):
        producer.send(topic, f"before-kill-{i}".encode())
    producer.flush()
    producer.close()

    pid = status()["kafka"]["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while status()["kafka"]["running"]:
        assert time.monotonic() < deadline, "broker still reported running after SIGKILL"
        time.sleep(0.2)

    subprocess.run([*STACK, "start", "kafka"], check=True, capture_output=True)
    assert status()["kafka"]["pid"] not in (None, pid)

    consumer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < 100 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            got.extend(r.value for r in records)
    consumer.close()
    assert got == [f"before-kill-{i}".encode() for i in range(100)]
