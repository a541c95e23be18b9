"""The ``spool`` command: one entry point, one sub-command per question a user asks.

Exit codes: 0 success, 1 the command failed (the message says why and what to do),
2 the command line was wrong.
"""

from __future__ import annotations

import argparse
import sys

from spool import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spool",
        description="Spool: multi-tenant ELT from one Kafka topic into per-tenant warehouses.",
        epilog="Run 'spool <command> --help' for a command's options and an example.\n"
        "Exit codes: 0 ok, 1 failed (the message says why), 2 bad command line.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"spool {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from spool.commands import (
        batches,
        changes,
        check,
        loads,
        maps,
        produce,
        rejected,
        state,
        status,
        tenants,
        topics,
        webhooks,
    )

    for module in (produce, topics, tenants, maps, state, status, batches, loads, changes,
                   rejected, webhooks, check):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from spool.commands.common import UsageError

    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `spool status | head`
        sys.stderr.close()
        return 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
