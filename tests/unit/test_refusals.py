"""What each dialect calls a refusal (terminal for the whole destination) and what it still
retries, on the drivers' own exceptions."""

from __future__ import annotations

import duckdb
import snowflake.connector.errors as sf_errors

from spool.warehouse.dialects import DIALECTS, TerminalError, TransientError


def test_a_duckdb_file_that_cannot_be_opened_is_refused_not_retried(tmp_path):
    try:
        duckdb.connect(str(tmp_path / "no" / "such" / "folder" / "w.duckdb"))
    except duckdb.Error as exc:
        missing = exc
    errors = DIALECTS["duckdb"].errors
    assert errors.refused(missing) and errors.classify(missing) is TerminalError
    held = duckdb.IOException('IO Error: Could not set lock on file "w.duckdb": Conflicting '
                              "lock is held in python (PID 1)")
    assert not errors.refused(held) and errors.classify(held) is TransientError
    # a batch file missing on disk is that batch's failure, not the destination's
    assert not errors.refused(FileNotFoundError(2, "No such file or directory"))


def test_a_snowflake_login_refused_is_terminal_and_a_lost_connection_transient():
    errors = DIALECTS["snowflake"].errors
    login = sf_errors.DatabaseError(msg="Incorrect username or password was specified.",
                                    errno=390100, sqlstate="08004")
    assert errors.refused(login) and errors.classify(login) is TerminalError
    # the connector may raise it as an OperationalError, which is otherwise "could not
    # connect, try again"
    login_op = sf_errors.OperationalError(msg="Incorrect username or password was specified.",
                                          errno=390100)
    assert errors.classify(login_op) is TerminalError
    gone = sf_errors.ProgrammingError(msg="Database 'NOPE' does not exist or not authorized.",
                                      errno=2003, sqlstate="02000")
    assert errors.classify(gone) is TerminalError
    # an expired token is mended by a new connection; one table's absence is that table's
    expired = sf_errors.DatabaseError(msg="Authentication token has expired.  The user must "
                                      "authenticate again.", errno=390114, sqlstate="08001")
    assert not errors.refused(expired)
    table = sf_errors.ProgrammingError(msg="Table 'ORDERS' does not exist or not authorized.",
                                       errno=2003, sqlstate="42S02")
    assert not errors.refused(table)
    assert errors.refused(gone)
    lost = sf_errors.OperationalError(msg="Connection reset by peer", errno=250003)
    assert not errors.refused(lost) and errors.classify(lost) is TransientError
