"""moto's standalone server: an S3-compatible HTTP endpoint on 127.0.0.1 with one bucket,
made before the server answers its first request (a restart empties the emulator).

moto lives in a venv of its own under ``var/venvs`` so its many dependencies never meet
Beam's; ready means an object was written and read back. It is an emulator: it checks the
S3 API calls Spool makes, not S3's consistency, throttling or permissions.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
from pathlib import Path

from stacklib.base import CACHE, HOST, ROOT, VAR, Daemon, StackError, log, run, wait_until

PORT = int(os.environ.get("SPOOL_S3_PORT", "19000"))
BUCKET = "spool"
KEY_ID = "spool-local"
SECRET = "spool-local-secret"  # noqa: S105 - moto accepts any key

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


def client():
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=f"http://{HOST}:{PORT}",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1}),
    )


def ready() -> bool:
    s3 = client()
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="_spool_ready", Body=b"ping")
    body = s3.get_object(Bucket=BUCKET, Key="_spool_ready")["Body"].read()
    s3.delete_object(Bucket=BUCKET, Key="_spool_ready")
    return body == b"ping"


def start() -> None:
    if S3.pid() is None:
        exe = moto_bin()
        # moto's own server, with the bucket made before the first request (a restarted
        # emulator forgets it; see moto_server_with_bucket.py); "moto_server" in the command
        # line is the daemon's marker
        boot = Path(__file__).resolve().parent / "moto_server_with_bucket.py"
        pid = S3.spawn([str(exe.parent / "python"), str(boot), HOST, str(PORT), BUCKET],
                       S3_DIR / "logs" / "moto.log")
        log(f"s3 (moto) starting (pid {pid}), waiting for a put/get round trip ...")
    try:
        wait_until("s3", ready, 60)
    except StackError as exc:
        raise StackError(f"{exc}; see {S3_DIR / 'logs' / 'moto.log'}") from exc
    log(f"s3 ready at http://{HOST}:{PORT} (bucket {BUCKET}; log: {S3_DIR / 'logs'})")
