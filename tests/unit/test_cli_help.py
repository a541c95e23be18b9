"""Every spool command and subcommand explains itself with --help and an example."""

from __future__ import annotations

import contextlib
import io

import pytest

from spool.cli import build_parser

COMMANDS = [["produce"], ["topics"], ["topics", "create"], ["topics", "list"], ["tenants"],
            ["tenants", "add"], ["tenants", "list"],
            ["tenants", "show"], ["tenants", "remove"], ["status"], ["batches"],
            ["batches", "list"], ["batches", "show"], ["batches", "retry"], ["rejected"],
            ["tenants", "update"], ["webhooks"], ["webhooks", "deliver"], ["webhooks", "list"],
            ["webhooks", "retry"], ["webhooks", "test"], ["check"], ["check", "offsets"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_an_example(command):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command, "--help"])
    assert exit_.value.code == 0
    text = out.getvalue()
    assert "example" in text.lower() and f"spool {' '.join(command)}" in text


def test_a_bad_command_line_exits_2():
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["status", "--no-such-flag"])
    assert exit_.value.code == 2
