"""Deterministic multi-tenant input for the end-to-end tests and the benchmarks.

``generate`` builds messages for ``tenants`` x ``streams`` with nested objects, arrays,
camelCase and unicode names, type drift, upsert streams (even stream numbers, keyed by
``id`` with repeated keys and rising sequences) and append streams (odd numbers), plus a
share of invalid messages of every kind the decoder rejects. Every message knows what must
become of it (``expect``), so tests check outcomes per record id.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

INVALID_KINDS = ("not_utf8", "not_json", "missing_field", "wrong_type", "unknown_tenant",
                 "data_not_object", "too_large")
TOO_LARGE_LIMIT = 64 * 1024  # the tests run the job with --max_message_bytes at this


@dataclass
class Message:
    value: bytes
    expect: str  # "valid" or a reason code
    tenant: str | None = None
    stream: str | None = None
    data: dict | None = None
    key_names: list = field(default_factory=list)
    sequence: int | None = None
    headers: list = field(default_factory=list)


def tenant_name(i: int) -> str:
    return f"t{i:03d}"


def stream_name(j: int) -> str:
    return ["orders", "users", "events", "pageViews", "invoices", "Ställe", "line_items",
            "select", "user", "order"][j % 10] + ("" if j < 10 else f"_{j}")


WORDS = ["alpha", "Zoë", "naïve", "Köln", "東京", "emoji 🎉", "quote ' \" ", "back\\slash",
         "tab\tch", "new\nline", "x" * 40]


def _record(rng: random.Random, j: int, n: int, drift: bool) -> dict:
    data = {
        "id": n,
        "name": rng.choice(WORDS),
        "amount": round(rng.uniform(0, 1000), 2),
        "active": rng.random() < 0.5,
        "createdAt": f"2024-11-{rng.randint(1, 28):02d}T10:{rng.randint(0, 59):02d}:00Z",
        "customer": {"name": rng.choice(WORDS), "address": {"city": rng.choice(WORDS),
                                                            "zip": rng.randint(10000, 99999)}},
    }
    if j % 3 == 0:
        data["items"] = [{"sku": f"s{rng.randint(1, 50)}", "qty": rng.randint(1, 5),
                          "price": round(rng.uniform(1, 99), 2)}
                         for _ in range(rng.randint(0, 3))]
    if j % 4 == 1:
        data["tags"] = [rng.choice(WORDS) for _ in range(rng.randint(0, 2))]
    if rng.random() < 0.1:
        data["note"] = None
    if drift:
        data["amount"] = rng.choice(["12.50", "n/a"])
        data["active"] = rng.choice(["yes", 1])
    return data


def generate(n_records: int = 200_000, tenants: int = 50, streams: int = 20,
             invalid_ratio: float = 0.01, seed: int = 7) -> list[Message]:
    rng = random.Random(seed)
    messages: list[Message] = []
    seq = 1_700_000_000_000
    next_id: dict = {}
    for _ in range(n_records):
        if rng.random() < invalid_ratio:
            messages.append(_invalid(rng, tenants, streams))
            continue
        t, j = rng.randrange(tenants), rng.randrange(streams)
        tenant, stream = tenant_name(t), stream_name(j)
        upsert = j % 2 == 0
        if upsert:
            # a small key space per stream: many updates
            n = rng.randrange(max(5, n_records // (tenants * streams * 3)))
        else:
            n = next_id.get((t, j), 0)
            next_id[(t, j)] = n + 1
        seq += rng.randint(1, 3)
        data = _record(rng, j, n, drift=rng.random() < 0.02)
        env = {"tenant": tenant, "stream": stream, "data": data, "sequence": seq}
        if upsert:
            env["key_names"] = ["id"]
        messages.append(Message(json.dumps(env, ensure_ascii=False).encode(), "valid", tenant,
                                stream, data, env.get("key_names", []), seq))
    return messages


def _invalid(rng: random.Random, tenants: int, streams: int) -> Message:
    kind = rng.choice(INVALID_KINDS)
    tenant = tenant_name(rng.randrange(tenants))
    stream = stream_name(rng.randrange(streams))
    if kind == "not_utf8":
        return Message(b'{"tenant": "' + tenant.encode() + b'", "x": "\xff\xfe"}', kind)
    if kind == "not_json":
        return Message(b'{"tenant": "' + tenant.encode() + b'", "stream": ', kind)
    if kind == "missing_field":
        return Message(json.dumps({"tenant": tenant, "data": {"id": 1}}).encode(), kind, tenant)
    if kind == "wrong_type":
        return Message(json.dumps({"tenant": tenant, "stream": 42, "data": {}}).encode(), kind,
                       tenant)
    if kind == "unknown_tenant":
        return Message(json.dumps({"tenant": "ghost", "stream": stream,
                                   "data": {"id": 1}}).encode(), kind, "ghost")
    if kind == "data_not_object":
        return Message(json.dumps({"tenant": tenant, "stream": stream,
                                   "data": [1, 2]}).encode(), kind, tenant, stream)
    # too_large
    big = {"tenant": tenant, "stream": stream, "data": {"blob": "x" * (TOO_LARGE_LIMIT + 10)}}
    return Message(json.dumps(big).encode(), kind, tenant)


def tenants_of(messages: list[Message]) -> set[str]:
    """Tenants to register: everyone named, except the unknown tenant 'ghost'."""
    return {m.tenant for m in messages if m.tenant and m.tenant != "ghost"}


def rejected_by_tenant(messages: list[Message]) -> dict[str, int]:
    """How many rejected messages each tenant's _sdc_rejected receives (the rest, without a
    registered tenant, go to _unassigned)."""
    out: dict[str, int] = {}
    for m in messages:
        if m.expect not in ("valid", "not_utf8", "not_json", "unknown_tenant"):
            out[m.tenant] = out.get(m.tenant, 0) + 1
    return out


def produce(bootstrap: str, topic: str, messages: list[Message], partitions: int) -> list[str]:
    """Send messages round-robin over partitions; returns each message's record id."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=50,
                             batch_size=1024 * 1024, max_request_size=16 * 1024 * 1024)
    futures = [producer.send(topic, m.value, partition=i % partitions, headers=m.headers or None)
               for i, m in enumerate(messages)]
    producer.flush()
    ids = record_ids(futures)
    producer.close()
    return ids


def record_ids(futures) -> list[str]:
    """The record id (topic/partition/offset) of each acknowledged send."""
    return [f"{m.topic}/{m.partition}/{m.offset}" for m in (f.get(timeout=60) for f in futures)]
