"""``spool produce``: feed the fat queue from a file or stdin, and say what was delivered.

Input is one JSON object per line: Spool envelopes, or (with ``--singer``) a Singer tap's
output, each message sent with the tenant in a Kafka header. Messages are keyed so that
order holds where it matters: envelopes by (tenant, stream), Singer messages by tenant (a
tap's SCHEMA, RECORD, ACTIVATE_VERSION and STATE stay in order, in one partition). A
Singer tap's messages carry ``--state-id`` in a Kafka header: the spool job keeps the
tenant's latest STATE per state id, so two taps feeding one tenant keep a state each.

A topic that does not exist ends the command at once, naming the command that creates it
(the broker does not create topics on first use).

The whole input is checked before anything is sent: each line must be JSON and (without
``--singer``) a valid envelope, checked as the spool job checks it. While any line is bad
nothing is sent: every bad line is named with its number and why, and the command exits
with 2; ``--skip-invalid`` sends the others and names the lines it skipped. Singer output
given without ``--singer`` is refused, saying to add it.

Nothing is lost silently: the command waits for the broker's acknowledgement of every
message and ends by reporting how many were delivered; when the broker is unreachable it
stops, names the problem, reports what was and was not delivered, and exits with 1.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time

from spool import kafka_topics
from spool.commands.common import plain, usage_error
from spool.ingest.decode import parse
from spool.ingest.envelope import decode_envelope
from spool.ingest.messages import Kind
from spool.kafka_config import producer_config

EXAMPLE = """examples:
  spool produce records.jsonl                               # Spool envelopes, one per line
  tap-postgres --config tap.json | spool produce --singer --tenant acme --state-id tap-postgres
  spool produce --topic spool.fatq --kafka-config security_protocol=SSL - < records.jsonl

  spool produce --skip-invalid records.jsonl               # send the good lines, name the rest

The input is checked first: while a line is bad (not JSON, not a valid envelope) nothing is
sent, and every bad line is named.

exit codes: 0 every message delivered (with --skip-invalid: every good one); 1 stopped by
broker trouble, with the count of messages delivered and not delivered; 2 bad command line
or bad input (a bad line, a file that cannot be read, Singer output without --singer)."""


# the Kafka header the spool job reads a STATE's state id from (spool.ingest.singer)
STATE_ID_HEADER = "state_id"


def _state_id(text: str) -> str:
    if not text.strip() or len(text) > 255:
        raise argparse.ArgumentTypeError(f"{text!r} is not a state id: give a name of 1 to "
                                         "255 characters, such as the tap's (tap-postgres)")
    return text


def register(sub) -> None:
    p = sub.add_parser("produce", help="send records (envelopes or Singer output) to the queue",
                       description=plain(__doc__.split("\n\n")[0]), epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?", default="-",
                   help="a file of JSON lines, or - for stdin (default)")
    p.add_argument("--singer", action="store_true",
                   help="the input is a Singer tap's output (needs --tenant)")
    p.add_argument("--tenant", help="the tenant of every message (Singer: required; envelopes: "
                   "checked against each envelope's tenant)")
    p.add_argument("--topic", default="spool.fatq", help="the fat queue (default spool.fatq)")
    p.add_argument("--bootstrap", default=None, metavar="HOST:PORT",
                   help="Kafka bootstrap servers (default $SPOOL_KAFKA_BOOTSTRAP, else "
                   "127.0.0.1:19092)")
    p.add_argument("--state-id", type=_state_id, metavar="NAME",
                   help="Singer: whose STATE the tap's is, e.g. the tap's name; each state id "
                   "of a tenant keeps its own latest STATE ('spool state export'). Spool "
                   "cannot see the tap's name in its output: without this, 'default'")
    p.add_argument("--tenant-header", default="tenant",
                   help="Kafka header that carries the tenant (default tenant)")
    p.add_argument("--kafka-config", action="append", default=[], metavar="KEY=VALUE",
                   help="extra kafka-python producer setting, repeatable")
    p.add_argument("--timeout", type=float, default=20.0,
                   help="seconds to wait for the broker before giving up (default 20)")
    p.add_argument("--skip-invalid", action="store_true",
                   help="send the good lines and name the bad ones on stderr (default: send "
                   "nothing while any line is bad)")
    p.set_defaults(func=produce)


class Progress:
    """Counts on stderr, refreshed twice a second, when stderr is a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.started = time.monotonic()
        self.shown = 0.0

    def update(self, sent: int, acked: int, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self.shown < 0.5):
            return
        self.shown = now
        rate = acked / max(now - self.started, 1e-6)
        end = "\n" if final else ""
        print(f"\r{sent} sent, {acked} acknowledged, {rate:,.0f} records/s", end=end,
              file=sys.stderr, flush=True)


class Delivery:
    """Messages sent and what became of them: acknowledged, failed, or still pending."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.pending: list = []
        self.sent = self.acked = self.failed = 0
        self.problem: str | None = None

    def add(self, future) -> None:
        self.pending.append(future)
        self.sent += 1
        if len(self.pending) >= 10_000:
            self.settle(block=False)

    def settle(self, block: bool) -> None:
        """Count the acknowledgements in; wait for the pending ones when ``block``."""
        from kafka.errors import KafkaError

        keep = []
        for future in self.pending:
            if not future.is_done and not block:
                keep.append(future)
                continue
            try:
                future.get(timeout=self.timeout)
                self.acked += 1
            except KafkaError as exc:
                self.failed += 1
                self.problem = self.problem or f"the broker did not acknowledge a message: {exc}"
        self.pending = keep


def _open_producer(args: argparse.Namespace, bootstrap: str, waiting: int):
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    timeout_ms = int(args.timeout * 1000)
    try:
        return KafkaProducer(**producer_config(
            bootstrap, args.kafka_config, max_block_ms=timeout_ms,
            request_timeout_ms=min(timeout_ms, 10_000), delivery_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms))
    except KafkaError:  # kafka-python 3: KafkaTimeoutError "Unable to bootstrap"
        raise SystemExit(f"error: cannot reach Kafka at {bootstrap}: no broker answered within "
                         f"{args.timeout:.0f} s; 0 messages delivered, {waiting} not "
                         "delivered") from None


def _check_topic(args: argparse.Namespace, bootstrap: str, waiting: int) -> None:
    """End at once, in one line, when the topic does not exist or no broker answers: a
    producer would otherwise wait out its metadata timeout for every message."""
    try:
        kafka_topics.require(bootstrap, args.topic, args.kafka_config,
                             min(args.timeout, kafka_topics.CHECK_SECONDS),
                             bootstrap_flag=f"--bootstrap {args.bootstrap}" if args.bootstrap
                             else "")
    except kafka_topics.TopicError as exc:
        raise SystemExit(f"error: {exc}; 0 messages delivered, {waiting} not delivered") \
            from None


_POSITION = re.compile(r"line 1 column (\d+) \(char \d+\)")
SHOWN = 10  # bad lines named in the message; the rest are counted
SPOOL_LIMIT = 64 << 20  # stdin is kept in memory up to this, on disk beyond


def _open_input(path: str):
    """The input, to be read twice (checked, then sent): the file, or what cannot be read
    twice (stdin, a pipe such as <(tap ...), a FIFO) copied aside."""
    try:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        usage_error(f"cannot read {path}: {exc.strerror}")
    if stream.seekable():
        return stream
    copy = tempfile.SpooledTemporaryFile(max_size=SPOOL_LIMIT)  # noqa: SIM115
    while chunk := stream.read(1 << 20):
        copy.write(chunk)
    if stream is not sys.stdin.buffer:
        stream.close()
    copy.seek(0)
    return copy


def _problem(args: argparse.Namespace, line: bytes) -> tuple[str, bool]:
    """(what is wrong with one input line, or "", whether it is a Singer message)."""
    obj, rejected = parse(line.rstrip(b"\r\n"))
    if rejected is not None:  # the line's own position, not the parser's "line 1 column 9"
        return _POSITION.sub(r"column \1", rejected.message.removeprefix("the message is ")), \
            False
    if not isinstance(obj, dict):
        return f"a JSON {type(obj).__name__}, not an object", False
    if args.singer:
        return ("" if isinstance(obj.get("type"), str) else
                "not a Singer message (no 'type'); is it an envelope? then drop --singer"), False
    if "type" in obj and "data" not in obj:  # as the spool job tells them apart
        return (f"a Singer {str(obj['type'])[:20]} message, not an envelope; send Singer "
                "output with --singer --tenant TENANT"), True
    tenant = obj.get("tenant")
    if args.tenant and tenant != args.tenant:
        return f"envelope tenant {tenant!r} is not --tenant {args.tenant!r}", False
    decoded = decode_envelope(obj, None)
    return (decoded.message or "", False) if decoded.kind is Kind.REJECTED else ("", False)


class Checked:
    """The input's lines, checked: how many to send, and which are bad and why."""

    def __init__(self, args: argparse.Namespace, stream) -> None:
        self.good = self.singer = 0
        self.bad: set[int] = set()
        self.shown: list[str] = []
        for lineno, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            why, singer = _problem(args, line)
            self.singer += singer
            if not why:
                self.good += 1
                continue
            self.bad.add(lineno)
            if len(self.shown) < SHOWN:
                self.shown.append(f"line {lineno}: {why}")
        stream.seek(0)

    def bad_lines(self) -> str:
        more = len(self.bad) - len(self.shown)
        return "; ".join(self.shown + ([f"and {more} more"] if more > 0 else []))


def _checked(args: argparse.Namespace, stream) -> Checked:
    """Check every line before anything is sent: refuse Singer output without --singer, and
    bad lines unless --skip-invalid (then name them and go on)."""
    checked = Checked(args, stream)
    if checked.singer and checked.singer >= checked.good:
        usage_error("this looks like a Singer stream: add --singer --tenant TENANT "
                    f"({checked.singer} line(s) are Singer messages); nothing sent")
    if checked.bad and not args.skip_invalid:
        usage_error(f"{len(checked.bad)} bad line(s), nothing sent: {checked.bad_lines()}; "
                    "fix them, or pass --skip-invalid to send the others")
    if checked.bad:
        print(f"skipped {len(checked.bad)} bad line(s): {checked.bad_lines()}",
              file=sys.stderr)
    return checked


def _key(args: argparse.Namespace, line: bytes) -> bytes:
    """The Kafka key of a checked line: the tenant (Singer), or (tenant, stream)."""
    if args.singer:
        return args.tenant.encode()
    obj, _ = parse(line)
    return f"{obj.get('tenant')}\x1f{obj.get('stream')}".encode()


def produce(args: argparse.Namespace) -> int:

    if args.singer and not args.tenant:
        usage_error("--singer needs --tenant (Singer messages do not name one)")
    if args.state_id and not args.singer:
        usage_error("--state-id goes with --singer (only a Singer tap sends STATE)")
    bootstrap = args.bootstrap or os.environ.get("SPOOL_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    stream = _open_input(args.input)
    try:
        checked = _checked(args, stream)
        _check_topic(args, bootstrap, checked.good)
        producer = _open_producer(args, bootstrap, checked.good)
        out = _send(args, bootstrap, producer, stream, checked.bad)
    finally:
        stream.close()
    not_delivered = checked.good - out.acked
    summary = f"{out.acked} message(s) delivered to {args.topic}"
    if out.problem or out.failed or not_delivered:
        print(f"error: {out.problem or 'some messages were not delivered'}; {summary}, "
              f"{not_delivered} not delivered", file=sys.stderr)
        return 1
    print(summary)
    return 0


def _send(args: argparse.Namespace, bootstrap: str, producer, stream, skip: set[int]):
    from kafka.errors import KafkaError

    headers = [(args.tenant_header, args.tenant.encode())] if args.tenant else []
    if args.state_id:
        headers.append((STATE_ID_HEADER, args.state_id.encode()))
    progress = Progress()
    out = Delivery(args.timeout)
    try:
        for lineno, line in enumerate(stream, start=1):
            if not line.strip() or lineno in skip:
                continue
            try:
                out.add(producer.send(args.topic, value=line.rstrip(b"\r\n"),
                                      key=_key(args, line), headers=headers or None))
            except KafkaError as exc:
                out.problem = f"the broker did not take line {lineno}: {exc}"
                break
            progress.update(out.sent, out.acked)
            if out.problem:
                break
        try:
            producer.flush(timeout=args.timeout)
        except KafkaError as exc:
            out.problem = out.problem or f"could not deliver to {bootstrap}: {exc}"
        out.settle(block=True)
    finally:
        producer.close(timeout=min(args.timeout, 5))
    progress.update(out.sent, out.acked, final=True)
    return out
