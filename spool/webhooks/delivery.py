"""Delivering the outbox: due events POSTed to each tenant's endpoint until it answers 2xx.

One round of :meth:`Deliverer.deliver_due`:

1. **claim** due events with a lease (spool.ledger.outbox.claim_due), counting the attempt;
2. **resolve** each tenant's secret reference (``env:NAME``, ``file:/path``) here, at
   delivery, so no secret is ever in the ledger;
3. **sign and POST** the stored body (the same bytes every attempt) with a fresh timestamp,
   several at once, each with a short timeout; redirects are not followed;
4. **record** each attempt: delivered on a 2xx; otherwise due again after a capped
   exponential backoff, with the status and the error for ``spool webhooks list`` and
   ``spool status``.

Delivery is at least once: an endpoint that took an event but whose answer was lost, or a
deliverer that died between POST and record, means the event comes again, with the same
``Spool-Event-Id``. Nothing here is on a load's path: a load only writes the outbox row.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from spool import retry, secrets
from spool.ledger import outbox
from spool.ledger.store import Ledger
from spool.webhooks import events, signing

log = logging.getLogger(__name__)
USER_AGENT = "Spool-Webhooks/1"  # the version of the event format (docs/webhooks.md)


@dataclass(frozen=True)
class DeliveryConfig:
    timeout_seconds: float = 10.0  # per POST: connect and answer
    retry_base_seconds: float = 10.0  # backoff: base * 2^(attempts-1) ...
    retry_cap_seconds: float = 600.0  # ... up to this
    lease_seconds: float = 120.0  # a claimed event is another deliverer's after this
    batch_size: int = 50  # events claimed per round
    parallel: int = 8  # POSTs at once
    poll_seconds: float = 2.0  # a running deliverer looks for due events this often
    keep_delivered_days: float = 7.0  # delivered events are forgotten after this


@dataclass(frozen=True)
class Answer:
    """What one POST came to: ``error`` None means delivered."""

    status: int | None
    error: str | None


@dataclass(frozen=True)
class Round:
    claimed: int = 0
    delivered: int = 0
    failed: int = 0


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """Capped exponential backoff after the ``attempts``-th failed attempt: base, 2*base,
    4*base, ... up to cap."""
    return min(cap, base * 2 ** max(0, min(attempts, 64) - 1))


def url_problem(url: str | None) -> str | None:
    """Why ``url`` cannot be a webhook endpoint, or None."""
    if not url:
        return "--webhook needs a URL: http(s)://host[:port]/path"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--webhook {url!r} is not an http:// or https:// URL with a host"
    if parts.username or parts.password:
        return ("--webhook holds credentials; the endpoint checks the Spool-Signature "
                "header instead (--webhook-secret env:NAME)")
    return None


def secret_problem(ref: str | None) -> str | None:
    """Why ``ref`` cannot be a webhook secret reference, or None. The secret itself is
    refused: the ledger and every listing hold references only."""
    if not ref:
        return ("--webhook needs --webhook-secret env:NAME (and export NAME for the loader "
                "and 'spool webhooks deliver') or --webhook-secret file:/path")
    if not ref.startswith(("env:", "file:")) or len(ref) <= 5:
        return ("--webhook-secret takes a reference, not the secret itself: --webhook-secret "
                "env:NAME (and export NAME for the loader and 'spool webhooks deliver') or "
                "--webhook-secret file:/path")
    return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer that is not 2xx: a POST is not sent on elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
    """POST ``body``; 2xx is delivered, anything else (or no answer) is an error."""
    if url_problem(url):
        return Answer(None, f"not an http(s) URL: {url!r}")
    request = urllib.request.Request(url, data=body, headers=headers,  # noqa: S310 - http(s)
                                     method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as resp:
            status = resp.status
            resp.read(4096)
    except urllib.error.HTTPError as exc:
        detail = " ".join(exc.read(200).decode("utf-8", "replace").split())
        return Answer(exc.code, f"HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail
                                                                   else ""))
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        return Answer(None, f"no answer: {type(reason).__name__}: {reason}".strip())
    if 200 <= status < 300:
        return Answer(status, None)
    return Answer(status, f"HTTP {status}")


def headers_for(due: outbox.Due, secret: str, body: bytes, now: float) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Spool-Event-Id": due.event_id,
        "Spool-Event-Type": due.type,
        "Spool-Delivery-Attempt": str(due.attempts),
        signing.HEADER: signing.sign(secret, int(now), body),
    }


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:webhooks"


class Deliverer:
    """Delivers due events with one ledger connection; ``send`` and ``clock`` are injected
    (the signature's timestamp is the clock's)."""

    def __init__(self, ledger: Ledger, config: DeliveryConfig = DeliveryConfig(),
                 owner: str | None = None, clock: Callable[[], float] = time.time,
                 send: Callable[[str, bytes, dict, float], Answer] = post) -> None:
        self.ledger = ledger
        self.cfg = config
        self.owner = owner or default_owner()
        self.clock = clock
        self.send = send

    def _attempt(self, due: outbox.Due) -> Answer:
        try:
            secret = secrets.resolve(due.secret_ref)
        except secrets.SecretError as exc:
            return Answer(None, f"webhook secret: {exc}")
        body = events.body(due.event_id, due.type, due.tenant, due.created_at, due.payload)
        return self.send(due.url, body, headers_for(due, secret, body, self.clock()),
                         self.cfg.timeout_seconds)

    def deliver_due(self) -> Round:
        """One round: claim, POST side by side, record each answer (in this thread: the
        ledger connection is this deliverer's alone)."""
        claimed = outbox.claim_due(self.ledger, self.owner, self.cfg.lease_seconds,
                                   self.cfg.batch_size)
        if not claimed:
            return Round()
        with ThreadPoolExecutor(max_workers=max(1, min(self.cfg.parallel, len(claimed))),
                                thread_name_prefix="spool-webhook") as pool:
            answers = list(pool.map(self._attempt, claimed))
        delivered = 0
        for due, answer in zip(claimed, answers, strict=True):
            if answer.error is None:
                outbox.mark_delivered(self.ledger, due.event_id, answer.status or 200)
                delivered += 1
                continue
            delay = backoff_seconds(due.attempts, self.cfg.retry_base_seconds,
                                    self.cfg.retry_cap_seconds)
            outbox.mark_undelivered(self.ledger, due.event_id, self.owner, answer.status,
                                    secrets.redact(answer.error), delay)
            log.warning("webhook %s of %s (%s) not delivered, attempt %d, next in %.0f s: %s",
                        due.event_id, due.tenant, due.type, due.attempts, delay, answer.error)
        return Round(len(claimed), delivered, len(claimed) - delivered)

    def drain(self) -> Round:
        """Rounds until nothing is due (an event that fails is due again only after its
        backoff, so this ends)."""
        total = Round()
        while True:
            r = self.deliver_due()
            total = Round(total.claimed + r.claimed, total.delivered + r.delivered,
                          total.failed + r.failed)
            if r.claimed < self.cfg.batch_size:
                return total

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set, looking every ``poll_seconds``. A ledger that is
        unreachable is logged and tried again next time: delivery waits, nothing else.
        Once an hour it forgets events delivered ``keep_delivered_days`` ago."""
        import psycopg2

        pruned_at = None
        once = retry.OncePer()
        while not stop.is_set():
            try:
                self.drain()
                if pruned_at is None or time.monotonic() - pruned_at > 3600:
                    outbox.prune_delivered(self.ledger, self.cfg.keep_delivered_days)
                    pruned_at = time.monotonic()
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                self.ledger.close()  # the ledger is away: one line a minute, no traceback
                if once.allow("ledger"):
                    log.warning("webhook delivery waits for the ledger (%s); trying again "
                                "every %.0f s", retry.brief(exc), self.cfg.poll_seconds)
            except Exception:  # a deliverer outlives any failed round; logged
                log.exception("webhook delivery round failed; trying again in %.0f s",
                              self.cfg.poll_seconds)
                self.ledger.close()
            stop.wait(self.cfg.poll_seconds)


class Background:
    """A deliverer on a daemon thread with its own ledger connection: how the loader job's
    launcher delivers webhooks beside the pipeline it waits for."""

    def __init__(self, ledger_dsn: str, config: DeliveryConfig = DeliveryConfig(),
                 owner: str | None = None) -> None:
        # patience=0: the deliverer's own loop waits out a ledger outage (and can stop)
        self._deliverer = Deliverer(Ledger(ledger_dsn, application_name="spool-webhooks",
                                           patience=0), config, owner)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._deliverer.run, args=(self._stop,),
                                        name="spool-webhooks", daemon=True)

    def start(self) -> Background:
        self._thread.start()
        return self

    def stop(self, flush: bool = False, timeout: float = 30.0) -> None:
        """Stop the thread; with ``flush``, deliver once more what is due now (a drain run
        announces its own loads before it ends; what fails waits for the next run)."""
        self._stop.set()
        self._thread.join(timeout)
        if flush and not self._thread.is_alive():
            try:
                self._deliverer.drain()
            except Exception:  # the job's outcome is its loads'; logged
                log.exception("webhook delivery at the end of the run failed")
        self._deliverer.ledger.close()
