"""A job refuses a flag it does not know, and a value it cannot run with, before it reaches
anything: one line per mistake, naming the flag (and the nearest real one, or what it takes),
exit 2, no traceback. Beam alone drops an unknown flag with a warning, so a typo in
--consumer_group used to re-read the whole topic under the default group.

The jobs run as a user runs them, with Kafka and the ledger pointed at a closed port: a job
that got past its flags would end on those instead (exit 1), so these need nothing running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import flags

ROOT = Path(__file__).resolve().parents[2]
NOWHERE = {"SPOOL_KAFKA_BOOTSTRAP": "127.0.0.1:1",
           "SPOOL_LEDGER_DSN": "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2",
}


def job(module: str, *args: str) -> subprocess.CompletedProcess:
    import os

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SPOOL_")}, **NOWHERE}
    return subprocess.run([sys.executable, "-m", f"pipelines.{module}", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("module", "args", "lines"), [
    ("spool_job", ["--consumer-group=ux"],
     ["error: unknown flag --consumer-group; did you mean --consumer_group?"]),
    ("spool_job", ["--batch_sconds=5"],
     ["error: unknown flag --batch_sconds; did you mean --batch_seconds?"]),
    ("spool_job", ["--batch_sconds", "5", "--topic=t"],
     ["error: unknown flag --batch_sconds; did you mean --batch_seconds?"]),
    ("loader_job", ["--pol_seconds=1", "--mode=follow"],
     ["error: unknown flag --pol_seconds; did you mean --poll_seconds?"]),
    ("loader_job", ["--runer=DirectRunner"],
     ["error: unknown flag --runer; did you mean --runner?"]),
    ("loader_job", ["--checkpointing_interval=60000"],
     ["error: unknown flag --checkpointing_interval; 'python -m pipelines.loader_job --help' "
      "lists the job's flags (one for the runner itself goes in --runner_option "
      "checkpointing_interval=VALUE)"]),
    ("spool_job", ["fatq"],
     ["error: unexpected argument 'fatq': every option is a --flag=value"]),
])
def test_an_unknown_flag_is_one_line_with_the_nearest_real_one_and_exit_2(module, args, lines):
    res = job(module, *args)
    assert (res.returncode, res.stderr.splitlines()) == (2, lines)


@pytest.mark.parametrize(("module", "args", "lines"), [
    ("spool_job", ["--batch_seconds=-1"],
     ["error: --batch_seconds=-1: give a number of seconds above 0"]),
    ("spool_job", ["--batch_seconds", "abc"],
     ["error: --batch_seconds=abc: give a number of seconds above 0"]),
    ("spool_job", ["--batch_max_rows=0", "--parquet_compression=lz4", "--partitions=0,x"],
     ["error: --batch_max_rows=0: give a whole number above 0",
      "error: --parquet_compression=lz4: choose one of snappy, zstd, gzip, none",
      "error: --partitions=0,x: give partition numbers, 0 or more, separated by commas, "
      "e.g. --partitions=0,2,4"]),
    ("spool_job", ["--kafka_bootstrap=broker", "--kafka_config", "security_protocol"],
     ["error: --kafka_bootstrap=broker: give host:port[,host:port...], e.g. "
      "broker-1:9092,broker-2:9092",
      "error: --kafka_config=security_protocol: give KEY=VALUE, e.g. security_protocol=SSL"]),
    ("loader_job", ["--lease_seconds=0", "--metrics_port=70000"],
     ["error: --lease_seconds=0: give a number of seconds above 0",
      "error: --metrics_port=70000: give a whole number from 0 to 65535"]),
    ("loader_job", ["--ledger_dsn=postgresql://u:secret@[db/x"],
     ["error: --ledger_dsn=postgresql://u:***@[db/x: give postgresql://user@host:port/db, "
      "'host=... dbname=...', env:NAME or file:/path"]),
    ("loader_job", ["--webhook_poll_seconds=nan", "--spool_location=s3:///x"],
     ["error: --webhook_poll_seconds=nan: give a number of seconds above 0",
      "error: --spool_location=s3:///x: give a folder or s3://bucket/prefix"]),
    ("loader_job", ["--direct_num_workers=many"],
     ["error: --direct_num_workers=many: give a whole number"]),
    ("loader_job", ["--lease_seconds"], ["error: --lease_seconds: expected one argument"]),
])
def test_every_bad_value_is_one_line_naming_it_and_what_it_takes_and_exit_2(module, args,
                                                                            lines):
    res = job(module, *args)
    assert (res.returncode, res.stderr.splitlines()) == (2, lines)


def test_an_unknown_flag_and_a_bad_value_are_both_named():
    res = job("spool_job", "--consumer-group=ux", "--batch_seconds=0")
    assert (res.returncode, res.stderr.splitlines()) == (2, [
        "error: unknown flag --consumer-group; did you mean --consumer_group?",
        "error: --batch_seconds=0: give a number of seconds above 0"])


RUNNER_FLAGS = ["--runner=PortableRunner", "--job_endpoint=127.0.0.1:1",
                "--environment_type=EXTERNAL", "--environment_config=127.0.0.1:1",
                "--setup_file=./setup.py", "--experiments=use_runner_v2",
                "--flink_master=127.0.0.1:1", "--parallelism=2", "--sdk_worker_parallelism=1",
                "--num_workers=2", "--max_num_workers=4", "--project=p", "--region=r",
                "--s3_endpoint_url=http://127.0.0.1:1", "--prism_location=/nowhere",
                "--direct_num_workers=2", "--streaming", "--job-server-timeout=60",
                "--runner_option", "checkpointing_interval=60000"]


@pytest.mark.parametrize(("module", "reached"), [
    ("spool_job", "error: cannot reach Kafka at 127.0.0.1:1"),
    ("loader_job", "error: cannot reach the ledger"),
])
def test_beam_and_runner_flags_pass_and_the_job_goes_on_to_kafka_or_the_ledger(module,
                                                                              reached):
    res = job(module, *RUNNER_FLAGS)
    assert res.returncode == 1, res.stderr
    assert res.stderr.splitlines()[-1].startswith(reached), res.stderr
    assert "Traceback" not in res.stderr


def test_a_runner_option_naming_a_flag_of_the_job_is_refused():
    res = job("loader_job", "--runner_option", "poll_seconds=3")
    assert (res.returncode, res.stderr.splitlines()) == (2, [
        "error: --runner_option=poll_seconds=3: --poll_seconds is a flag of the job or of "
        "Beam; give it as --poll_seconds=3"])


def test_a_runner_option_reaches_the_options_beam_hands_the_runner():
    from pipelines.loader_job import OPTION_CLASSES

    options = flags.parse_options(["--runner_option", "checkpointing_interval=60000"],
                                  "pipelines.loader_job", OPTION_CLASSES)
    given = options.get_all_options(drop_default=True, retain_unknown_options=True)
    assert given["checkpointing_interval"] == "60000"


@pytest.mark.parametrize(("typed", "meant"), [
    ("--consumer-group", "--consumer_group"),
    ("--batch_sconds=5", "--batch_seconds"),
    ("--Batch_Seconds", "--batch_seconds"),
    ("--job_server_timeout", "--job-server-timeout"),
    ("--frobnicate", None),
    ("--batch", None),
])
def test_the_suggestion_is_the_underscored_flag_or_a_close_spelling(typed, meant):
    known = ["--consumer_group", "--batch_seconds", "--poll_seconds", "--job-server-timeout",
             "--batch_max_rows"]
    assert flags.suggest(typed, known) == meant


def test_every_number_a_spool_flag_takes_has_bounds():
    """A new numeric option declared with a bare int or float would take -1 again."""
    import argparse

    from pipelines.loader_job import OPTION_CLASSES as LOADER
    from pipelines.spool_job import OPTION_CLASSES as SPOOL

    parser = argparse.ArgumentParser(add_help=False)
    for cls in {*LOADER, *SPOOL}:
        cls._add_argparse_args(parser)
    bare = [a.dest for a in parser._actions if a.type in (int, float)]
    assert bare == []
