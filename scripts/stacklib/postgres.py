"""PostgreSQL from Debian's packages: the ``ledger`` and ``warehouse`` databases, and a second
instance (``postgres2``) that tests use as a tenant warehouse that can be taken away.

``initdb``/``pg_ctl`` run as the ``postgres`` user when root; ready means a query answered.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from stacklib.base import HOST, VAR, StackError, cmdline, log, pid_alive, run, wait_until

PORT = int(os.environ.get("SPOOL_PG_PORT", "15432"))
PORT2 = int(os.environ.get("SPOOL_PG2_PORT", "15433"))
USER = "spool"
PASSWORD = "spool"  # noqa: S105 - local development stack only, bound to loopback


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
        return f"postgresql://{USER}:{PASSWORD}@{HOST}:{self.port}/{db}"


PG = PgInstance("postgres", PORT, ("ledger", "warehouse"))
PG2 = PgInstance("postgres2", PORT2, ("warehouse",))


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
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres", "postgres")
    log(f"{inst.name}: initdb into {inst.data}")
    run_pg([str(bindir / "initdb"), "-D", str(inst.data), "-U", USER, f"--pwfile={pwfile}",
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


def running(inst: PgInstance) -> int | None:
    pidfile = inst.data / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) and "postgres" in cmdline(pid) else None


def start(inst: PgInstance) -> None:
    bindir = pg_bindir()
    pg_prepare_home(inst)
    pg_initdb(inst, bindir)
    if running(inst) is None:
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


def stop(inst: PgInstance) -> bool:
    if running(inst) is None:
        return False
    run_pg([str(pg_bindir() / "pg_ctl"), "-D", str(inst.data), "-m", "fast", "-w",
            "-t", "60", "stop"])
    return True
