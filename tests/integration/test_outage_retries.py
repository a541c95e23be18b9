"""The ledger and the object store wait out an outage of their service (patience None), fail
at once when asked to (patience 0, the CLI), and never wait on a configuration error.

Each test takes away a private instance of the service (tests/e2e/outages.py), never the
session's shared one.
"""

from __future__ import annotations

import logging
import threading

import psycopg2
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from spool.ledger import store
from spool.ledger.store import Ledger
from spool.objectstore import ObjectStore, S3Config
from tests.e2e.jobs import wait_for
from tests.e2e.outages import PrivateService


class Call(threading.Thread):
    """``fn()`` on a thread of its own: its result or its error."""

    def __init__(self, fn) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result = self.error = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            self.error = exc


def warned(caplog, text: str):
    return lambda: any(text in r.getMessage() for r in caplog.records)


def test_a_ledger_statement_waits_for_a_restarted_postgresql(caplog):
    caplog.set_level(logging.INFO, logger="spool.ledger.store")
    store._ONCE.forget("ledger")  # the process's once-a-minute warning, not used up before
    with PrivateService("postgres") as pg:
        ledger = Ledger(pg.dsn(), patience=None)
        ledger.migrate()
        pg.stop()
        with pytest.raises(psycopg2.OperationalError):  # the CLI's patience: none
            Ledger(pg.dsn(), patience=0).run(lambda cur: cur.execute("SELECT 1"))
        call = Call(lambda: ledger.run(lambda cur: (cur.execute("SELECT 42"),
                                                    cur.fetchone()[0])[1]))
        call.start()
        wait_for("the statement waiting for the ledger", warned(caplog, "ledger unreachable"),
                 30)
        assert call.is_alive()
        pg.start()
        call.join(60)
        assert (call.result, call.error) == (42, None)
        assert warned(caplog, "ledger reachable again after")()
        ledger.close()


def test_a_rejected_password_is_not_waited_for():
    with PrivateService("postgres") as pg:
        ledger = Ledger(pg.dsn().replace("spool:spool@", "spool:wrong@"), patience=None)
        call = Call(ledger.migrate)
        call.start()
        call.join(30)
        assert not call.is_alive()
        assert isinstance(call.error, psycopg2.OperationalError)
        assert "password authentication failed" in str(call.error)


def test_an_s3_write_waits_for_a_restarted_endpoint(stack, caplog):
    caplog.set_level(logging.INFO, logger="spool.objectstore")
    with PrivateService("s3") as s3:
        config = S3Config(endpoint_url=s3.endpoint,
                          access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
                          secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
                          region_name=stack.env["AWS_DEFAULT_REGION"])
        uri = f"s3://{stack.s3_bucket}/outage/batch.parquet"
        patient, hasty = ObjectStore(config, patience=None), ObjectStore(config, patience=0)
        s3.stop()
        with pytest.raises(EndpointConnectionError):  # patience 0: botocore's retries only
            hasty.read(uri)
        call = Call(lambda: patient.put_atomic(uri, b"spooled"))
        call.start()
        wait_for("the write waiting for S3", warned(caplog, "unreachable for"), 60)
        assert call.is_alive()
        s3.start()
        call.join(90)
        assert call.error is None and not call.is_alive()
        assert patient.read(uri) == b"spooled"
        assert warned(caplog, "reachable again after")()
        with pytest.raises(ClientError, match="NoSuchKey"):  # not waited for
            patient.read(uri + ".missing")


def test_a_read_stall_shows_in_spool_status_until_the_partition_answers(ledger_dsn):
    import json
    import subprocess
    import sys

    from spool.read_stalls import ReadStalls, StallLedger
    from tests.e2e.jobs import ROOT

    Ledger(ledger_dsn).migrate()

    def status(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "spool.cli", "status", "--ledger-dsn",
                               ledger_dsn, *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=60, check=True).stdout

    stalls = ReadStalls("spool", StallLedger(ledger_dsn))
    stalls.read("fatq", 3)  # a reader that starts: nothing open to close
    stalls.failed("fatq", 3, ConnectionRefusedError("111 ECONNREFUSED"))
    stalls.failed("fatq", 3, ConnectionRefusedError("111 ECONNREFUSED"))  # noted once
    assert "reading fatq partition 3 (group spool): stalled for" in status()
    line = [json.loads(x) for x in status("--json").splitlines() if '"partition"' in x]
    assert [(x["topic"], x["partition"], x["consumer_group"]) for x in line] == \
        [("fatq", 3, "spool")]
    assert line[0]["error"] == "ConnectionRefusedError: 111 ECONNREFUSED"
    stalls.read("fatq", 3)
    assert "reading fatq" not in status()
    # a reader that died while it waited left its stall open: the next one closes it
    ReadStalls("spool", StallLedger(ledger_dsn)).failed("fatq", 1, TimeoutError("t"))
    assert "reading fatq partition 1" in status()
    ReadStalls("spool", StallLedger(ledger_dsn)).read("fatq", 1)
    assert "reading fatq" not in status()
