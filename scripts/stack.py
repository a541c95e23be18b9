#!/usr/bin/env python3
"""Start, stop and inspect Spool's local services without Docker.

Services (all bound to 127.0.0.1, data and logs under ``var/``):

* ``kafka``     Apache Kafka 4.x in KRaft mode (one combined broker/controller node), jars
                resolved from Maven Central with ``mvn dependency:copy-dependencies``.
* ``postgres``  PostgreSQL from Debian's packages with the ``ledger`` and ``warehouse``
                databases; ``initdb``/``pg_ctl`` run as the ``postgres`` user when root.
* ``s3``        moto's standalone server, an S3-compatible HTTP endpoint, from PyPI.
* ``postgres2`` a second PostgreSQL instance (database ``warehouse``), only started when
                named: tests use it as a tenant warehouse that can be taken away.

``start`` is idempotent and returns only after a real round trip succeeds (a produced
record acknowledged, a query answered, an object written and read back) or a deadline
passes. ``stop`` stops exactly the processes this script started, identified by their pid
files and command lines. ``status`` reports each service, ``env`` prints the connection
settings as shell exports.

Run it with the project's venv (``.venv/bin/python scripts/stack.py ...``): readiness checks
use kafka-python, psycopg2 and boto3.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("SPOOL_VAR_DIR", ROOT / "var")).resolve()
CACHE = VAR / "cache"

KAFKA_PORT = int(os.environ.get("SPOOL_KAFKA_PORT", "19092"))
KAFKA_CONTROLLER_PORT = int(os.environ.get("SPOOL_KAFKA_CONTROLLER_PORT", str(KAFKA_PORT + 1)))
PG_PORT = int(os.environ.get("SPOOL_PG_PORT", "15432"))
PG2_PORT = int(os.environ.get("SPOOL_PG2_PORT", "15433"))
S3_PORT = int(os.environ.get("SPOOL_S3_PORT", "19000"))
HOST = "127.0.0.1"

PG_USER = "spool"
PG_PASSWORD = "spool"  # noqa: S105 - local development stack only, bound to loopback
S3_BUCKET = "spool"
S3_KEY_ID = "spool-local"
S3_SECRET = "spool-local-secret"  # noqa: S105 - moto accepts any key

KAFKA_HEAP = os.environ.get("SPOOL_KAFKA_HEAP", "-Xms256m -Xmx768m")


class StackError(RuntimeError):
    """A service could not be set up or did not become ready; the text says what to do."""


def log(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def wait_until(what: str, check, deadline_s: float, interval_s: float = 0.25):
    """Call ``check`` until it returns a truthy value or the deadline passes.

    ``check`` may raise; the last error is reported when the deadline passes.
    """
    end = time.monotonic() + deadline_s
    last_err: Exception | None = None
    while time.monotonic() < end:
        try:
            result = check()
        except Exception as exc:  # noqa: BLE001 - readiness probes fail in many ways
            last_err = exc
        else:
            if result:
                return result
        time.sleep(interval_s)
    raise StackError(f"{what} not ready after {deadline_s:.0f}s: {last_err!r}")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


# --------------------------------------------------------------------------- processes


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie counts as gone
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclasses.dataclass
class Daemon:
    """A background process we started, known by its pid file and a command-line marker."""

    name: str
    pid_file: Path
    marker: str

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid_alive(pid) and self.marker in cmdline(pid):
            return pid
        return None

    def spawn(self, argv: list[str], log_file: Path, env: dict | None = None) -> int:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
                cwd=str(VAR),
            )
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def stop(self, deadline_s: float = 60) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        try:
            wait_until(f"{self.name} exit", lambda: not pid_alive(pid), deadline_s)
        except StackError:
            log(f"{self.name} (pid {pid}) ignored SIGTERM for {deadline_s:.0f}s; sending SIGKILL")
            os.kill(pid, signal.SIGKILL)
            wait_until(f"{self.name} exit", lambda: not pid_alive(pid), 10)
        self.pid_file.unlink(missing_ok=True)
        return True


# --------------------------------------------------------------------------- kafka


def kafka_version() -> str:
    pom = (ROOT / "scripts/kafka/pom.xml").read_text()
    return pom.split("<kafka.version>")[1].split("</kafka.version>")[0]


def kafka_libs() -> Path:
    """Resolve the broker's jars once into var/cache (keyed by the pom's content)."""
    pom = ROOT / "scripts/kafka/pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    libs = CACHE / f"kafka-{kafka_version()}-{digest}" / "libs"
    done = libs.parent / ".complete"
    if done.exists():
        return libs
    if not shutil.which("mvn"):
        raise StackError(
            "Maven (mvn) is needed to fetch Kafka from Maven Central: apt-get install maven")
    log(f"resolving Kafka {kafka_version()} jars from Maven Central into {libs} ...")
    shutil.rmtree(libs, ignore_errors=True)
    run(
        [
            "mvn", "-q", "-B", "-f", str(pom),
            f"-Dmaven.repo.local={CACHE / 'm2'}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ]
    )
    done.write_text(kafka_version())
    return libs


def java_bin() -> str:
    for cand in (
        os.environ.get("SPOOL_JAVA_HOME"),
        "/usr/lib/jvm/java-17-openjdk-amd64",
        os.environ.get("JAVA_HOME"),
    ):
        if cand and Path(cand, "bin/java").exists():
            return str(Path(cand, "bin/java"))
    java = shutil.which("java")
    if not java:
        raise StackError("Java 17+ is needed for Kafka: apt-get install openjdk-17-jre-headless")
    return java


KAFKA_DIR = VAR / "kafka"
KAFKA = Daemon("kafka", KAFKA_DIR / "kafka.pid", marker="kafka.Kafka")


def kafka_config() -> Path:
    data = KAFKA_DIR / "data"
    conf = KAFKA_DIR / "server.properties"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        "\n".join(
            [
                "# generated by scripts/stack.py; edit the script, not this file",
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{HOST}:{KAFKA_CONTROLLER_PORT}",
                f"listeners=PLAINTEXT://{HOST}:{KAFKA_PORT},CONTROLLER://{HOST}:{KAFKA_CONTROLLER_PORT}",
                f"advertised.listeners=PLAINTEXT://{HOST}:{KAFKA_PORT}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={data}",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=10",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                "delete.topic.enable=true",
                "message.max.bytes=16777216",
                "log.retention.hours=168",
                "log.segment.bytes=268435456",
                "",
            ]
        )
    )
    return conf


def kafka_ready() -> bool:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    bootstrap = f"{HOST}:{KAFKA_PORT}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([NewTopic("_spool_ready", 1, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=5000)
    try:
        meta = producer.send("_spool_ready", b"ping").get(timeout=10)
    finally:
        producer.close(timeout=5)
    return meta.offset >= 0


def kafka_start() -> None:
    if KAFKA.pid() is not None:
        wait_until("kafka", kafka_ready, 60)
        log(f"kafka already running (pid {KAFKA.pid()}) on {HOST}:{KAFKA_PORT}")
        return
    libs = kafka_libs()
    java = java_bin()
    conf = kafka_config()
    logs = KAFKA_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cp = f"{libs}/*"
    jvm = [
        java, *KAFKA_HEAP.split(), "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={logs}",
        f"-Dlog4j2.configurationFile={ROOT / 'scripts/kafka/log4j2.properties'}",
        "-cp", cp,
    ]
    if not (KAFKA_DIR / "data" / "meta.properties").exists():
        cluster_id = (KAFKA_DIR / "cluster.id")
        if not cluster_id.exists():
            # a random cluster id is fine: it names this local cluster, not data
            raw = uuid.uuid4().bytes
            import base64

            cluster_id.write_text(base64.urlsafe_b64encode(raw).decode().rstrip("="))
        log("formatting Kafka storage (KRaft)")
        run([*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id.read_text().strip(),
             "-c", str(conf), "--ignore-formatted"], stdout=subprocess.DEVNULL)
    pid = KAFKA.spawn([*jvm, "kafka.Kafka", str(conf)], logs / "stdout.log")
    log(f"kafka starting (pid {pid}), waiting for a produce round trip ...")
    try:
        wait_until("kafka", kafka_ready, 120, interval_s=0.5)
    except StackError as exc:
        if not pid_alive(pid):
            raise StackError(f"kafka exited during start; see {logs / 'server.log'}") from exc
        raise
    log(f"kafka ready on {HOST}:{KAFKA_PORT} (logs: {logs})")


# --------------------------------------------------------------------------- postgres


@dataclasses.dataclass(frozen=True)
class PgInstance:
    name: str
    port: int
    databases: tuple[str, ...]

    @property
    def link(self) -> Path:
        return VAR / self.name

    @property
    def home(self) -> Path:
        # resolved: when var/<name> is a symlink, the postgres user must not walk var/'s parents
        return self.link.resolve()

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def logfile(self) -> Path:
        return self.home / "log" / "postgres.log"

    def dsn(self, db: str) -> str:
        return f"postgresql://{PG_USER}:{PG_PASSWORD}@{HOST}:{self.port}/{db}"


PG = PgInstance("postgres", PG_PORT, ("ledger", "warehouse"))
PG2 = PgInstance("postgres2", PG2_PORT, ("warehouse",))


def pg_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    if os.geteuid() != 0:
        raise StackError("PostgreSQL server binaries are missing: sudo apt-get install postgresql")
    log("PostgreSQL server binaries missing; installing Debian's postgresql package")
    # no cluster of Debian's own on 5432: the stack runs its own under var/
    conf = Path("/etc/postgresql-common/createcluster.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    if "create_main_cluster = false" not in (conf.read_text() if conf.exists() else ""):
        with open(conf, "a") as fh:
            fh.write("\ncreate_main_cluster = false\n")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
        env=env, stdout=subprocess.DEVNULL)
    return pg_bindir()


def as_pg_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as `postgres` when we are root."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def run_pg(argv: list[str]) -> None:
    # cwd "/": the postgres user may not be able to enter the checkout
    run(as_pg_user(argv), stdout=subprocess.DEVNULL, cwd="/")


def pg_owner_ok(path: Path) -> bool:
    if os.geteuid() != 0:
        return True
    res = subprocess.run(as_pg_user(["test", "-w", str(path)]), check=False, cwd="/")
    return res.returncode == 0


def pg_prepare_home(inst: PgInstance) -> None:
    """Make var/<instance> a directory the postgres user owns and can reach.

    If the checkout sits under a directory postgres cannot traverse (e.g. /root), the data
    lives under /var/tmp and var/<instance> is a symlink to it.
    """
    home = inst.link
    if home.is_symlink() and not home.exists():
        home.unlink()
    home.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(home, "postgres", "postgres")
        if not pg_owner_ok(home):
            digest = hashlib.sha256(str(VAR).encode()).hexdigest()[:10]
            # a fixed, per-checkout directory owned by postgres; not a temp file
            real = Path(f"/var/tmp/spool-{digest}/{inst.name}")  # noqa: S108
            real.mkdir(parents=True, exist_ok=True)
            shutil.chown(real, "postgres", "postgres")
            shutil.chown(real.parent, "postgres", "postgres")
            home.rmdir()
            home.symlink_to(real, target_is_directory=True)
            log(f"{inst.name}: {VAR} is not reachable by the postgres user; data lives in {real}")
    log_dir = inst.home / "log"
    log_dir.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(log_dir, "postgres", "postgres")


def pg_initdb(inst: PgInstance, bindir: Path) -> None:
    if (inst.data / "PG_VERSION").exists():
        return
    pwfile = inst.home / "pwfile"
    pwfile.write_text(PG_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres", "postgres")
    log(f"{inst.name}: initdb into {inst.data}")
    run_pg([str(bindir / "initdb"), "-D", str(inst.data), "-U", PG_USER, f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--locale=C.UTF-8"])
    pwfile.unlink()
    with open(inst.data / "postgresql.conf", "a") as fh:
        fh.write(
            "\n# --- scripts/stack.py ---\n"
            f"listen_addresses = '{HOST}'\n"
            f"port = {inst.port}\n"
            "unix_socket_directories = ''\n"
            "max_connections = 200\n"
            "shared_buffers = 256MB\n"
            "max_wal_size = 2GB\n"
            "logging_collector = off\n"
            "log_min_messages = warning\n"
            "log_line_prefix = '%m [%p] %q%u@%d '\n"
        )


def pg_connect(inst: PgInstance, db: str = "postgres"):
    import psycopg2

    return psycopg2.connect(inst.dsn(db), connect_timeout=3)


def pg_ready(inst: PgInstance) -> bool:
    conn = pg_connect(inst)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchone() == (1,)
    finally:
        conn.close()


def pg_running(inst: PgInstance) -> int | None:
    pidfile = inst.data / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) and "postgres" in cmdline(pid) else None


def pg_start(inst: PgInstance) -> None:
    bindir = pg_bindir()
    pg_prepare_home(inst)
    pg_initdb(inst, bindir)
    if pg_running(inst) is None:
        log(f"{inst.name}: starting on {HOST}:{inst.port}")
        run_pg([str(bindir / "pg_ctl"), "-D", str(inst.data), "-l", str(inst.logfile),
                "-w", "-t", "60", "start"])
    wait_until(inst.name, lambda: pg_ready(inst), 60)
    conn = pg_connect(inst)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for db in inst.databases:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{db}"')
    finally:
        conn.close()
    log(f"{inst.name} ready on {HOST}:{inst.port} (databases: {', '.join(inst.databases)}; "
        f"log: {inst.logfile})")


def pg_stop(inst: PgInstance) -> bool:
    if pg_running(inst) is None:
        return False
    run_pg([str(pg_bindir() / "pg_ctl"), "-D", str(inst.data), "-m", "fast", "-w",
            "-t", "60", "stop"])
    return True


# --------------------------------------------------------------------------- s3 (moto)

S3_DIR = VAR / "s3"
S3 = Daemon("s3", S3_DIR / "moto.pid", marker="moto_server")


def moto_bin() -> Path:
    req = ROOT / "scripts/requirements-moto.txt"
    digest = hashlib.sha256(req.read_bytes()).hexdigest()[:12]
    venv = VAR / "venvs" / f"moto-{digest}"
    exe = venv / "bin" / "moto_server"
    if exe.exists():
        return exe
    log(f"installing moto's S3 server into {venv} ...")
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check",
         "--cache-dir", str(CACHE / "pip"), "-r", str(req)])
    return exe


def s3_client():
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=f"http://{HOST}:{S3_PORT}",
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
        config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1}),
    )


def s3_ready() -> bool:
    s3 = s3_client()
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=S3_BUCKET)
    s3.put_object(Bucket=S3_BUCKET, Key="_spool_ready", Body=b"ping")
    body = s3.get_object(Bucket=S3_BUCKET, Key="_spool_ready")["Body"].read()
    s3.delete_object(Bucket=S3_BUCKET, Key="_spool_ready")
    return body == b"ping"


def s3_start() -> None:
    if S3.pid() is None:
        exe = moto_bin()
        pid = S3.spawn([str(exe), "-H", HOST, "-p", str(S3_PORT)], S3_DIR / "logs" / "moto.log")
        log(f"s3 (moto) starting (pid {pid}), waiting for a put/get round trip ...")
    try:
        wait_until("s3", s3_ready, 60)
    except StackError as exc:
        raise StackError(f"{exc}; see {S3_DIR / 'logs' / 'moto.log'}") from exc
    log(f"s3 ready at http://{HOST}:{S3_PORT} (bucket {S3_BUCKET}; log: {S3_DIR / 'logs'})")


# --------------------------------------------------------------------------- commands

SERVICES = {
    "kafka": (kafka_start, KAFKA.stop, lambda: KAFKA.pid()),
    "postgres": (lambda: pg_start(PG), lambda: pg_stop(PG), lambda: pg_running(PG)),
    "s3": (s3_start, S3.stop, lambda: S3.pid()),
    "postgres2": (lambda: pg_start(PG2), lambda: pg_stop(PG2), lambda: pg_running(PG2)),
}
DEFAULT = ("postgres", "s3", "kafka")


def env_settings() -> dict[str, str]:
    """Connection settings for the local stack, as the jobs and tests read them."""
    return {
        "SPOOL_KAFKA_BOOTSTRAP": f"{HOST}:{KAFKA_PORT}",
        "SPOOL_LEDGER_DSN": PG.dsn("ledger"),
        "SPOOL_WAREHOUSE_DSN": PG.dsn("warehouse"),
        "SPOOL_WAREHOUSE2_DSN": PG2.dsn("warehouse"),
        "SPOOL_S3_ENDPOINT": f"http://{HOST}:{S3_PORT}",
        "SPOOL_S3_BUCKET": S3_BUCKET,
        "AWS_ACCESS_KEY_ID": S3_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def status() -> dict[str, dict]:
    out = {}
    for name, (_, _, pid_of) in SERVICES.items():
        pid = pid_of()
        out[name] = {"running": pid is not None, "pid": pid}
    out["kafka"]["address"] = f"{HOST}:{KAFKA_PORT}"
    out["kafka"]["logs"] = str(KAFKA_DIR / "logs")
    out["postgres"]["address"] = f"{HOST}:{PG_PORT}"
    out["postgres"]["logs"] = str(PG.logfile)
    out["postgres2"]["address"] = f"{HOST}:{PG2_PORT}"
    out["postgres2"]["logs"] = str(PG2.logfile)
    out["s3"]["address"] = f"http://{HOST}:{S3_PORT}"
    out["s3"]["logs"] = str(S3_DIR / "logs")
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
                       "'postgres2' only when named)")
        if cmd == "status":
            p.add_argument("--json", action="store_true", help="print JSON")
        if cmd == "stop":
            p.add_argument("--all", action="store_true", help="also stop postgres2")
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
            names = args.services or ([*DEFAULT, "postgres2"] if args.all else list(DEFAULT))
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
