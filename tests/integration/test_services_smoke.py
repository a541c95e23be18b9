"""Round trips through the real local services: what every later test builds on."""

from __future__ import annotations

import threading

import psycopg2
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def test_kafka_10k_messages_over_3_partitions_with_committed_offsets(stack, make_topic, unique):
    topic = make_topic(partitions=3)
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=5)
    futures = [producer.send(topic, key=str(i).encode(), value=f"m{i}".encode())
               for i in range(10_000)]
    producer.flush()
    produced_partitions = {f.get(timeout=30).partition for f in futures}
    producer.close()
    assert produced_partitions == {0, 1, 2}

    group = f"{unique}_group"
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    seen: list[bytes] = []
    while len(seen) < 10_000:
        batch = consumer.poll(timeout_ms=10_000, max_records=2_000)
        assert batch, f"no records within 10 s after {len(seen)} of 10000"
        for records in batch.values():
            seen.extend(r.value for r in records)
    consumer.commit()
    parts = [TopicPartition(topic, p) for p in range(3)]
    ends = consumer.end_offsets(parts)
    committed = {tp: consumer.committed(tp) for tp in parts}
    consumer.close()

    assert sorted(seen) == sorted(f"m{i}".encode() for i in range(10_000))
    assert committed == ends and sum(ends.values()) == 10_000

    # a new member of the same group resumes at the committed offsets: nothing is re-read
    again = KafkaConsumer(topic, bootstrap_servers=stack.kafka_bootstrap, group_id=group,
                          auto_offset_reset="earliest", enable_auto_commit=False)
    assert again.poll(timeout_ms=3_000) == {}
    again.close()


def test_s3_put_get_list_delete_and_multipart(stack, s3_prefix):
    s3 = stack.s3_client()
    bucket = stack.s3_bucket
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"{s3_prefix}small/{i}.txt", Body=f"object {i}".encode())
    assert s3.get_object(Bucket=bucket, Key=f"{s3_prefix}small/1.txt")["Body"].read() == b"object 1"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{s3_prefix}small/")
    assert [o["Key"] for o in listed["Contents"]] == [f"{s3_prefix}small/{i}.txt" for i in range(3)]

    key = f"{s3_prefix}big.bin"
    parts_data = [bytes([65 + i]) * (5 * 1024 * 1024) for i in range(2)] + [b"tail"]
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)
    parts = []
    for n, data in enumerate(parts_data, start=1):
        etag = s3.upload_part(Bucket=bucket, Key=key, PartNumber=n, UploadId=upload["UploadId"],
                              Body=data)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": parts})
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(parts_data)

    s3.delete_object(Bucket=bucket, Key=f"{s3_prefix}small/0.txt")
    left = s3.list_objects_v2(Bucket=bucket, Prefix=s3_prefix)
    assert sorted(o["Key"] for o in left["Contents"]) == [
        key, f"{s3_prefix}small/1.txt", f"{s3_prefix}small/2.txt"]


def test_postgres_skip_locked_gives_contending_workers_disjoint_rows(stack, pg_schema):
    setup = psycopg2.connect(stack.warehouse_dsn)
    with setup, setup.cursor() as cur:
        cur.execute(f'CREATE TABLE "{pg_schema}".jobs (id int PRIMARY KEY, owner text)')
        cur.execute(f'INSERT INTO "{pg_schema}".jobs SELECT g, NULL FROM generate_series(1, 4) g')
    setup.close()

    claim = (f'SELECT id FROM "{pg_schema}".jobs WHERE owner IS NULL ORDER BY id '
             "LIMIT 2 FOR UPDATE SKIP LOCKED")
    a = psycopg2.connect(stack.warehouse_dsn)
    b = psycopg2.connect(stack.warehouse_dsn)
    try:
        cur_a, cur_b = a.cursor(), b.cursor()
        cur_a.execute(claim)
        got_a = [r[0] for r in cur_a.fetchall()]
        # b must not wait for a's locks: run it with a statement timeout as the proof
        cur_b.execute("SET statement_timeout = '5s'")
        cur_b.execute(claim)
        got_b = [r[0] for r in cur_b.fetchall()]
        assert got_a == [1, 2] and got_b == [3, 4]

        # without SKIP LOCKED, b would block on a's rows
        cur_b.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg2.errors.LockNotAvailable):
            cur_b.execute(f'SELECT id FROM "{pg_schema}".jobs WHERE id = 1 FOR UPDATE')
        b.rollback()

        # once a commits its claim, the rows are free for b again
        cur_a.execute(f'UPDATE "{pg_schema}".jobs SET owner = %s WHERE id = ANY(%s)',
                      ("a", got_a))
        a.commit()
        cur_b = b.cursor()
        cur_b.execute(f'SELECT id FROM "{pg_schema}".jobs WHERE owner IS NULL '
                      "FOR UPDATE SKIP LOCKED")
        assert sorted(r[0] for r in cur_b.fetchall()) == [3, 4]
        b.rollback()
    finally:
        a.close()
        b.close()


def test_postgres_concurrent_claimers_never_share_a_row(stack, pg_schema):
    conn = psycopg2.connect(stack.warehouse_dsn)
    with conn, conn.cursor() as cur:
        cur.execute(f'CREATE TABLE "{pg_schema}".q (id int PRIMARY KEY, owner text)')
        cur.execute(f'INSERT INTO "{pg_schema}".q SELECT g, NULL FROM generate_series(1, 200) g')
    conn.close()
    claimed: dict[str, list[int]] = {"w1": [], "w2": []}

    def worker(name: str) -> None:
        c = psycopg2.connect(stack.warehouse_dsn)
        try:
            while True:
                with c, c.cursor() as cur:
                    cur.execute(f'SELECT id FROM "{pg_schema}".q WHERE owner IS NULL ORDER BY id '
                                "LIMIT 5 FOR UPDATE SKIP LOCKED")
                    ids = [r[0] for r in cur.fetchall()]
                    if not ids:
                        return
                    cur.execute(f'UPDATE "{pg_schema}".q SET owner = %s WHERE id = ANY(%s)',
                                (name, ids))
                claimed[name].extend(ids)
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(claimed["w1"] + claimed["w2"]) == list(range(1, 201))
    assert not set(claimed["w1"]) & set(claimed["w2"])
