"""moto's S3 server with the stack's bucket made before it accepts a connection.

Run by moto's own venv (scripts/stacklib/s3.py): ``python moto_server_with_bucket.py HOST
PORT BUCKET``. moto keeps everything in memory, so a restarted server has lost its objects
and its bucket; made here, the bucket exists from the server's first answer, and a client
that retries through a restart (the spool job waiting out an S3 outage) never meets a
server without it.
"""

from __future__ import annotations

import sys


def main(host: str, port: str, bucket: str) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import main as serve

    s3_backends[DEFAULT_ACCOUNT_ID]["aws"].create_bucket(bucket, "us-east-1")
    serve(["-H", host, "-p", port])


if __name__ == "__main__":
    main(*sys.argv[1:4])
