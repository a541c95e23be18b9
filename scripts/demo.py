#!/usr/bin/env python3
"""The local demo behind ./run_local.sh: sample data through the spool job on the local stack.

1. registers the demo tenants `acme` and `globex` in the ledger;
2. creates the fat queue topic (`spool.fatq`, 3 partitions) if it is missing;
3. sends sample records (nested objects, arrays, a few invalid messages), once per checkout
   (a marker in var/ remembers it), so a second run spools nothing twice;
4. runs the spool job in drain mode and prints what the ledger now holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOPIC = "spool.fatq"
TENANTS = ("acme", "globex")
MARKER = ROOT / "var" / "demo" / "sample-sent"


def sample(n: int, seed: int = 42) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        tenant = rng.choice(TENANTS)
        if i % 97 == 0:
            out.append(b'{"tenant": "' + tenant.encode() + b'", "stream": ')  # not JSON
            continue
        stream = rng.choice(["orders", "customers"])
        if stream == "orders":
            data = {"id": i, "status": rng.choice(["new", "paid", "shipped"]),
                    "total": round(rng.uniform(5, 500), 2),
                    "customer": {"name": rng.choice(["Zoë", "Ann", "Bo"]),
                                 "address": {"city": rng.choice(["Köln", "Lyon", "Oslo"])}},
                    "items": [{"sku": f"sku-{rng.randint(1, 20)}", "qty": rng.randint(1, 3)}
                              for _ in range(rng.randint(1, 3))]}
        else:
            data = {"id": i % 50, "email": f"user{i % 50}@example.com",
                    "tags": rng.sample(["vip", "new", "eu", "b2b"], 2)}
        out.append(json.dumps({"tenant": tenant, "stream": stream, "key_names": ["id"],
                               "sequence": i, "data": data}, ensure_ascii=False).encode())
    return out


def main() -> int:
    env = json.loads(subprocess.run([sys.executable, str(ROOT / "scripts/stack.py"), "env",
                                     "--json"], check=True, capture_output=True,
                                    text=True).stdout)
    os.environ.update({k: v for k, v in env.items() if k not in os.environ})
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from spool.ledger import Ledger

    ledger = Ledger(os.environ["SPOOL_LEDGER_DSN"])
    ledger.migrate()
    for tenant in TENANTS:
        ledger.add_tenant(tenant)
    admin = KafkaAdminClient(bootstrap_servers=os.environ["SPOOL_KAFKA_BOOTSTRAP"])
    with contextlib.suppress(TopicAlreadyExistsError):
        admin.create_topics([NewTopic(TOPIC, 3, 1)])
    admin.close()

    if not MARKER.exists():
        producer = KafkaProducer(bootstrap_servers=os.environ["SPOOL_KAFKA_BOOTSTRAP"],
                                 acks="all", linger_ms=20)
        records = sample(5_000)
        for value in records:
            producer.send(TOPIC, value)
        producer.flush()
        producer.close()
        MARKER.parent.mkdir(parents=True, exist_ok=True)
        MARKER.write_text(str(len(records)))
        print(f"[demo] sent {len(records)} sample messages to {TOPIC}")
    else:
        print(f"[demo] sample messages were sent before ({MARKER}); not sending them again")

    print("[demo] running the spool job (drain mode) ...", flush=True)
    res = subprocess.run([sys.executable, "-m", "pipelines.spool_job", f"--topic={TOPIC}",
                          "--consumer_group=spool-demo", "--log_level=WARNING"], cwd=ROOT,
                         check=False, stderr=subprocess.DEVNULL)
    if res.returncode != 0:
        print("[demo] the spool job failed; rerun without --log_level=WARNING to see why")
        return 1

    def summary(cur):
        cur.execute("""SELECT tenant_id, stream, state, count(*), sum(record_count)
                       FROM batches GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""")
        return cur.fetchall()

    print("\n[demo] batches in the ledger (tenant, stream, state, batches, records):")
    for row in ledger.run(summary):
        print("   ", *row)
    ledger.close()
    print(f"\n[demo] batch files are under {ROOT / 'var' / 'spool'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
