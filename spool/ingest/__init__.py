"""The spool job's side: queue messages → shaped rows → parts → batch files + ledger rows.

The flow reads from the module names:

* ``decode`` (with ``messages``, ``envelope``, ``singer``): bytes → a decoded record, or a
  rejection with its reason; ``directory`` caches what the ledger's registry says about
  tenants and streams;
* ``shape``: a record → rows of its root and child tables, each value with its original
  field path and JSON type;
* ``chunks``: a chunk of queue records decoded and shaped, filed into parts;
* ``parts``: the rows of one (tenant, stream, window) from a stretch of the queue, columnar;
* ``batchfile``: the batch file format (Parquet, metadata, column summary);
* ``writer``: parts → a batch's replay-safe name and bytes, the file, then its ledger row.
"""
