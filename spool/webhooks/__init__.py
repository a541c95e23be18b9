"""Webhooks: what a tenant's endpoint is told, how it is signed, and how it is delivered.

* ``events``: the event types, their ids (from the data, so a retried ledger transaction
  cannot duplicate one) and their payloads, built from a load's reports and changes;
* ``signing``: the ``Spool-Signature`` header (HMAC-SHA256 over timestamp and body), and
  its verification;
* ``delivery``: the deliverer: due events from the ledger's outbox, POSTed, retried with a
  capped exponential backoff until the endpoint answers 2xx.

Events are written to the outbox (spool.ledger.outbox) in the ledger transaction that marks
a load's batches; delivery runs apart from loading, so a slow or failing endpoint never
delays nor fails a load (docs/webhooks.md).
"""
