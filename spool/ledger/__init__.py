"""The ledger: PostgreSQL tables that say where every batch is (docs/ledger.md).

Every ledger statement lives in this package, one module per concern:

* ``store``: the connection (:class:`~spool.ledger.store.Ledger`), migrations, and the
  spool job's READY rows;
* ``registry``: tenants and their destinations, streams' Singer schemas, tenant state;
* ``states``: the batch state machine, which builds every statement that moves a batch;
* ``claims``: the loader's side: claims with leases, one function per transition;
* ``notify``: new READY batches announced (``NOTIFY``) and awaited (``LISTEN``);
* ``queries``: what the ``spool`` command reads (status, batches, rejected records);
* ``outbox``: tenants' webhooks, and the events waiting to be delivered to them;
* ``migrations``: the schema, as numbered migrations.
"""
