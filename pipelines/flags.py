"""The jobs' command lines: every flag is one the job or Apache Beam knows, every value one
the job can run with, all checked before anything is built or reached.

Beam's PipelineOptions drops a flag it does not know with a warning ("Discarding unparseable
args"), so ``--consumer-group=ux`` ran the spool job in group ``spool``, re-reading the topic;
and a bad value surfaced as a traceback from deep inside pipeline construction. Here each
mistake is one line on stderr naming the flag (and the nearest real one, or what values it
takes), and the job ends with exit 2, as for any wrong command line.

Value rules live with the options, as argparse ``type=`` checks (:class:`Number`,
:func:`text`, ...), so a flag and what it allows are declared together; :func:`parse_options`
runs them all and reports every problem at once.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import math
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from spool import secrets

# Beam option classes outside pipeline_options.py, registered only when their runner's module
# is imported: loaded when a flag is otherwise unknown, so a normal start does not pay for them
OPTIONAL_BEAM_OPTIONS = ("apache_beam.runners.render", "apache_beam.runners.dask.dask_runner")


@dataclass(frozen=True)
class Number:
    """An argparse ``type`` for a number within bounds; its error text says what is allowed."""

    kind: type = float
    above: float | None = None
    at_least: float | None = None
    at_most: float | None = None
    unit: str = ""

    @property
    def allowed(self) -> str:
        what = "a whole number" if self.kind is int else "a number"
        what += f" of {self.unit}" if self.unit else ""
        if self.at_least is not None and self.at_most is not None:
            return f"give {what} from {self.at_least:g} to {self.at_most:g}"
        if self.above is not None:
            return f"give {what} above {self.above:g}"
        if self.at_least is not None:
            return f"give {what}, {self.at_least:g} or more"
        return f"give {what}"

    def __call__(self, raw):
        try:
            value = self.kind(raw)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(self.allowed) from None
        if (not math.isfinite(value)
                or (self.above is not None and not value > self.above)
                or (self.at_least is not None and value < self.at_least)
                or (self.at_most is not None and value > self.at_most)):
            raise argparse.ArgumentTypeError(self.allowed)
        return value


SECONDS = Number(float, above=0, unit="seconds")
SECONDS_OR_ZERO = Number(float, at_least=0, unit="seconds")
COUNT = Number(int, above=0)
PORT = Number(int, at_least=0, at_most=65535)


def text(raw: str) -> str:
    """A value that must not be empty (a topic, a group, a header name)."""
    if not str(raw).strip():
        raise argparse.ArgumentTypeError("give a non-empty value")
    return raw


def key_value(raw: str) -> str:
    """``KEY=VALUE``, as --kafka_config takes it."""
    key, sep, _ = str(raw).partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError("give KEY=VALUE, e.g. security_protocol=SSL")
    return raw


def host_ports(raw: str) -> str:
    """``host:port[,host:port...]``, as Kafka's bootstrap servers."""
    for server in str(raw).split(","):
        host, sep, port = server.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise argparse.ArgumentTypeError("give host:port[,host:port...], e.g. "
                                             "broker-1:9092,broker-2:9092")
    return raw


def dsn(raw: str) -> str:
    """A PostgreSQL DSN (URL or key=value) or a reference (env:NAME, file:/path); only its
    syntax is checked here: the job reaches the database once its options are sound."""
    value = str(raw)
    if value.startswith("env:"):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value[4:]):
            raise argparse.ArgumentTypeError("env: takes an environment variable's name, "
                                             "e.g. env:SPOOL_LEDGER_DSN")
        return raw
    if value.startswith("file:"):
        if not value[5:]:
            raise argparse.ArgumentTypeError("file: takes a path, e.g. file:/run/secrets/ledger")
        return raw
    import psycopg2.extensions

    try:
        psycopg2.extensions.parse_dsn(value)
    except psycopg2.ProgrammingError:
        raise argparse.ArgumentTypeError(
            "give postgresql://user@host:port/db, 'host=... dbname=...', env:NAME or "
            "file:/path") from None
    return raw


def location(raw: str) -> str:
    """A local folder or URL of the spool; an s3:// URL needs its bucket."""
    value = str(raw)
    scheme, sep, rest = value.partition("://")
    if not value.strip() or (sep and (not scheme or not rest.split("/")[0])):
        raise argparse.ArgumentTypeError("give a folder or s3://bucket/prefix")
    return raw


class _Refused(Exception):
    """A command line argparse cannot read at all (say, a flag without its value)."""


class _CheckingParser(_BeamArgumentParser):
    def error(self, message):
        raise _Refused(message.removeprefix("argument "))


def beam_option_classes(optional: bool = False) -> list[type]:
    """Every PipelineOptions class Apache Beam has registered (the runners' too); with
    ``optional``, after importing the option modules of runners not loaded by default."""
    if optional:
        for module in OPTIONAL_BEAM_OPTIONS:
            # a runner whose extra is not installed has no flags to know
            with contextlib.suppress(ImportError):
                importlib.import_module(module)
    found, todo = [], list(PipelineOptions.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("apache_beam.") and cls not in found:
            found.append(cls)
    return found


def suggest(flag: str, known: Iterable[str]) -> str | None:
    """The known flag a mistyped ``flag`` most likely meant: the same with ``_`` for ``-``
    (``--consumer-group`` → ``--consumer_group``), else the closest spelling, if close."""
    name = flag.split("=", 1)[0].lstrip("-")
    names = {k.lstrip("-"): k for k in known}
    underscored = name.replace("-", "_")
    if underscored in names and underscored != name:
        return names[underscored]
    close = difflib.get_close_matches(underscored, list(names), n=1, cutoff=0.75)
    return names[close[0]] if close else None


def _checking_parser(classes: Sequence[type], problems: list[str]) -> _CheckingParser:
    """A parser of all ``classes``' flags whose value checks record a problem each, as
    ``--flag=value: what is allowed``, instead of stopping at the first."""
    parser = _CheckingParser(allow_abbrev=False, add_help=False)
    for cls in classes:
        cls._add_argparse_args(parser)
    for action in parser._actions:
        if action.type is not None or action.choices is not None:
            flag = max(action.option_strings, key=len)
            action.type = _recording(flag, action.type, action.choices, problems)
            action.choices = None
    return parser


def _recording(flag: str, convert: Callable | None, choices, problems: list[str]) -> Callable:
    def check(raw):
        try:
            value = convert(raw) if convert else raw
        except argparse.ArgumentTypeError as exc:
            problems.append(f"{flag}={secrets.redact(str(raw))}: {exc}")
            return raw
        except (TypeError, ValueError):
            kind = {int: "a whole number", float: "a number"}.get(convert, "another value")
            problems.append(f"{flag}={raw}: give {kind}")
            return raw
        if choices is not None and value not in choices:
            problems.append(f"{flag}={raw}: choose one of {', '.join(map(str, choices))}")
        return value
    return check


def unknown_flags(unparsed: list[str]) -> list[str]:
    """The flags (and stray words) among what the parser left: a word right after a flag
    without ``=`` is taken as that flag's value, as Beam would."""
    found, after_flag = [], False
    for word in unparsed:
        if word.startswith("-") and len(word) > 1 and not _is_number(word):
            found.append(word.split("=", 1)[0])
            after_flag = "=" not in word
        elif after_flag:
            after_flag = False
        else:
            found.append(word)
    return found


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def problems(argv: Sequence[str], job_module: str, classes: Sequence[type]) -> list[str]:
    """Every mistake in ``argv`` for the job of ``job_module``, one line each ([] if none)."""
    found: list[str] = []
    classes = [*classes, RunnerOptions]
    for optional in (False, True):
        values: list[str] = []
        parser = _checking_parser([*beam_option_classes(optional), *classes], values)
        try:
            _, unparsed = parser.parse_known_args(list(argv))
        except _Refused as exc:
            return [f"error: {exc}"]
        unknown = unknown_flags(unparsed)
        if not unknown:
            break
    known = [o for a in parser._actions for o in a.option_strings]
    for word in unknown:
        if not word.startswith("-"):
            found.append(f"error: unexpected argument {word!r}: every option is a --flag=value")
            continue
        near = suggest(word, known)
        found.append(f"error: unknown flag {word}; did you mean {near}?" if near else
                     f"error: unknown flag {word}; 'python -m {job_module} --help' lists the "
                     "job's flags (one for the runner itself goes in --runner_option "
                     f"{word.lstrip('-')}=VALUE)")
    found += [f"error: {line}" for line in values]
    found += runner_option_problems(argv, known)
    return found


class RunnerOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--runner_option", action="append", default=[], metavar="NAME=VALUE",
            help="A flag for the runner's own job server that Beam's Python options do not "
            "know, repeatable: --runner_option checkpointing_interval=60000 passes "
            "--checkpointing_interval=60000 to Flink's. Any other flag the job does not know "
            "ends it with exit 2.")


def runner_option_problems(argv: Sequence[str], known: list[str]) -> list[str]:
    """A --runner_option must name a flag only the runner knows: a job's or Beam's own flag
    is given as itself."""
    parser = _CheckingParser(allow_abbrev=False, add_help=False)
    RunnerOptions._add_argparse_args(parser)
    out = []
    for pair in parser.parse_known_args(list(argv))[0].runner_option:
        name = pair.split("=", 1)[0]
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            out.append(f"error: --runner_option={pair}: give NAME=VALUE, e.g. "
                       "checkpointing_interval=60000")
        elif f"--{name}" in known:
            out.append(f"error: --runner_option={pair}: --{name} is a flag of the job or of "
                       f"Beam; give it as --{pair}")
    return out


def parse_options(argv: Sequence[str] | None, job_module: str,
                  classes: Sequence[type]) -> PipelineOptions:
    """The job's PipelineOptions from ``argv`` (default: the command line), after every
    check; any mistake ends the job here, one line each, exit 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    found = problems(args, job_module, classes)
    if found:
        print("\n".join(found), file=sys.stderr)
        raise SystemExit(2)
    # each --runner_option NAME=VALUE becomes --NAME=VALUE, which Beam hands to the runner
    extra = [f"--{pair}" for pair in PipelineOptions(args).view_as(RunnerOptions).runner_option]
    return PipelineOptions(args + extra)
