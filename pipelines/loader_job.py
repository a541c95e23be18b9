"""The loader job: READY batches in the ledger → each tenant's warehouse, exactly once.

    python -m pipelines.loader_job --help
    python -m pipelines.loader_job --mode=drain    # load what is READY now, then end (cron)
    python -m pipelines.loader_job --mode=follow   # keep loading new batches until stopped

ListDueTables (per tenant) → Reshuffle → LoadBatches (claim → load → mark, spool.loader).
In follow mode a tick (WakeUps) starts each round: when the spool job announces new batches
on the ledger (LISTEN/NOTIFY), and at least every --poll_seconds.
Tenants load in parallel; a tenant's streams load in order of their batches' sequence
ranges, in warehouse transactions of up to ``--load_max_rows`` rows.
While it waits for the job, the launcher delivers tenants' webhook events from the ledger's
outbox on a thread of its own (--no_webhooks to leave that to 'spool webhooks deliver').
"""

from __future__ import annotations

import logging
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.common import (
    LOADER_MODES,
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
    resolve_common,
    s3_config,
    serve_metrics,
    wait_or_stop,
)
from pipelines.flags import COUNT, PORT, SECONDS, Number, RunnerOptions
from pipelines.flags import parse_options as parse_flags
from spool.loader import troubles
from spool.loader.tenant import LoaderConfig
from spool.webhooks.delivery import Background, DeliveryConfig
from transforms.load_batches import ListDueTables, LoadBatches, LoadConfig
from transforms.wakeups import WakeUps

log = logging.getLogger("spool.loader")


class LoaderOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("Loader")
        group.add_argument(
            "--poll_seconds", type=SECONDS, default=5.0,
            help="follow mode: look for due batches at least this often (default 5). New "
            "batches are loaded as soon as the spool job announces them; polling finds the "
            "rest (retries whose delay ran out, expired leases) and covers a lost announcement.")
        group.add_argument(
            "--no_listen", action="store_true", default=False,
            help="follow mode: only poll; do not LISTEN on the ledger for the spool job's "
            "announcements (e.g. behind a connection pooler in transaction mode, which "
            "cannot LISTEN).")
        group.add_argument(
            "--lease_seconds", type=SECONDS, default=600.0,
            help="How long a claim on a batch lasts; a loader that dies leaves its batches to "
            "be claimed again after this (default 600). A loader renews its leases every half "
            "lease, between transactions; make it longer than the longest transaction.")
        group.add_argument(
            "--load_max_rows", type=COUNT, default=1_000_000,
            help="At most this many rows go into one warehouse transaction (default 1000000).")
        group.add_argument("--load_max_batches", type=COUNT, default=500,
                           help="At most this many batches are claimed at once per table "
                           "(default 500).")
        group.add_argument(
            "--retry_base_seconds", type=SECONDS, default=5.0,
            help="Backoff after a transient warehouse error: base * 2^(attempts-1) seconds, "
            "capped by --retry_cap_seconds (default 5).")
        group.add_argument("--retry_cap_seconds", type=SECONDS, default=300.0,
                           help="Longest backoff between attempts (default 300).")
        group.add_argument(
            "--retry_max_attempts", type=Number(int, at_least=0), default=20,
            help="A batch still failing transiently (warehouse or object store unreachable) "
            "after this many attempts is FAILED with the reason; 'spool batches retry' "
            "loads it again (default 20: about 70 minutes with the default backoff; 0: "
            "retry without end).")
        group.add_argument("--connect_timeout", type=COUNT, default=5,
                           help="Seconds to wait for a warehouse connection (default 5).")
        group.add_argument(
            "--worker_metrics_port", type=PORT, default=0,
            help="Each loader worker process also serves its own counters (rows, batches by "
            "outcome, seconds per load) on the first free port from PORT to PORT+15 "
            "(default 0: off; workers in the launcher's process are on its page anyway).")


class WebhookOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("Webhooks")
        group.add_argument(
            "--no_webhooks", action="store_true", default=False,
            help="Do not deliver tenants' webhook events from this loader's process (say, "
            "when 'spool webhooks deliver' runs apart). Events are still written to the "
            "ledger's outbox with each load; delivery never delays nor fails a load.")
        group.add_argument(
            "--webhook_timeout_seconds", type=SECONDS, default=10.0,
            help="Seconds to wait for a tenant's endpoint to answer a POST (default 10).")
        group.add_argument(
            "--webhook_retry_base_seconds", type=SECONDS, default=10.0,
            help="After a failed delivery, try again after base * 2^(attempts-1) seconds, "
            "capped by --webhook_retry_cap_seconds (default 10).")
        group.add_argument(
            "--webhook_retry_cap_seconds", type=SECONDS, default=600.0,
            help="Longest wait between two delivery attempts of an event (default 600).")
        group.add_argument(
            "--webhook_poll_seconds", type=SECONDS, default=2.0,
            help="Look for due webhook events this often (default 2).")


# every concern's options: with Beam's, the only flags the loader takes (pipelines.flags)
OPTION_CLASSES = (LoaderOptions, WebhookOptions, MetricsOptions, JobModeOptions, LedgerOptions,
                  SpoolLocationOptions, LoggingOptions)


def start_webhooks(options: PipelineOptions, ledger_dsn: str) -> Background | None:
    """A daemon thread of the launcher delivering webhook events, apart from the pipeline
    (it reads the outbox the loads write); None with --no_webhooks."""
    opts = options.view_as(WebhookOptions)
    if opts.no_webhooks:
        return None
    config = DeliveryConfig(
        timeout_seconds=opts.webhook_timeout_seconds,
        retry_base_seconds=opts.webhook_retry_base_seconds,
        retry_cap_seconds=opts.webhook_retry_cap_seconds,
        poll_seconds=opts.webhook_poll_seconds)
    return Background(ledger_dsn, config).start()


def build(pipeline: beam.Pipeline, options: PipelineOptions, ledger_dsn: str):
    """Wire the loader's transforms onto ``pipeline``; returns the pipeline."""
    opts = options.view_as(LoaderOptions)
    follow = options.view_as(JobModeOptions).mode == "follow"
    loader = LoaderConfig(lease_seconds=opts.lease_seconds, max_rows=opts.load_max_rows,
                          max_batches=opts.load_max_batches,
                          backoff_base_seconds=opts.retry_base_seconds,
                          backoff_cap_seconds=opts.retry_cap_seconds,
                          connect_timeout=opts.connect_timeout,
                          max_attempts=opts.retry_max_attempts)
    cfg = LoadConfig(ledger_dsn=ledger_dsn, loader=loader, s3=s3_config(options),
                     worker_metrics_port=opts.worker_metrics_port,
                     worker_metrics_address=options.view_as(MetricsOptions).metrics_address)
    if follow:
        ticks = pipeline | "WakeUps" >> WakeUps(ledger_dsn, opts.poll_seconds,
                                                listen=not opts.no_listen)
    else:
        ticks = pipeline | "Once" >> beam.Impulse()
    (ticks
     | "ListDueTables" >> ListDueTables(ledger_dsn)
     | "LoadBatches" >> LoadBatches(cfg))
    return pipeline


def run(argv: list[str] | None = None, *, wait: bool = True):
    """Run the loader; returns the PipelineResult (finished, unless ``wait`` is False)."""
    options = parse_flags(argv, "pipelines.loader_job", OPTION_CLASSES)
    configure_logging(options)
    mode = job_mode(options, LOADER_MODES)
    # batch URIs come from the ledger: any of them may be on S3, whatever --spool_location
    ledger_dsn, _location = resolve_common(options, any_s3=True)
    follow = mode == "follow"
    choose_runner(options, streaming=follow)
    ready_ledger(ledger_dsn)
    max_attempts = options.view_as(LoaderOptions).retry_max_attempts
    since = troubles.started(ledger_dsn)
    pipeline = build(beam.Pipeline(options=options), options, ledger_dsn)
    log.info("loader: %s mode", mode)
    # the launcher serves the job's metrics from now until the job ends (spool.metrics)
    server = serve_metrics(options, ledger_dsn, "loader", 9464 if follow else 0) \
        if wait else None
    # the launcher delivers webhooks while it waits for the job (not when it only starts it)
    webhooks = start_webhooks(options, ledger_dsn) if wait else None
    # the launcher tells what the loads left undone, from the ledger, in Spool's own lines
    # (spool.loader.troubles): the workers' logs are the runner's
    watch = troubles.Watch(ledger_dsn, max_attempts).start() if wait and follow else None
    result = pipeline.run()
    if wait:
        try:
            if follow:
                wait_or_stop(result)
            else:
                result.wait_until_finish()
                report_metrics(result, "loader")
        finally:
            if watch is not None:
                watch.stop()
            if webhooks is not None:
                webhooks.stop(flush=not follow)
            if server is not None:
                server.shutdown()
        if not follow:
            undone = troubles.lines(ledger_dsn, since, max_attempts)
            for line in undone:
                print(f"error: {line}", file=sys.stderr)
            if undone:
                raise SystemExit(1)
    return result


if __name__ == "__main__":
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        from pipelines.help import print_help

        print_help(__doc__, [LOADER_MODES, LoaderOptions, WebhookOptions, MetricsOptions,
                             LedgerOptions, SpoolLocationOptions, LoggingOptions,
                             RunnerOptions])
        sys.exit(0)
    run()
