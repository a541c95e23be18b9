"""Helpers for the jobs on the local portable cluster: a standalone job server (Prism) and
worker pools that run from a worker image without Spool (scripts/stacklib/cluster.py).

The jobs are submitted exactly as to Flink's job server: one documented flag set, the
ledger passed explicitly (the pools do not have the launcher's SPOOL_LEDGER_DSN), batch
files on S3 (a worker's local folder is not the launcher's).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from tests.conftest import STACK
from tests.reference import canonical, expected_tables, rows_from_warehouse

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Cluster:
    job_endpoint: str
    pools: tuple[str, ...]  # worker pool addresses, host:port

    def flags(self, pool: int = 0) -> list[str]:
        """The flag set docs/deploy.md gives for a portable job server."""
        return ["--runner=PortableRunner", f"--job_endpoint={self.job_endpoint}",
                "--environment_type=EXTERNAL", f"--environment_config={self.pools[pool]}",
                f"--setup_file={ROOT / 'setup.py'}"]


def status() -> dict:
    out = subprocess.run([*STACK, "status", "--json"], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)


def start(*services: str) -> None:
    res = subprocess.run([*STACK, "start", *services], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]


def kill_session(leader: int) -> None:
    """SIGKILL a service and every process of its session at once (a machine lost)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            sid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[3])
            if sid == leader:
                os.kill(int(proc.name), signal.SIGKILL)


def kill_pool(index: int) -> None:
    """SIGKILL one worker pool with its boot programs and SDK harnesses."""
    kill_session(int((ROOT / f"var/cluster/pool-{index}/pool.pid").read_text()))


def kill_jobserver() -> None:
    kill_session(status()["jobserver"]["pid"])


def running_jobs(job_endpoint: str) -> set[str]:
    """Ids of the jobs the job server runs now, from its job service."""
    import grpc
    from apache_beam.portability.api import beam_job_api_pb2, beam_job_api_pb2_grpc

    running = beam_job_api_pb2.JobState.RUNNING
    with grpc.insecure_channel(job_endpoint) as channel:
        stub = beam_job_api_pb2_grpc.JobServiceStub(channel)
        jobs = stub.GetJobs(beam_job_api_pb2.GetJobsRequest(), timeout=5).job_info
    return {j.job_id for j in jobs if j.state == running}


def cancel_all(job_endpoint: str) -> None:
    """Cancel every job still running on the job server (a test's leftovers)."""
    import grpc
    from apache_beam.portability.api import beam_job_api_pb2, beam_job_api_pb2_grpc

    with grpc.insecure_channel(job_endpoint) as channel:
        stub = beam_job_api_pb2_grpc.JobServiceStub(channel)
        for job_id in running_jobs(job_endpoint):
            stub.Cancel(beam_job_api_pb2.CancelJobRequest(job_id=job_id), timeout=5)


def launcher_env(stack) -> dict:
    """The launcher's environment: the stack's settings, but no ledger variable, so nothing
    can work only because the launcher had it."""
    env = dict(os.environ)
    env.update(stack.env)
    env.pop("SPOOL_LEDGER_DSN", None)
    return env


def submit(module: str, args: list[str], env: dict, log: Path, cwd: Path) -> subprocess.Popen:
    """A job's launcher as its own process group, run from a folder that is not the checkout."""
    fh = open(log, "ab")  # noqa: SIM115 - closed by jobs.kill()
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    proc._log = fh  # type: ignore[attr-defined]
    return proc


def run(module: str, args: list[str], env: dict, cwd: Path, timeout: float = 300):
    res = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=timeout, check=False)
    assert res.returncode == 0, res.stderr[-4000:]
    return res


def register(ledger_dsn: str, tenants, schema_prefix: str) -> None:
    """Tenants whose warehouse dsn is a reference the worker pools resolve themselves."""
    from spool.ledger.registry import Registry
    from spool.ledger.store import Ledger

    ledger = Ledger(ledger_dsn)
    ledger.migrate()
    for t in sorted(tenants):
        Registry(ledger).add_tenant(t, "postgres", {"dsn": "env:SPOOL_WAREHOUSE_DSN"},
                          f"{schema_prefix}_{t}")
    ledger.close()


def warehouse_differences(warehouse_dsn: str, prefix: str, messages, ids) -> list[str]:
    """How the tenant schemas ``prefix_<tenant>`` differ from the reference model: a valid
    record missing or there twice, a table too many or too few, a batch loaded twice."""
    expected = expected_tables(messages, ids)
    out = []
    conn = psycopg2.connect(warehouse_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT table_schema, table_name FROM information_schema.tables WHERE "
                        "table_schema LIKE %s AND table_name NOT LIKE '\\_sdc\\_%%'",
                        (prefix + "\\_%",))
            found = {(s[len(prefix) + 1:], t) for s, t in cur.fetchall()}
            if found != set(expected):
                out.append(f"tables: extra {sorted(found - set(expected))[:3]}, missing "
                           f"{sorted(set(expected) - found)[:3]}")
            for (tenant, table), exp in sorted(expected.items()):
                if (tenant, table) not in found:
                    continue
                schema = f"{prefix}_{tenant}"
                got = rows_from_warehouse(cur, schema, table, 1 if "__" in table else 0)
                got = sorted((rid, lv, {p: canonical(v) for p, v in d.items()})
                             for rid, lv, d in got)
                want = sorted((rid, lv, {p: canonical(v) for p, v in d.items()})
                              for rid, lv, d in exp["rows"])
                if got != want:
                    rows_got = [(rid, str(lv)) for rid, lv, _d in got]
                    twice = len(rows_got) - len(set(rows_got))
                    out.append(f"{schema}.{table}: {len(got)} rows ({twice} duplicated), "
                               f"expected {len(want)}")
            for tenant in sorted({t for t, _ in expected}):
                with contextlib.suppress(psycopg2.Error):
                    cur.execute(f'SELECT batch_id FROM "{prefix}_{tenant}"."_sdc_load_log" '
                                "GROUP BY 1 HAVING count(*) > 1")
                    if cur.fetchall():
                        out.append(f"{prefix}_{tenant}: a batch is in the load log twice")
                conn.rollback()
    finally:
        conn.close()
    return out
