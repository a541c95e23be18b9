"""The spool job: Kafka fat queue → per-(tenant, stream) Parquet batches + READY ledger rows.

    python -m pipelines.spool_job --help
    python -m pipelines.spool_job --mode=drain --topic=fatq      # read what is there, then end
    python -m pipelines.spool_job --mode=streaming --topic=fatq  # run until stopped (Prism)

ReadFromKafka → DecodeAndShape → BatchByTable → WriteBatches → CommitOffsets. Drain mode
runs on Beam's FnApiRunner (DirectRunner); streaming mode on Prism, or any runner given with
--runner (Flink, Dataflow).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.common import (
    SPOOL_JOB_MODES,
    JobModeOptions,
    LedgerOptions,
    LoggingOptions,
    MetricsOptions,
    SpoolLocationOptions,
    choose_runner,
    configure_logging,
    job_mode,
    ready_ledger,
    report_metrics,
    require_topic,
    resolve_common,
    s3_config,
    serve_metrics,
    wait_or_stop,
)
from pipelines.flags import (
    COUNT,
    SECONDS,
    SECONDS_OR_ZERO,
    RunnerOptions,
    host_ports,
    key_value,
    text,
)
from pipelines.flags import parse_options as parse_flags
from spool.ingest.decode import DecodeRules
from transforms.batching import BatchByTable, BatchConfig
from transforms.commit_offsets import CommitConfig, CommitOffsets
from transforms.decode_shape import POSITIONS, DecodeAndShape, ShapeConfig
from transforms.kafka_read import ReadConfig, ReadFromKafka
from transforms.write_batches import WriteBatches, WriteConfig

log = logging.getLogger("spool.job")


class KafkaSourceOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("Kafka source")
        group.add_argument(
            "--kafka_bootstrap", type=host_ports,
            help="Kafka bootstrap servers, host:port[,host:port]. Default: "
            "$SPOOL_KAFKA_BOOTSTRAP, else 127.0.0.1:19092 (the local stack).")
        group.add_argument("--topic", default="spool.fatq", type=text,
                           help="The fat queue topic to read (default spool.fatq).")
        group.add_argument(
            "--consumer_group", default="spool", type=text,
            help="Consumer group whose committed offsets say where to resume; the job "
            "commits only past records whose batches are in the ledger (default spool).")
        group.add_argument(
            "--start_offset", default="earliest", choices=["earliest", "latest"],
            help="Where to start in a partition the group has never committed (default "
            "earliest: nothing already in the queue is skipped).")
        group.add_argument(
            "--max_records", type=COUNT, default=None,
            help="drain mode: read at most this many records in all (spread over the "
            "partitions by backlog), then end.")
        group.add_argument(
            "--read_chunk_records", type=COUNT, default=20_000,
            help="Records per poll of one partition; one chunk is one Beam element "
            "(default 20000).")
        group.add_argument("--poll_timeout_ms", type=COUNT, default=500,
                           help="How long one poll waits for records (default 500).")
        group.add_argument(
            "--read_bundle_seconds", type=SECONDS, default=0.5,
            help="streaming: how long one bundle of partition reads runs before it hands "
            "progress and watermark back to the runner (reads that share a bundle share "
            "this limit). Shorter moves the watermark sooner, so a batch is written sooner "
            "after its window ends; each hand-back costs the runner a little (default 0.5).")
        group.add_argument(
            "--idle_watermark_lag_seconds", type=SECONDS_OR_ZERO, default=1.0,
            help="streaming: a partition with nothing new moves its watermark to now minus "
            "this lag, so idle partitions never hold windows open (default 1.0).")
        group.add_argument(
            "--watermark_scope", default="auto", choices=["auto", "partition", "process"],
            help="partition: each partition's reader reports its own watermark (for Flink and "
            "Dataflow, which hold one per reader). process: readers report the minimum over "
            "all partitions read in this worker process (needed on Prism, which keeps only "
            "the last bundle's watermark). auto: process on Prism, else partition.")
        group.add_argument(
            "--partitions", default=None, type=partition_list, metavar="N[,N...]",
            help="Read only these partitions of the topic (default: all). One job per "
            "disjoint subset spreads a topic over several jobs, e.g. on a job server that "
            "gives each job one SDK worker (Prism); the jobs may share --consumer_group, "
            "since offsets are committed per partition.")
        group.add_argument(
            "--kafka_config", action="append", type=key_value, default=[], metavar="KEY=VALUE",
            help="Extra kafka-python client setting, repeatable, e.g. "
            "--kafka_config security_protocol=SSL --kafka_config sasl_mechanism=PLAIN.")


class DecodeOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("Decode")
        group.add_argument(
            "--max_message_bytes", type=COUNT, default=4 * 1024 * 1024,
            help="Messages larger than this are rejected (kept in _sdc_rejected with their "
            "bytes), not loaded (default 4194304 = 4 MiB).")
        group.add_argument(
            "--tenant_header", default="tenant", type=text,
            help="Kafka header that names the tenant of a Singer message (default tenant).")
        group.add_argument(
            "--tenant_refresh_seconds", type=SECONDS_OR_ZERO, default=5.0,
            help="How often, at most, an unknown tenant sends the job back to the ledger's "
            "registry before the record is rejected (default 5).")


class BatchOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("Batches")
        group.add_argument(
            "--batch_seconds", type=SECONDS, default=60.0,
            help="Event-time window per batch: a (tenant, stream) batch closes when the "
            "watermark passes its window's end, at the latest (default 60).")
        group.add_argument("--batch_max_rows", type=COUNT, default=100_000,
                           help="A batch closes once it holds this many rows (default 100000).")
        group.add_argument(
            "--batch_max_bytes", type=COUNT, default=64 * 1024 * 1024,
            help="A batch closes once its records hold this many bytes (default 64 MiB).")
        group.add_argument(
            "--allowed_lateness_seconds", type=SECONDS_OR_ZERO, default=None,
            help="streaming: how long a window's batch state is kept after the window ends, "
            "so a part that reaches it late (a runner's retried or split bundle) opens the "
            "next pane of its window. A late part is never dropped by Spool and is counted "
            "as late either way. Default: one --batch_seconds; Prism copies every kept "
            "window's state into each bundle, so more costs throughput there. Flink and "
            "Dataflow drop data later than this: give them more than any stall they may see.")
        group.add_argument(
            "--parquet_compression", default="snappy", choices=["snappy", "zstd", "gzip", "none"],
            help="Compression of the batch files (default snappy: fast for many small files and "
            "readable by Redshift's COPY).")


def partitions(given: str | None) -> tuple[int, ...]:
    """``--partitions`` as sorted partition numbers (checked by :func:`partition_list`)."""
    return tuple(sorted({int(p) for p in given.split(",") if p.strip()})) if given else ()


def partition_list(given: str) -> str:
    """The argparse check of ``--partitions``: numbers, 0 or more, separated by commas."""
    try:
        found = partitions(given)
    except ValueError:
        found = ()
    if not found or found[0] < 0:
        raise argparse.ArgumentTypeError("give partition numbers, 0 or more, separated by "
                                         "commas, e.g. --partitions=0,2,4")
    return given


def watermark_scope(options: PipelineOptions) -> str:
    scope = options.view_as(KafkaSourceOptions).watermark_scope
    if scope != "auto":
        return scope
    runner = str(options.view_as(StandardOptions).runner or "")
    return "process" if "prism" in runner.lower() else "partition"


# every concern's options: with Beam's, the only flags the job takes (pipelines.flags)
OPTION_CLASSES = (KafkaSourceOptions, DecodeOptions, BatchOptions, MetricsOptions,
                  JobModeOptions, LedgerOptions, SpoolLocationOptions, LoggingOptions)


def build(pipeline: beam.Pipeline, options: PipelineOptions, ledger_dsn: str,
          spool_location: str, bootstrap: str):
    """Wire the job's transforms onto ``pipeline``; returns the commit output."""
    src = options.view_as(KafkaSourceOptions)
    dec = options.view_as(DecodeOptions)
    bat = options.view_as(BatchOptions)
    streaming = options.view_as(JobModeOptions).mode == "streaming"
    kafka_config = tuple(src.kafka_config or ())
    read = ReadConfig(
        bootstrap=bootstrap, topic=src.topic, group=src.consumer_group,
        start_offset=src.start_offset, streaming=streaming, max_records=src.max_records,
        chunk_records=src.read_chunk_records, poll_timeout_ms=src.poll_timeout_ms,
        max_bundle_seconds=src.read_bundle_seconds,
        idle_lag_seconds=src.idle_watermark_lag_seconds, kafka_config=kafka_config,
        watermark_scope=watermark_scope(options), partitions=partitions(src.partitions),
        ledger_dsn=ledger_dsn)
    part_rows = max(1, min(25_000, bat.batch_max_rows // 4))
    shape = ShapeConfig(
        ledger_dsn=ledger_dsn, window_seconds=bat.batch_seconds,
        rules=DecodeRules(max_message_bytes=dec.max_message_bytes,
                          tenant_header=dec.tenant_header),
        tenant_refresh_seconds=dec.tenant_refresh_seconds,
        part_max_rows=part_rows, part_max_bytes=max(1, bat.batch_max_bytes // 4))
    batch = BatchConfig(window_seconds=bat.batch_seconds, max_rows=bat.batch_max_rows,
                        max_bytes=bat.batch_max_bytes,
                        allowed_lateness_seconds=bat.batch_seconds
                        if bat.allowed_lateness_seconds is None
                        else bat.allowed_lateness_seconds)
    write = WriteConfig(topic=src.topic, spool_location=spool_location, ledger_dsn=ledger_dsn,
                        window_seconds=bat.batch_seconds,
                        compression=bat.parquet_compression,
                        s3=s3_config(options))
    commit = CommitConfig(bootstrap=bootstrap, group=src.consumer_group,
                          kafka_config=kafka_config)

    shaped = (pipeline
              | "ReadFromKafka" >> ReadFromKafka(read)
              | "DecodeAndShape" >> DecodeAndShape(shape))
    written = (shaped.parts
               | "BatchByTable" >> BatchByTable(batch, streaming)
               | "WriteBatches" >> WriteBatches(write))
    return (shaped[POSITIONS], written) | "CommitOffsets" >> CommitOffsets(commit)


def run(argv: list[str] | None = None, *, wait: bool = True):
    """Run the spool job; returns the PipelineResult (finished, unless ``wait`` is False)."""
    options = parse_flags(argv, "pipelines.spool_job", OPTION_CLASSES)
    configure_logging(options)
    mode = job_mode(options, SPOOL_JOB_MODES)
    src = options.view_as(KafkaSourceOptions)
    given_bootstrap = src.kafka_bootstrap
    bootstrap = src.kafka_bootstrap or os.environ.get("SPOOL_KAFKA_BOOTSTRAP",
                                                        "127.0.0.1:19092")
    src.kafka_bootstrap = bootstrap
    require_topic(bootstrap, src.topic, src.kafka_config, given_bootstrap)
    ledger_dsn, spool_location = resolve_common(options)
    choose_runner(options, streaming=mode == "streaming")
    ready_ledger(ledger_dsn)

    pipeline = beam.Pipeline(options=options)
    build(pipeline, options, ledger_dsn, spool_location, bootstrap)
    log.info("spool job: %s mode, topic %s, group %s, spool %s", mode, src.topic,
             src.consumer_group, spool_location)
    # the launcher serves the job's metrics from now until the job ends (spool.metrics)
    server = serve_metrics(options, ledger_dsn, "spool_job",
                           9465 if mode == "streaming" else 0) if wait else None
    result = pipeline.run()
    if wait:
        try:
            if mode == "streaming":
                wait_or_stop(result)
            else:
                result.wait_until_finish()
                report_metrics(result, "spool job")
        finally:
            if server is not None:
                server.shutdown()
    return result


if __name__ == "__main__":
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        from pipelines.help import print_help

        print_help(__doc__, [SPOOL_JOB_MODES, KafkaSourceOptions, DecodeOptions, BatchOptions,
                             MetricsOptions, LedgerOptions, SpoolLocationOptions,
                             LoggingOptions, RunnerOptions])
        sys.exit(0)
    run()
