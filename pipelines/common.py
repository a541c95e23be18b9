"""Options and helpers both jobs share: the ledger, the spool location, runner defaults."""

from __future__ import annotations

import codecs
import logging
import os
import re
import shutil
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from apache_beam.options.pipeline_options import (
    DebugOptions,
    DirectOptions,
    PipelineOptions,
    PrismRunnerOptions,
    S3Options,
    StandardOptions,
    WorkerOptions,
)

from pipelines.flags import PORT, dsn, location
from spool import kafka_topics, metrics, secrets
from spool.objectstore import S3Config

CHECKOUT = Path(__file__).resolve().parent.parent  # where a checkout keeps var/bin/prism
LOCAL_PRISM = CHECKOUT / "var" / "bin" / "prism"


class LedgerOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--ledger_dsn", type=dsn,
            help="PostgreSQL connection string of the ledger database (batches, tenants), "
            "or a reference to it: env:NAME (an environment variable, read by each worker) "
            "or file:/path. Default: env:SPOOL_LEDGER_DSN, so the password stays out of the "
            "pipeline's options and logs.")


class JobModeOptions(PipelineOptions):
    """--mode, parsed once for both jobs: Beam registers every options class in one process,
    so two jobs that both declared --mode could not be imported together. Which modes a job
    takes, and what each does, is its :class:`JobModes`, which its --help shows instead."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--mode", default="drain",
                            help="How the job runs; its --help lists the modes it takes.")


@dataclass(frozen=True)
class JobModes:
    """The modes one job runs in and what each does. It stands in for JobModeOptions where
    a job shows its options (--help, docs/options.md), and :func:`job_mode` refuses any other
    mode with the same list."""

    job: str
    modes: tuple[tuple[str, str], ...]  # (mode, what it does)
    default: str = "drain"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.modes)

    def _add_argparse_args(self, parser) -> None:
        parser.add_argument(
            "--mode", default=self.default, choices=self.names,
            help=" ".join(f"{name}: {what}." for name, what in self.modes)
            + f" Default {self.default}.")


SPOOL_JOB_MODES = JobModes("spool job", (
    ("drain", "read up to the end offsets seen at start (or --max_records), write and record "
     "the batches, commit, then end"),
    ("streaming", "read and write batches until stopped (SIGTERM or Ctrl-C); runs on Prism "
     "unless --runner says otherwise")))
LOADER_MODES = JobModes("loader", (
    ("drain", "load every batch that is READY now, then end (cron-friendly)"),
    ("follow", "keep loading new batches as the spool job announces them, and poll the "
     "ledger every --poll_seconds, until stopped")))


def job_mode(options: PipelineOptions, modes: JobModes) -> str:
    """The job's --mode; another ends the job at once with one line and exit 2 (a bad
    command line, as argparse would)."""
    mode = options.view_as(JobModeOptions).mode
    if mode not in modes.names:
        print(f"error: --mode={mode}: the {modes.job} runs in "
              f"{' or '.join(f'--mode={m}' for m in modes.names)}", file=sys.stderr)
        raise SystemExit(2)
    return mode


def require_topic(bootstrap: str, topic: str, kafka_config, given_bootstrap: str | None) -> None:
    """End the job before launch, in one line, when ``topic`` does not exist or no broker
    answers within seconds: the pipeline would otherwise wait out the client's metadata
    timeout and end in a runner's traceback."""
    try:
        kafka_topics.require(bootstrap, topic, kafka_config, flag="--kafka_bootstrap",
                             bootstrap_flag=f"--bootstrap {given_bootstrap}"
                             if given_bootstrap else "")
    except kafka_topics.TopicError as exc:
        raise SystemExit(f"error: {exc}") from None


def ready_ledger(ledger_dsn: str) -> None:
    """Bring the ledger's schema up to date before launch. A ledger that does not answer or
    refuses the job's credentials ends the job at once, in one line: at start that is a
    wrong --ledger_dsn more often than an outage (a running job waits outages out)."""
    import psycopg2

    from spool.ledger.store import Ledger

    ledger = Ledger(ledger_dsn, patience=0)
    try:
        ledger.migrate()
    except psycopg2.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SystemExit(f"error: cannot reach the ledger ({secrets.redact(first)}); check "
                         "--ledger_dsn or SPOOL_LEDGER_DSN") from None
    finally:
        ledger.close()


class MetricsOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--metrics_port", type=PORT, default=None,
            help="The launcher serves Prometheus text metrics on http://127.0.0.1:PORT/metrics "
            "from the job's start to its end, read from the ledger at each scrape: batches "
            "by state, oldest unloaded and newest loaded row ages, rows loaded, per tenant "
            "(default: 9464 for the loader in follow mode, 9465 for the spool job in "
            "streaming mode, off in drain mode, which reports Beam metrics when it ends; 0 "
            "turns it off).")
        parser.add_argument(
            "--metrics_address", default="127.0.0.1",
            help="The address the metrics endpoints listen on, the launcher's and the "
            "workers' own (--worker_metrics_port) (default 127.0.0.1: this machine only; "
            "0.0.0.0 lets a Prometheus on another machine scrape them).")


def serve_metrics(options: PipelineOptions, ledger_dsn: str, job: str, default: int):
    """Start the launcher's metrics endpoint (spool.metrics); the server or None. A port
    in use ends the job at once, in one line."""
    opts = options.view_as(MetricsOptions)
    port = default if opts.metrics_port is None else opts.metrics_port
    try:
        return metrics.serve_launcher(port, ledger_dsn, job, opts.metrics_address)
    except OSError as exc:
        raise SystemExit(f"error: --metrics_port {port}: {exc.strerror} (another {job} on "
                         "this machine?); pass a free port, or --metrics_port=0") from None


class SpoolLocationOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--spool_location", type=location,
            help="Where batch files live: a local folder or s3://bucket/prefix (S3 client "
            "settings come from Beam's --s3_* options). Default: $SPOOL_LOCATION, else "
            "./var/spool.")


class LoggingOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
            help="Log level of the job's own messages (default INFO).")


def resolve_common(options: PipelineOptions, any_s3: bool = False) -> tuple[str, str]:
    """Fill the ledger DSN and spool location from the environment; returns both.

    The S3 settings (``--s3_endpoint_url``, else ``$SPOOL_S3_ENDPOINT``; the region, else
    ``$AWS_DEFAULT_REGION``) are filled when the spool location is on S3, or with
    ``any_s3`` (the loader, which reads every batch where its ledger row's URI points,
    whatever its own --spool_location says). The environment is read here, at run(), and
    nowhere else.
    """
    ledger = options.view_as(LedgerOptions)
    if not ledger.ledger_dsn:
        ledger.ledger_dsn = "env:SPOOL_LEDGER_DSN"
    try:
        secrets.resolve(ledger.ledger_dsn)
    except secrets.SecretError as exc:
        raise SystemExit(f"error: no ledger: {exc}; pass --ledger_dsn=postgresql://... or set "
                         "SPOOL_LEDGER_DSN (scripts/services.sh env prints the local "
                         "one)") from None
    loc = options.view_as(SpoolLocationOptions)
    if not loc.spool_location:
        loc.spool_location = os.environ.get("SPOOL_LOCATION") or str(Path("var/spool"))
    if "://" not in loc.spool_location:
        loc.spool_location = str(Path(loc.spool_location).resolve())
    s3 = options.view_as(S3Options)
    on_s3 = any_s3 or loc.spool_location.startswith("s3://")
    if on_s3 and not s3.s3_endpoint_url and os.environ.get("SPOOL_S3_ENDPOINT"):
        s3.s3_endpoint_url = os.environ["SPOOL_S3_ENDPOINT"]
    if on_s3:
        # keys stay where boto3's credential chain finds them (environment, profile, role):
        # copied into options they would travel with the pipeline and show in runner UIs
        s3.s3_region_name = s3.s3_region_name or os.environ.get("AWS_DEFAULT_REGION",
                                                                "us-east-1")
    return ledger.ledger_dsn, loc.spool_location


def s3_config(options: PipelineOptions) -> S3Config:
    """Beam's own S3 options (``--s3_endpoint_url``, ...) as the object store's settings."""
    s3 = options.view_as(S3Options)
    return S3Config(s3.s3_endpoint_url, s3.s3_access_key_id, s3.s3_secret_access_key,
                    s3.s3_region_name, s3.s3_verify)


def choose_runner(options: PipelineOptions, streaming: bool) -> None:
    """Default runners: FnApiRunner (DirectRunner) for bounded runs, Prism for streaming."""
    std = options.view_as(StandardOptions)
    std.streaming = streaming
    if std.runner is None:
        if streaming:
            std.runner = "PrismRunner"
        else:
            std.runner = "DirectRunner"
    if std.runner in ("DirectRunner", "direct") and not streaming:
        direct = options.view_as(DirectOptions)
        given = options.get_all_options(drop_default=True)
        if "direct_running_mode" not in given:
            # one SDK worker process per core: the per-record work is CPU-bound Python
            direct.direct_running_mode = "multi_processing"
            if "direct_num_workers" not in given:
                direct.direct_num_workers = os.cpu_count() or 1
        if direct.direct_running_mode == "multi_threading":
            raise SystemExit("error: --direct_running_mode=multi_threading loses records with "
                             "splittable reads; use in_memory or multi_processing")
        worker = options.view_as(WorkerOptions)
        if not worker.default_sdk_harness_log_level:
            worker.default_sdk_harness_log_level = "WARNING"
    if streaming:
        # Prism (also as the job server of a portable run) splits a slow bundle of a stateful
        # step and releases the keys of the rest while the first part still runs: one key's
        # state then has two writers at once (apache/beam#35771 is the same split). Spool's
        # reads checkpoint themselves, so no step needs the runner to split; other runners
        # ignore an experiment they do not know
        debug = options.view_as(DebugOptions)
        if "prism_disable_sdf_split" not in (debug.experiments or []):
            debug.add_experiment("prism_disable_sdf_split")
    if std.runner in ("PrismRunner", "prism"):
        prism = options.view_as(PrismRunnerOptions)
        if not prism.prism_location:
            found = os.environ.get("SPOOL_PRISM") or (
                str(LOCAL_PRISM) if LOCAL_PRISM.exists() else shutil.which("prism"))
            if not found:
                raise SystemExit("error: streaming mode runs on Prism, which is not built: run "
                                 "scripts/build_prism.sh or pass --prism_location")
            prism.prism_location = found


log = logging.getLogger("spool.job")


def configure_logging(options: PipelineOptions) -> None:
    level = options.view_as(LoggingOptions).log_level
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        force=True)
    for noisy in ("kafka", "botocore", "urllib3", "apache_beam"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # relays the SDK workers' log records as "Worker: severity: ... message: ..." (their
    # protobuf text): shown as the workers' own plain lines instead, without the warnings
    # about options the workers do not know (ours), which are noise
    relay = logging.getLogger("apache_beam.runners.portability.local_job_service")
    relay.setLevel(max(logging.WARNING, logging.getLevelName(level)))
    if not any(isinstance(f, WorkerLines) for f in relay.filters):
        relay.addFilter(WorkerLines())


class WorkerLines(logging.Filter):
    """A worker's log record relayed by Beam's local job service, as the worker's own line:
    its message, unwrapped from the LogEntry's text. Beam's own warnings from the worker
    (options it does not know, its directories) are dropped; its errors are kept."""

    MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "Worker: %s" or not record.args:
            return True
        entry = str(record.args[0])
        found = self.MESSAGE.search(entry)
        if found is None:
            return True
        if record.levelno < logging.ERROR and "apache_beam" in entry[found.end():]:
            return False  # logged by Beam's own code (its log_location)
        text = codecs.escape_decode(found.group(1).encode())[0].decode("utf-8", "replace")
        record.msg, record.args, record.name = "%s", (text,), "spool.worker"
        return True


def wait_or_stop(result) -> None:
    """Run until the job ends, or until SIGTERM/SIGINT: then cancel it and return. Nothing
    is lost by stopping: every batch already written is in the ledger, and offsets are
    committed only past those, so a restart resumes where the spool ends."""
    from apache_beam.runners.runner import PipelineState

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(1.0):
            if PipelineState.is_terminal(result.state):
                break
        if stop.is_set():
            log.info("stopping the job (signal received)")
            result.cancel()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    try:
        result.wait_until_finish()
    except RuntimeError:
        if not stop.is_set():
            raise
    if stop.is_set():
        log.info("job stopped; its completed work is in the ledger")


def job_metrics(result) -> dict[str, int]:
    """Beam counters of a finished job, as ``{"namespace:name": value}``; distributions as
    their sum and count."""
    out: dict[str, int] = {}
    try:
        query = result.metrics().query()
    except (NotImplementedError, AttributeError):  # a runner without metrics
        return out
    for c in query.get("counters", []):
        key = f"{c.key.metric.namespace}:{c.key.metric.name}"
        out[key] = out.get(key, 0) + int(c.committed or c.attempted or 0)
    for d in query.get("distributions", []):
        value = d.committed or d.attempted
        if value is not None:
            key = f"{d.key.metric.namespace}:{d.key.metric.name}"
            out[key + ".sum"] = out.get(key + ".sum", 0) + int(value.sum)
            out[key + ".count"] = out.get(key + ".count", 0) + int(value.count)
    return out


def report_metrics(result, job: str) -> None:
    metrics = job_metrics(result)
    if metrics:
        log.info("%s metrics: %s", job, ", ".join(f"{k}={v}" for k, v in sorted(metrics.items())))
