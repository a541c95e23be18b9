"""The loader's rules as plain Python: a tenant's READY batches → its warehouse, exactly once.

* ``tenant``: :class:`~spool.loader.tenant.TenantLoader`: claim → cut transactions → stage →
  load → classify → isolate the culprit → mark, for one tenant at a time;
* ``transactions``: the rule that cuts claimed batches into warehouse transactions;
* ``errors``: which failures pass on their own (retry later) and which need a person;
* ``warehouses``: one open connection per warehouse, and the warehouse loader bound to it.

The Beam job (transforms/load_batches.py) only schedules tenants onto workers and counts.
"""
