"""Every spool command and subcommand explains itself with --help and an example."""

from __future__ import annotations

import argparse
import contextlib
import io
import re

import pytest

from spool.cli import build_parser

COMMANDS = [["produce"], ["topics"], ["topics", "create"], ["topics", "list"], ["tenants"],
            ["tenants", "add"], ["tenants", "list"],
            ["tenants", "show"], ["tenants", "remove"], ["status"], ["batches"],
            ["batches", "list"], ["batches", "show"], ["batches", "retry"], ["rejected"],
            ["tenants", "update"], ["webhooks"], ["webhooks", "deliver"], ["webhooks", "list"],
            ["webhooks", "retry"], ["webhooks", "test"], ["check"], ["check", "offsets"],
            ["maps", "test"], ["maps", "show"], ["maps", "history"], ["maps", "remove"]]


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


def parsers(parser=None, path=()):
    """(command words, parser) of the spool command and every subcommand, depth first."""
    parser = parser or build_parser()
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from parsers(child, (*path, name))


RST = re.compile(r"``|:(class|func|meth|mod|attr|ref|doc):`|`[^`\s][^`]*`_")


@pytest.mark.parametrize("path, parser", list(parsers()),
                         ids=[" ".join(path) or "spool" for path, _ in parsers()])
def test_help_shows_no_rst_markup(path, parser):
    text = parser.format_help()
    assert not RST.search(text), f"spool {' '.join(path)} --help: {RST.search(text)[0]!r}"


@pytest.mark.parametrize("sub", ["test", "show", "history", "remove"])
def test_maps_help_describes_its_arguments_with_an_example(sub):
    text = dict(parsers())[("maps", sub)].format_help()
    assert f"spool maps {sub} acme" in text
    positionals = text.split("positional arguments:")[1].split("options:")[0]
    for name in ("tenant", "stream"):  # "  tenant   the tenant id ..." on one line
        (line,) = [ln for ln in positionals.splitlines() if ln.split()[:1] == [name]]
        assert len(line.split()) > 2, f"spool maps {sub}: {name} has no description"
