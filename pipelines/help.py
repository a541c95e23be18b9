"""--help for the jobs: every option of every concern, plus the Beam options that matter.

PipelineOptions ignores --help, so each job prints its own from the same option classes the
job parses; the text is therefore always the one the job uses.
"""

from __future__ import annotations

import argparse

from apache_beam.options.pipeline_options import (
    DirectOptions,
    PrismRunnerOptions,
    S3Options,
    StandardOptions,
)

BEAM_OPTIONS = [StandardOptions, DirectOptions, PrismRunnerOptions, S3Options]


def build_parser(doc: str, option_classes: list) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Any other Apache Beam pipeline option is accepted too (see "
        "https://beam.apache.org/documentation/runners/capability-matrix/ and the runner's "
        "documentation); any flag neither the job nor Beam knows is refused, before the job "
        "starts, with the nearest real one. Exit status: 0 when the job ends successfully, 1 "
        "on failure, 2 on a wrong command line (an unknown flag, a value the job cannot "
        "take).",
        add_help=True)
    for cls in option_classes:
        cls._add_argparse_args(parser)
    for cls in BEAM_OPTIONS:
        group = parser.add_argument_group(f"Beam: {cls.__name__}")
        cls._add_argparse_args(group)
    return parser


def print_help(doc: str, option_classes: list) -> None:
    build_parser(doc, option_classes).print_help()
