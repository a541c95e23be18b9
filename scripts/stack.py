#!/usr/bin/env python3
"""Start, stop and inspect Spool's local services without Docker.

Services (all bound to 127.0.0.1, data and logs under ``var/``), one module each in
``scripts/stacklib/``:

* ``kafka``     Apache Kafka 4.x in KRaft mode (one combined broker/controller node), jars
                resolved from Maven Central with ``mvn dependency:copy-dependencies``.
* ``postgres``  PostgreSQL from Debian's packages with the ``ledger`` and ``warehouse``
                databases; ``initdb``/``pg_ctl`` run as the ``postgres`` user when root.
* ``s3``        moto's standalone server, an S3-compatible HTTP endpoint, from PyPI.
* ``postgres2`` a second PostgreSQL instance (database ``warehouse``), only started when
                named: tests use it as a tenant warehouse that can be taken away.
* ``jobserver`` Beam's Prism as a standalone portable job server (where Flink's job server
                or Dataflow would be), only started when named.
* ``workers``   Python SDK worker pools (``SPOOL_WORKER_POOLS``, default 2) from a worker
                image venv without Spool, only started when named; see
                ``scripts/stacklib/cluster.py``.

``start`` is idempotent and returns only after a real round trip succeeds (a produced
record acknowledged, a query answered, an object written and read back) or a deadline
passes. ``stop`` stops exactly the processes this script started, identified by their pid
files and command lines. ``status`` reports each service, ``env`` prints the connection
settings as shell exports.

A throwaway second instance of a service (a test that stops it, say) runs from the same
script with ``SPOOL_VAR_DIR`` pointing elsewhere and its port variables set
(``SPOOL_KAFKA_PORT``/``SPOOL_KAFKA_CONTROLLER_PORT``, ``SPOOL_PG_PORT``, ``SPOOL_S3_PORT``);
tests/e2e/outages.py does this, with that directory's ``cache`` and ``venvs`` linked to these.

Run it with the project's venv (``.venv/bin/python scripts/stack.py ...``): readiness checks
use kafka-python, psycopg2 and boto3.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stacklib import cluster, kafka, postgres, s3
from stacklib.base import HOST, Daemon, StackError, log, pid_alive  # noqa: F401

# --------------------------------------------------------------------------- commands

SERVICES = {
    "kafka": (kafka.start, kafka.KAFKA.stop, kafka.KAFKA.pid),
    "postgres": (lambda: postgres.start(postgres.PG), lambda: postgres.stop(postgres.PG),
                 lambda: postgres.running(postgres.PG)),
    "s3": (s3.start, s3.S3.stop, s3.S3.pid),
    "postgres2": (lambda: postgres.start(postgres.PG2), lambda: postgres.stop(postgres.PG2),
                  lambda: postgres.running(postgres.PG2)),
    "jobserver": (cluster.jobserver_start, cluster.JOBSERVER.stop, cluster.JOBSERVER.pid),
    "workers": (lambda: cluster.workers_start(env_settings()), cluster.workers_stop,
                cluster.workers_pid),
}
# started only when named: the portable cluster (job server + worker pools)
ON_DEMAND = ("postgres2", "jobserver", "workers")
DEFAULT = ("postgres", "s3", "kafka")


def env_settings() -> dict[str, str]:
    """Connection settings for the local stack, as the jobs and tests read them."""
    return {
        "SPOOL_KAFKA_BOOTSTRAP": f"{HOST}:{kafka.PORT}",
        "SPOOL_LEDGER_DSN": postgres.PG.dsn("ledger"),
        "SPOOL_WAREHOUSE_DSN": postgres.PG.dsn("warehouse"),
        "SPOOL_WAREHOUSE2_DSN": postgres.PG2.dsn("warehouse"),
        "SPOOL_S3_ENDPOINT": f"http://{HOST}:{s3.PORT}",
        "SPOOL_S3_BUCKET": s3.BUCKET,
        "AWS_ACCESS_KEY_ID": s3.KEY_ID,
        "AWS_SECRET_ACCESS_KEY": s3.SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "SPOOL_JOB_ENDPOINT": cluster.job_endpoint(),
    }


def status() -> dict[str, dict]:
    out = {}
    for name, (_, _, pid_of) in SERVICES.items():
        pid = pid_of()
        out[name] = {"running": pid is not None, "pid": pid}
    out["kafka"]["address"] = f"{HOST}:{kafka.PORT}"
    out["kafka"]["logs"] = str(kafka.KAFKA_DIR / "logs")
    out["postgres"]["address"] = f"{HOST}:{postgres.PORT}"
    out["postgres"]["logs"] = str(postgres.PG.logfile)
    out["postgres2"]["address"] = f"{HOST}:{postgres.PORT2}"
    out["postgres2"]["logs"] = str(postgres.PG2.logfile)
    out["jobserver"]["address"] = cluster.job_endpoint()
    out["jobserver"]["logs"] = str(cluster.CLUSTER_DIR / "logs")
    pools = cluster.running_pools()
    out["workers"]["address"] = ",".join(f"{HOST}:{cluster.pool_port(i)}" for i in pools) or \
        f"{HOST}:{cluster.pool_port(0)}"
    out["workers"]["pools"] = pools
    out["workers"]["logs"] = str(cluster.CLUSTER_DIR / "pool-N")
    out["s3"]["address"] = f"http://{HOST}:{s3.PORT}"
    out["s3"]["logs"] = str(s3.S3_DIR / "logs")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/stack.py",
        description="Start, stop and inspect Spool's local services (Kafka, PostgreSQL, S3) "
        "on 127.0.0.1 without Docker. Data and logs live under var/.",
        epilog="Examples:\n  scripts/stack.py start            # kafka, postgres, s3\n"
        "  scripts/stack.py stop kafka\n  scripts/stack.py status --json\n"
        "  eval \"$(scripts/stack.py env)\"   # export connection settings",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd, text in (("start", "start services (idempotent; waits until ready)"),
                      ("stop", "stop services this script started"),
                      ("status", "show which services run, where, and their logs")):
        p = sub.add_parser(cmd, help=text)
        p.add_argument("services", nargs="*", metavar="SERVICE",
                       help=f"one of {', '.join(SERVICES)} (default: {' '.join(DEFAULT)}; "
                       f"{', '.join(ON_DEMAND)} only when named)")
        if cmd == "status":
            p.add_argument("--json", action="store_true", help="print JSON")
        if cmd == "stop":
            p.add_argument("--all", action="store_true", help=f"also stop {', '.join(ON_DEMAND)}")
        if cmd == "start":
            p.add_argument("--started-file", type=Path, metavar="FILE",
                           help="append the names of services this call started (not those "
                           "already running) to FILE, so a caller can stop only those")
    p = sub.add_parser("env", help="print connection settings as shell exports")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    unknown = [s for s in getattr(args, "services", []) if s not in SERVICES]
    if unknown:
        parser.error(f"unknown service {unknown[0]!r}; choose from {', '.join(SERVICES)}")

    try:
        if args.command == "start":
            for name in args.services or DEFAULT:
                was_running = SERVICES[name][2]() is not None
                SERVICES[name][0]()
                if args.started_file and not was_running:
                    with open(args.started_file, "a") as fh:
                        fh.write(name + "\n")
        elif args.command == "stop":
            names = args.services or ([*DEFAULT, *ON_DEMAND] if args.all else list(DEFAULT))
            for name in reversed(list(SERVICES)):
                if name in names:
                    stopped = SERVICES[name][1]()
                    log(f"{name}: {'stopped' if stopped else 'was not running'}")
        elif args.command == "status":
            st = status()
            if args.services:
                st = {k: v for k, v in st.items() if k in args.services}
            if args.json:
                print(json.dumps(st, indent=2))
            else:
                for name, s in st.items():
                    state = f"running (pid {s['pid']})" if s["running"] else "stopped"
                    print(f"{name:<10} {state:<22} {s['address']:<24} logs: {s['logs']}")
            if args.services and not all(s["running"] for s in st.values()):
                return 3
        elif args.command == "env":
            env = env_settings()
            if args.json:
                print(json.dumps(env, indent=2))
            else:
                for k, v in env.items():
                    print(f"export {k}='{v}'")
    except StackError as exc:
        log(f"error: {exc}")
        return 1
    except subprocess.CalledProcessError as exc:
        log(f"error: command failed with exit code {exc.returncode}: {' '.join(map(str, exc.cmd))}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
