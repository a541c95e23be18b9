"""A local Beam "cluster" from real parts: a standalone job server and N Python worker pools.

* ``jobserver``  Beam's Prism runner as a standalone portable job server on a fixed port
                 (``var/bin/prism``, built by ``scripts/build_prism.sh``). Jobs are submitted
                 to it exactly as to Flink's job server: ``--runner=PortableRunner
                 --job_endpoint=127.0.0.1:PORT``.
* ``workers``    N worker pools (``apache_beam.runners.worker.worker_pool_main``), each its own
                 process with Beam's SDK container boot program as ``--container_executable``:
                 the same pool that runs beside Flink TaskManagers on Kubernetes. Jobs reach
                 them with ``--environment_type=EXTERNAL --environment_config=127.0.0.1:PORT``.

The pools run from a *worker image* venv that has Spool's dependencies but **not Spool**:
Spool's code reaches a worker only through ``--setup_file`` artifact staging, as on Dataflow.
For each worker the boot program downloads the staged artifacts, makes a throw-away venv
(``--system-site-packages``) under ``/opt/apache/beam-venv``, pip-installs the staged sdist
into it and starts the SDK harness; the venv is removed when the worker ends. A venv made from
a venv sees the *base* interpreter's site-packages, not the image venv's, so the pools put the
image's site-packages on ``PYTHONPATH``; the image venv itself is never written to.

A pool's worker processes inherit its environment: the stack's connection settings (tenant
``env:`` references, AWS credentials for the S3 endpoint) are given to the pools here, as an
operator gives them to a Flink TaskManager's worker pool container.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from stacklib.base import (
    CACHE,
    HOST,
    ROOT,
    VAR,
    Daemon,
    StackError,
    log,
    pid_alive,
    run,
    wait_until,
)

JOB_PORT = int(os.environ.get("SPOOL_JOB_PORT", "18099"))
POOL_BASE_PORT = int(os.environ.get("SPOOL_WORKER_POOL_PORT", "18200"))
POOLS = int(os.environ.get("SPOOL_WORKER_POOLS", "2"))
CLUSTER_DIR = VAR / "cluster"
JOBSERVER = Daemon("jobserver", CLUSTER_DIR / "jobserver.pid", marker="--job_port")


def beam_version() -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.startswith("apache-beam"):
            return line.split("==", 1)[1].strip()
    raise StackError("requirements.txt pins no apache-beam version")


# --------------------------------------------------------------------------- job server


def prism_bin() -> Path:
    exe = VAR / "bin" / "prism"
    res = subprocess.run([str(ROOT / "scripts" / "build_prism.sh")], check=False,
                         stdout=subprocess.DEVNULL)
    if res.returncode != 0 or not exe.exists():
        raise StackError("Prism could not be built: run scripts/build_prism.sh to see why")
    return exe


def job_endpoint() -> str:
    return f"{HOST}:{JOB_PORT}"


def jobserver_ready() -> bool:
    """A real round trip: the job service lists its jobs."""
    import grpc
    from apache_beam.portability.api import beam_job_api_pb2, beam_job_api_pb2_grpc

    with grpc.insecure_channel(job_endpoint()) as channel:
        stub = beam_job_api_pb2_grpc.JobServiceStub(channel)
        stub.GetJobs(beam_job_api_pb2.GetJobsRequest(), timeout=3)
    return True


def jobserver_start() -> None:
    if JOBSERVER.pid() is None:
        exe = prism_bin()
        logs = CLUSTER_DIR / "logs"
        # one port serves the job service, artifact staging and the workers' Fn API; Prism
        # takes no bind address (it listens on every interface), so jobs and workers are
        # only ever given 127.0.0.1; the web UI is off
        pid = JOBSERVER.spawn([str(exe), f"--job_port={JOB_PORT}", "--serve_http=false",
                               "--idle_shutdown_timeout=-1ns", "--log_level=warn"],
                              logs / "jobserver.log")
        log(f"jobserver (Prism) starting (pid {pid}), waiting for a GetJobs round trip ...")
    try:
        wait_until("jobserver", jobserver_ready, 60)
    except StackError as exc:
        raise StackError(f"{exc}; see {CLUSTER_DIR / 'logs' / 'jobserver.log'}") from exc
    log(f"jobserver ready on {job_endpoint()} (log: {CLUSTER_DIR / 'logs'})")


# --------------------------------------------------------------------------- worker image


def image_venv() -> Path:
    """The worker image: Spool's pinned dependencies, the build tools the boot program's
    ``pip install --no-build-isolation`` of the staged sdist needs, and no Spool."""
    req = ROOT / "requirements.txt"
    digest = hashlib.sha256(req.read_bytes() + b"setuptools>=68 wheel").hexdigest()[:12]
    venv = VAR / "venvs" / f"worker-{digest}"
    done = venv / ".complete"
    if done.exists():
        return venv
    log(f"installing the worker image (Spool's dependencies, not Spool) into {venv} ...")
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--cache-dir", str(CACHE / "pip"), "-r", str(req), "setuptools>=68", "wheel"])
    done.write_text(beam_version())
    return venv


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3.*/site-packages"))


def boot_bin() -> Path:
    """Beam's Python SDK container boot program at the pinned Beam version, built with Go
    from the module proxy once (module cache shared with Prism's under var/cache/go)."""
    version = beam_version()
    out = VAR / "bin" / f"beam-python-boot-{version}"
    if out.exists():
        return out
    if not shutil.which("go"):
        raise StackError("Go is needed to build Beam's boot program: apt-get install golang")
    log(f"building Beam's Python boot program v{version} with go install ...")
    gobin = CACHE / f"boot-{version}"
    env = dict(os.environ, GOPATH=str(CACHE / "go"), GOBIN=str(gobin), GOFLAGS="-modcacherw")
    run(["go", "install", f"github.com/apache/beam/sdks/v2/python/container@v{version}"],
        env=env, cwd="/")
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(gobin / "container", out)
    return out


# --------------------------------------------------------------------------- worker pools


def pool_port(i: int) -> int:
    return POOL_BASE_PORT + i


def pool_daemon(i: int) -> Daemon:
    return Daemon(f"workers-{i}", CLUSTER_DIR / f"pool-{i}" / "pool.pid",
                  marker=f"--service_port={pool_port(i)}")


def pool_env(venv: Path, settings: dict[str, str]) -> dict[str, str]:
    """What a pool and its workers see: the image on PATH and PYTHONPATH, the services'
    settings, and nothing of the launcher's (no SPOOL_LEDGER_DSN: jobs pass theirs)."""
    keep = {k: v for k, v in os.environ.items()
            if k in ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")}
    path = f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    return {**keep, **{k: v for k, v in settings.items() if k != "SPOOL_LEDGER_DSN"},
            "PATH": path, "PYTHONPATH": str(site_packages(venv)), "VIRTUAL_ENV": str(venv),
            "PYTHONUNBUFFERED": "1"}


def boot_wrapper(i: int, boot: Path) -> Path:
    """The pool's container executable: Beam's boot program with a staging folder of this
    pool's own (its default, /tmp/staged, would be shared by every pool on the machine)."""
    home = CLUSTER_DIR / f"pool-{i}"
    script = home / "boot.sh"
    script.write_text(
        "#!/bin/sh\n# generated by scripts/stacklib/cluster.py: one staging folder per worker\n"
        'id=""\nfor a in "$@"; do case "$a" in --id=*) id="${a#--id=}";; esac; done\n'
        f'dir="{home}/workers/$id"\nmkdir -p "$dir"\n'
        f'exec "{boot}" --semi_persist_dir="$dir" "$@"\n')
    script.chmod(0o755)
    return script


def pool_ready(i: int) -> bool:
    """A real round trip: the pool answers StopWorker for a worker it does not have."""
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc

    with grpc.insecure_channel(f"{HOST}:{pool_port(i)}") as channel:
        stub = beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(channel)
        stub.StopWorker(beam_fn_api_pb2.StopWorkerRequest(worker_id="_spool_ready"), timeout=3)
    return True


def workers_start(settings: dict[str, str], pools: int = POOLS) -> None:
    venv = image_venv()
    boot = boot_bin()
    env = pool_env(venv, settings)
    for i in range(pools):
        daemon = pool_daemon(i)
        if daemon.pid() is None:
            home = CLUSTER_DIR / f"pool-{i}"
            home.mkdir(parents=True, exist_ok=True)
            wrapper = boot_wrapper(i, boot)
            # the pool binds all interfaces (worker_pool_main has no host flag); only
            # 127.0.0.1 is ever given to a job as its address
            pid = daemon.spawn([str(venv / "bin" / "python"), "-m",
                                "apache_beam.runners.worker.worker_pool_main",
                                f"--service_port={pool_port(i)}",
                                f"--container_executable={wrapper}"],
                               home / "pool.log", env=env)
            log(f"workers-{i} starting (pid {pid}) on port {pool_port(i)}")
    for i in range(pools):
        try:
            wait_until(f"workers-{i}", lambda i=i: pool_ready(i), 60)
        except StackError as exc:
            raise StackError(f"{exc}; see {CLUSTER_DIR / f'pool-{i}' / 'pool.log'}") from exc
    log(f"{pools} worker pools ready on ports {pool_port(0)}-{pool_port(pools - 1)} "
        f"(image {venv}, logs: {CLUSTER_DIR}/pool-N/)")


def running_pools() -> list[int]:
    return sorted(int(p.parent.name.split("-")[1]) for p in CLUSTER_DIR.glob("pool-*/pool.pid")
                  if pool_daemon(int(p.parent.name.split("-")[1])).pid() is not None)


def workers_stop() -> bool:
    """Stop every pool and the worker processes it started (they are in its session)."""
    stopped = False
    for pid_file in sorted(CLUSTER_DIR.glob("pool-*/pool.pid")):
        i = int(pid_file.parent.name.split("-")[1])
        daemon = pool_daemon(i)
        pid = daemon.pid()
        if pid is not None:
            stopped = daemon.stop() or stopped
            kill_session(pid)
    return stopped


def kill_session(sid: int) -> None:
    """SIGKILL what is left of a pool's session (boot programs and SDK harnesses)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[3]) == sid and \
                    pid_alive(int(proc.name)):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


def workers_pid() -> int | None:
    pools = running_pools()
    return pool_daemon(pools[0]).pid() if pools else None
