"""``spool topics create|list``: the Kafka topics Spool reads, with partitions and retention.

The broker does not create a topic on first use, so the fat queue is created once, here,
with its partitions (how many spool job workers can read it side by side) and its retention
(how long an unread message waits before Kafka deletes it).
"""

from __future__ import annotations

import argparse
import os

from spool import kafka_topics
from spool.commands.common import emit_table, plain

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"

CREATE_EXAMPLE = """examples:
  spool topics create spool.fatq                            # 6 partitions, broker's retention
  spool topics create spool.fatq --partitions 12 --retention-hours 168
  spool topics create events --bootstrap broker-1:9092 --kafka-config security_protocol=SSL

exit codes: 0 created; 1 not created (it exists, or the broker refused or did not answer);
2 bad command line."""

LIST_EXAMPLE = """examples:
  spool topics list
  spool topics list --json

exit codes: 0 listed; 1 the broker did not answer; 2 bad command line."""


def _topic_name(text: str) -> str:
    problem = kafka_topics.name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of 1 or more")
    return value


def _retention_ms(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"{text!r}: give milliseconds of 1 or more, or -1 to "
                                         "keep messages forever")
    return value


def _kafka_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", default=None, metavar="HOST:PORT",
                   help=f"Kafka bootstrap servers (default $SPOOL_KAFKA_BOOTSTRAP, else "
                   f"{DEFAULT_BOOTSTRAP})")
    p.add_argument("--kafka-config", action="append", default=[], metavar="KEY=VALUE",
                   help="extra kafka-python admin client setting (TLS, SASL), repeatable")
    p.add_argument("--timeout", type=float, default=kafka_topics.CHECK_SECONDS,
                   help="seconds to wait for the broker (default %(default)g)")


def register(sub) -> None:
    p = sub.add_parser("topics", help="create and list the Kafka topics Spool reads",
                       description=plain(__doc__.split("\n\n")[0]), epilog=CREATE_EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = p.add_subparsers(dest="topics_command", metavar="SUBCOMMAND", required=True)

    create = tsub.add_parser("create", help="create a topic with its partitions and retention",
                             description=plain(__doc__.split("\n\n")[1]), epilog=CREATE_EXAMPLE,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    create.add_argument("topic", type=_topic_name, help="the topic: letters, digits, . _ -")
    create.add_argument("--partitions", type=_positive, default=6,
                        help="partitions: the most spool job workers that read it side by "
                        "side (default 6; more can be added later, fewer cannot)")
    keep = create.add_mutually_exclusive_group()
    keep.add_argument("--retention-hours", type=_positive, metavar="H",
                      help="keep messages this many hours (default: the broker's "
                      "log.retention setting, often 168 = 7 days)")
    keep.add_argument("--retention-ms", type=_retention_ms, metavar="MS",
                      help="keep messages this many milliseconds; -1 keeps them forever")
    create.add_argument("--replication-factor", type=_positive, metavar="N",
                        help="copies of each partition (default: the broker's "
                        "default.replication.factor)")
    _kafka_args(create)
    create.set_defaults(func=create_topic)

    ls = tsub.add_parser("list", help="topics with their partitions and retention",
                         epilog=LIST_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    _kafka_args(ls)
    ls.add_argument("--json", action="store_true", help="print JSON lines")
    ls.set_defaults(func=list_topics)


def bootstrap_of(args: argparse.Namespace) -> str:
    return args.bootstrap or os.environ.get("SPOOL_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP)


def bootstrap_flag(args: argparse.Namespace) -> str:
    """``--bootstrap HOST`` when the command was given one, so a suggested command reaches
    the same broker."""
    return f"--bootstrap {args.bootstrap}" if args.bootstrap else ""


def create_topic(args: argparse.Namespace) -> int:
    retention = args.retention_hours * 3_600_000 if args.retention_hours else args.retention_ms
    try:
        topic = kafka_topics.create(bootstrap_of(args), args.topic, args.partitions, retention,
                                    args.replication_factor, args.kafka_config, args.timeout)
    except kafka_topics.TopicError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"topic {topic.name!r} created: {topic.partitions} partition(s), retention "
          f"{kafka_topics.retention_text(topic.retention_ms)}")
    return 0


def list_topics(args: argparse.Namespace) -> int:
    try:
        found = kafka_topics.describe(bootstrap_of(args), None, args.kafka_config, args.timeout)
    except kafka_topics.TopicError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.json:
        emit_table(["topic", "partitions", "retention_ms"],
                   [(t.name, t.partitions, t.retention_ms) for t in found], as_json=True)
        return 0
    emit_table(["topic", "partitions", "retention"],
               [(t.name, t.partitions, kafka_topics.retention_text(t.retention_ms))
                for t in found])
    if not found:
        print(f"(no topics yet: '{kafka_topics.create_hint('spool.fatq', bootstrap_flag(args))}'"
              " creates the fat queue)")
    return 0
