"""The fat queue's topics: does one exist, which exist, create one; each answer within seconds.

A broker run for Spool does not create topics on first use (``auto.create.topics.enable``
is off, so partitions and retention are chosen, not defaulted). A producer or a job pointed
at a missing topic would otherwise wait out its client's metadata timeout and end with a
client error; ``spool produce``, ``spool topics`` and the spool job ask here first and turn
the answer into one line that names the topic and the command that creates it.

Every failure is a :class:`TopicError` whose text is that line (without ``error:``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from spool.kafka_config import parse_extra

CHECK_SECONDS = 5.0  # long enough for a broker across a region, short enough to wait for
# Kafka's own rule for a topic name
_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")
# the broker's own sentence in a kafka-python error, e.g. "Replication factor: 3 larger than
# available brokers: 1."
_BROKER_SAID = re.compile(r"error_message=[\"']([^\"']+)")


class TopicError(Exception):
    """A topic question without an answer; the text says why and what to do."""


class BrokerUnreachable(TopicError):
    pass


class TopicMissing(TopicError):
    pass


class TopicExists(TopicError):
    pass


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    retention_ms: int | None  # -1: kept forever; None: the broker did not say


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a Kafka topic, or None."""
    if name in (".", ".."):
        return f"topic name {name!r} is reserved by Kafka; choose another"
    if not _NAME.fullmatch(name):
        return (f"topic name {name!r} is not valid: use 1 to 249 letters, digits, '.', '_' "
                "or '-'")
    return None


def create_hint(topic: str, bootstrap_flag: str = "") -> str:
    """The command that creates ``topic``; ``bootstrap_flag`` (e.g. ``--bootstrap h:9092``)
    when the broker is not the default one."""
    return f"spool topics create {topic}" + (f" {bootstrap_flag}" if bootstrap_flag else "")


def retention_text(ms: int | None) -> str:
    """``7d``, ``36h``, ``90m``, ``15s``, ``250ms``, ``forever``: the largest exact unit."""
    if ms is None:
        return "?"
    if ms < 0:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """kafka-python logs every refused connection while it bootstraps; the answer here is
    the exception's one line, so its log stays quiet for the question's few seconds."""
    kafka_log = logging.getLogger("kafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        kafka_log.setLevel(level)


def _admin(bootstrap: str, extra: Iterable[str] | None, timeout_s: float, flag: str):
    """An admin client connected to ``bootstrap``, or BrokerUnreachable within
    ``timeout_s`` (naming ``flag``, the caller's way to give the address). Only the extra
    settings an admin client knows are passed on: the jobs' ``--kafka_config`` also carries
    consumer tuning, which concerns no admin question."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    timeout_ms = int(timeout_s * 1000)
    settings = {k: v for k, v in parse_extra(extra).items()
                if k in KafkaAdminClient.DEFAULT_CONFIG}
    settings.update(bootstrap_servers=bootstrap.split(","), client_id="spool-topics",
                    bootstrap_timeout_ms=timeout_ms, request_timeout_ms=timeout_ms)
    try:
        return KafkaAdminClient(**settings)
    except KafkaError:  # kafka-python 3: KafkaTimeoutError "Unable to bootstrap"
        raise BrokerUnreachable(f"cannot reach Kafka at {bootstrap}: no broker answered within "
                                f"{timeout_s:g} s; check that it runs and that {flag} (or "
                                "$SPOOL_KAFKA_BOOTSTRAP) names it") from None


def _retentions(admin, names: list[str]) -> dict[str, int]:
    from kafka.admin import ConfigResource, ConfigResourceType

    if not names:
        return {}
    found = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n, {"retention.ms": None}) for n in names],
        config_filter="all")
    out = {}
    for name, configs in found.get("topic", {}).items():
        value = (configs.get("retention.ms") or {}).get("value")
        if value is not None:
            out[name] = int(value)
    return out


def describe(bootstrap: str, names: list[str] | None = None,
             extra: Iterable[str] | None = None, timeout_s: float = CHECK_SECONDS,
             flag: str = "--bootstrap") -> list[Topic]:
    """The topics named (all but Kafka's internal ones when None), by name; a name that
    does not exist is left out."""
    from kafka.errors import KafkaError

    with quiet():
        admin = _admin(bootstrap, extra, timeout_s, flag)
        try:
            meta = [t for t in admin.describe_topics(names)
                    if t["error_code"] == 0 and not t.get("is_internal")]
            retention = _retentions(admin, [t["name"] for t in meta])
        except KafkaError as exc:
            raise BrokerUnreachable(f"Kafka at {bootstrap} did not describe its topics: "
                                    f"{type(exc).__name__}") from None
        finally:
            admin.close()
    return sorted((Topic(t["name"], len(t["partitions"]), retention.get(t["name"]))
                   for t in meta), key=lambda t: t.name)


def require(bootstrap: str, topic: str, extra: Iterable[str] | None = None,
            timeout_s: float = CHECK_SECONDS, flag: str = "--bootstrap",
            bootstrap_flag: str = "") -> Topic:
    """``topic`` as it is, or TopicMissing naming the command that creates it."""
    found = describe(bootstrap, [topic], extra, timeout_s, flag)
    if not found:
        raise TopicMissing(f"topic {topic!r} does not exist on Kafka at {bootstrap} (the broker "
                           "does not create topics on first use); create it with "
                           f"'{create_hint(topic, bootstrap_flag)}'")
    return found[0]


def create(bootstrap: str, name: str, partitions: int, retention_ms: int | None = None,
           replication_factor: int | None = None, extra: Iterable[str] | None = None,
           timeout_s: float = CHECK_SECONDS) -> Topic:
    """Create a topic; the broker's defaults for what is None. Raises TopicExists, or
    TopicError with the broker's reason."""
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    spec: dict = {"num_partitions": partitions, "replication_factor": replication_factor or -1}
    if retention_ms is not None:
        spec["configs"] = {"retention.ms": str(retention_ms)}
    with quiet():
        admin = _admin(bootstrap, extra, timeout_s, "--bootstrap")
        try:
            admin.create_topics({name: spec}, timeout_ms=int(timeout_s * 1000),
                                wait_for_metadata=True)
        except TopicAlreadyExistsError:
            raise TopicExists(f"topic {name!r} already exists on Kafka at {bootstrap}; 'spool "
                              "topics list' shows its partitions and retention") from None
        except KafkaError as exc:
            said = _BROKER_SAID.search(str(exc))
            reason = said[1] if said else getattr(exc, "description", "") or "no reason given"
            raise TopicError(f"Kafka at {bootstrap} did not create topic {name!r}: "
                             f"{type(exc).__name__} ({reason})") from None
        finally:
            admin.close()
    return describe(bootstrap, [name], extra, timeout_s)[0]
