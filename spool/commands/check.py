"""``spool check offsets``: is every record the spool job committed in a batch?

Per partition of the fat queue: the offset the spool job's consumer group committed, the
range checked (from the first offset a batch in the ledger holds), and every offset below
the committed one that no batch holds, read from Kafka and classified: a Singer SCHEMA or
STATE (never in a batch), no message (a transaction marker), deleted by retention, or
LOST. spool/offset_check.py has the rules; docs/where-is-my-data.md what to do.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from spool import kafka_topics, offset_check
from spool.commands.common import (
    LedgerArgs,
    emit_table,
    ledger_from,
    plain,
    print_json,
    register_ledger_args,
)
from spool.commands.common import since as when

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"
COLUMNS = ["partition", "committed", "from", "checked", "uncovered", "schema", "state",
           "no_message", "deleted", "lost", "unread", "gaps"]

EXAMPLE = """examples:
  spool check offsets
  spool check offsets --topic spool.fatq --consumer_group spool --since 24h
  spool check offsets --partition 3 --json
  spool check offsets --rewind        # after a loss, with the spool job stopped

The range checked, per partition: from the first offset a batch in the ledger holds (of
the batches created since --since) up to the offset the group committed. Offsets before
it are not checked (Kafka's retention, a group started at the end of the topic).

exit codes: 0 no record lost; 1 records lost (a line per partition on stderr, with the
offsets and what to do); 2 bad command line, Kafka or the ledger unreachable, or offsets
left unread (raise --max-read or --timeout)."""


def register(sub) -> None:
    p = sub.add_parser("check", help="check that no record was lost between Kafka and the "
                       "ledger", description=plain(__doc__.split("\n\n")[0]),
                       epilog="example:\n  spool check offsets",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    csub = p.add_subparsers(dest="check_command", metavar="SUBCOMMAND", required=True)
    o = csub.add_parser("offsets", help="offsets the spool job committed that are in no batch",
                        description=plain(__doc__.split("\n\n")[1]), epilog=EXAMPLE,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    register_ledger_args(o)
    o.add_argument("--topic", default="spool.fatq", type=_topic_name,
                   help="the fat queue the spool job reads (default %(default)s)")
    o.add_argument("--consumer_group", "--consumer-group", dest="group", default="spool",
                   help="the spool job's --consumer_group (default %(default)s)")
    o.add_argument("--since", type=when, metavar="WHEN",
                   help="check from the first offset of the batches created since WHEN: a "
                        "date/time (2026-12-01T09:00) or an age (30m, 12h, 7d); default: "
                        "from the first batch the ledger has")
    o.add_argument("--partition", type=int, action="append", metavar="N",
                   help="only this partition, repeatable (default: all)")
    o.add_argument("--max-read", type=int, default=offset_check.MAX_READ, metavar="N",
                   help="read at most N uncovered offsets per partition from Kafka to "
                        "classify them (default %(default)s); the rest count as unread")
    o.add_argument("--gaps", type=int, default=5, metavar="N",
                   help="show the first N gaps per partition (default %(default)s)")
    o.add_argument("--tenant-header", default="tenant",
                   help="the spool job's --tenant_header, to decode Singer messages as it "
                        "does (default %(default)s)")
    o.add_argument("--bootstrap", default=None, metavar="HOST:PORT",
                   help="Kafka bootstrap servers (default $SPOOL_KAFKA_BOOTSTRAP, else "
                        f"{DEFAULT_BOOTSTRAP})")
    o.add_argument("--kafka-config", action="append", default=[], metavar="KEY=VALUE",
                   help="extra kafka-python client setting (TLS, SASL), repeatable")
    o.add_argument("--timeout", type=float, default=offset_check.TIMEOUT_S,
                   help="seconds to wait for Kafka (default %(default)g)")
    o.add_argument("--rewind", action="store_true",
                   help="when records are lost, move the group back to each partition's "
                        "first lost offset, so that the spool job, started again, spools "
                        "them (stop the job first: a running one commits over it)")
    o.add_argument("--json", action="store_true", help="print the result as one JSON object")
    o.set_defaults(func=check_offsets)


def _topic_name(text: str) -> str:
    problem = kafka_topics.name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _fail(text: str) -> int:
    print("error: " + " ".join(text.split()), file=sys.stderr)
    return 2


def _gap_text(row: dict) -> str:
    """The first gaps: ``120-121 state, 388 lost, ... (40 more)``."""
    words = []
    for g in row["gaps"]:
        where = str(g["first"]) if g["first"] == g["last"] else f"{g['first']}-{g['last']}"
        kinds = "+".join(k for k in offset_check.CLASSES if g.get(k))
        words.append(f"{where} {kinds}")
    more = row["gap_count"] - len(row["gaps"])
    return ", ".join(words + ([f"... ({more} more)"] if more > 0 else []))


def check_offsets(args: LedgerArgs) -> int:
    if args.max_read < 0 or args.gaps < 0:
        return _fail("--max-read and --gaps take 0 or more")
    # the ledger's "reconnecting" warnings: this command's answer is its own one line
    logging.getLogger("spool.ledger").setLevel(logging.ERROR)
    try:
        ledger = ledger_from(args)
    except SystemExit as exc:  # its text on one line, with exit code 2 here
        print(" ".join(str(exc.code).split()), file=sys.stderr)
        return 2
    bootstrap = args.bootstrap or os.environ.get("SPOOL_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP)
    try:
        result = offset_check.check_offsets(
            ledger, bootstrap, args.topic, args.group, since=args.since,
            partitions=args.partition, max_read=args.max_read, show_gaps=args.gaps,
            tenant_header=args.tenant_header, kafka_config=args.kafka_config,
            timeout_s=args.timeout)
    except offset_check.CheckError as exc:
        return _fail(str(exc))
    finally:
        ledger.close()
    rows = result["partitions"]
    if args.json:
        print_json(result)
    else:
        emit_table(COLUMNS, [(r["partition"], r["committed"], r["from"], r["checked"],
                              r["uncovered"], *(r[k] for k in offset_check.CLASSES),
                              r["note"] or _gap_text(r)) for r in rows])
    lost = [r for r in rows if r["lost"]]
    for r in lost:
        print(_loss_line(result, r, args), file=sys.stderr)
    if lost and args.rewind:
        to = {r["partition"]: r["first_lost"] for r in lost}
        try:
            offset_check.rewind(bootstrap, args.topic, args.group, to, args.kafka_config,
                                args.timeout)
        except offset_check.CheckError as exc:
            return _fail(str(exc))
        print(f"group {args.group!r} moved back: "
              + ", ".join(f"partition {p} to {o}" for p, o in sorted(to.items()))
              + "; start the spool job: it spools from there", file=sys.stderr)
    unread = [r for r in rows if r["unread"]]
    for r in unread:
        print(f"partition {r['partition']}: {r['unread']} offset(s) in no batch were not read "
              "from Kafka (over --max-read, or Kafka did not answer within --timeout); "
              "raise them, or narrow the check with --since", file=sys.stderr)
    if lost:
        return 1
    if unread:
        return 2
    if not args.json:
        checked = sum(r["checked"] for r in rows)
        print(f"ok: no record lost: {checked} offset(s) in {len(rows)} partition(s) below the "
              f"offsets group {args.group!r} committed, each in a batch or a Singer "
              "SCHEMA/STATE message")
    return 0


def _loss_line(result: dict, r: dict, args) -> str:
    offsets = ", ".join(str(x["offset"]) for x in r["lost_records"][:10])
    more = r["lost"] - min(len(r["lost_records"]), 10)
    where = sorted({f"{x['tenant']}/{x['stream']}" for x in r["lost_records"]
                    if x.get("tenant")})
    flag = "" if args.topic == "spool.fatq" else f" --topic {args.topic}"
    flag += "" if args.group == "spool" else f" --consumer_group {args.group}"
    return (f"partition {r['partition']}: {r['lost']} record(s) LOST: offset(s) {offsets}"
            + (f" and {more} more" if more > 0 else "")
            + (f" ({', '.join(where[:5])})" if where else "")
            + f", below the offset {r['committed']} group {result['consumer_group']!r} "
            "committed and in no batch; to spool them again: stop the spool job, run "
            f"'spool check offsets{flag} --rewind' (moves the group back to "
            f"{r['first_lost']}), start the job; the warehouse keeps one row per record id, "
            "so records spooled twice load once")
