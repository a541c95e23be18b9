"""Classifying a failed load once, at the edge: transient (retry later) or terminal.

Object store outages are transient like warehouse outages; a missing or unreadable batch
file is terminal; warehouse errors are the destination dialect's to judge.
"""

from __future__ import annotations

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from spool.objectstore import TRANSIENT_S3_CODES
from spool.warehouse.dialects import Dialect, TerminalError, TransientError


def classify(dialect: Dialect, exc: BaseException) -> type[Exception]:
    """TransientError or TerminalError."""
    if isinstance(exc, (ConnectionError, TimeoutError, BotoConnectionError, HTTPClientError)):
        return TransientError  # unreachable endpoint, reset connection, read timeout
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return TransientError if code in TRANSIENT_S3_CODES else TerminalError
    return dialect.classify(exc)
