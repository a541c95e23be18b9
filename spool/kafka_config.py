"""kafka-python client settings shared by the jobs and the CLI.

Extra client settings come as ``key=value`` strings (``--kafka_config security_protocol=SSL``),
so TLS and SASL for MSK or any managed Kafka need no code change. Values that look like
integers or booleans are converted; everything else stays text.
"""

from __future__ import annotations

from collections.abc import Iterable

# Throughput settings for reading the fat queue in large chunks.
CONSUMER_DEFAULTS = {
    "enable_auto_commit": False,
    "check_crcs": False,
    "fetch_max_bytes": 64 * 1024 * 1024,
    "max_partition_fetch_bytes": 16 * 1024 * 1024,
    "receive_buffer_bytes": 4 * 1024 * 1024,
    "request_timeout_ms": 30_000,
}


class KafkaConfigError(ValueError):
    pass


def parse_extra(pairs: Iterable[str] | None) -> dict:
    out: dict = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise KafkaConfigError(f"--kafka_config expects key=value, got {pair!r}")
        text = value.strip()
        if text.lower() in ("true", "false"):
            out[key] = text.lower() == "true"
        else:
            try:
                out[key] = int(text)
            except ValueError:
                out[key] = text
    return out


def consumer_config(bootstrap: str, extra: Iterable[str] | None = None, **overrides) -> dict:
    cfg = {"bootstrap_servers": bootstrap.split(","), **CONSUMER_DEFAULTS}
    cfg.update(overrides)
    cfg.update(parse_extra(extra))
    return cfg


def producer_config(bootstrap: str, extra: Iterable[str] | None = None, **overrides) -> dict:
    cfg = {"bootstrap_servers": bootstrap.split(","), "acks": "all", "linger_ms": 20,
           "batch_size": 512 * 1024, "max_request_size": 16 * 1024 * 1024}
    cfg.update(overrides)
    cfg.update(parse_extra(extra))
    return cfg


def transient(exc: BaseException) -> bool:
    """True for an outage of the queue that passes on its own (a broker down, restarting,
    changing leaders, a request that timed out); False for anything that will not pass by
    waiting: rejected credentials, a SASL or TLS failure, missing authorization, a bad
    setting. The spool job waits out the first and ends on the second."""
    import ssl

    from kafka import errors

    if isinstance(exc, (errors.AuthorizationError, errors.SaslAuthenticationFailedError,
                        errors.KafkaConfigurationError, ssl.SSLError)):
        return False
    if isinstance(exc, errors.KafkaError):
        return bool(exc.retriable) or isinstance(exc, errors.BrokerNotAvailableError)
    return isinstance(exc, (ConnectionError, TimeoutError))
