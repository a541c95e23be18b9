"""Shared fixtures.

Unit tests need nothing running. Integration and e2e tests share one Kafka broker, one
PostgreSQL and one S3 endpoint per session, started (idempotently) by scripts/stack.py, and
isolate themselves by topic, database schema and bucket prefix.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STACK = [sys.executable, str(ROOT / "scripts" / "stack.py")]


@dataclass(frozen=True)
class Stack:
    kafka_bootstrap: str
    ledger_dsn: str
    warehouse_dsn: str
    warehouse2_dsn: str
    s3_endpoint: str
    s3_bucket: str
    env: dict

    def s3_client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env["AWS_DEFAULT_REGION"],
        )


def stack_cmd(*args: str) -> str:
    return subprocess.run([*STACK, *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The local services, started once per session if they are not running yet."""
    res = subprocess.run([*STACK, "start"], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        pytest.fail(f"local services did not start:\n{res.stderr}")
    env = json.loads(stack_cmd("env", "--json"))
    return Stack(
        kafka_bootstrap=env["SPOOL_KAFKA_BOOTSTRAP"],
        ledger_dsn=env["SPOOL_LEDGER_DSN"],
        warehouse_dsn=env["SPOOL_WAREHOUSE_DSN"],
        warehouse2_dsn=env["SPOOL_WAREHOUSE2_DSN"],
        s3_endpoint=env["SPOOL_S3_ENDPOINT"],
        s3_bucket=env["SPOOL_S3_BUCKET"],
        env=env,
    )


@pytest.fixture
def unique(request) -> str:
    """A short name unique to this test run: letters, digits and underscores."""
    base = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:24]
    return f"t_{base}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_topic(stack, unique):
    """Create topics private to this test; they are deleted afterwards."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    created: list[str] = []

    def make(partitions: int = 3, suffix: str = "") -> str:
        name = f"{unique}{suffix}"
        admin.create_topics([NewTopic(name, partitions, 1)])
        created.append(name)
        return name

    yield make
    with contextlib.suppress(Exception):
        admin.delete_topics(created)
    admin.close()


@contextlib.contextmanager
def private_schema(dsn: str, name: str):
    """A schema that exists for the duration of the block, then is dropped with its tables."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        conn.close()


def search_path_dsn(dsn: str, schema: str) -> str:
    """``dsn`` with ``schema`` first in the search path: a ledger of its own."""
    return f"{dsn}?options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_schema(stack, unique):
    """A schema in the warehouse database private to this test; dropped afterwards."""
    with private_schema(stack.warehouse_dsn, unique) as name:
        yield name


@pytest.fixture
def s3_prefix(stack, unique):
    """A key prefix in the stack's bucket private to this test; its objects are deleted after."""
    prefix = f"tests/{unique}/"
    yield prefix
    s3 = stack.s3_client()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=stack.s3_bucket, Prefix=prefix)
    for page in pages:
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=stack.s3_bucket, Delete={"Objects": keys})


@pytest.fixture
def ledger_dsn(stack, unique):
    """A ledger of its own: a schema in the ledger database, chosen by the DSN's search_path."""
    with private_schema(stack.ledger_dsn, unique) as name:
        yield search_path_dsn(stack.ledger_dsn, name)


@pytest.fixture(scope="session")
def prism():
    """Beam's Prism runner, built once from the Go module proxy (cached under var/)."""
    res = subprocess.run([str(ROOT / "scripts" / "build_prism.sh")], capture_output=True,
                         text=True, check=False)
    if res.returncode != 0:
        pytest.fail(f"could not build Prism:\n{res.stderr}")
    return ROOT / "var" / "bin" / "prism"
