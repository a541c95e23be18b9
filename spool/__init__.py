"""Spool: multi-tenant ELT on Apache Beam, the plain-Python library under the transforms.

Nothing in this package imports Beam: ``ingest`` (queue message → batch file), ``ledger``
(every ledger statement), ``loader`` (a tenant's batches → its warehouse), ``warehouse``
(contract, naming, dialects, the load transaction), ``commands`` (the CLI), and the shared
``sdc`` names, object store and secrets. docs/architecture.md has the map.
"""

__version__ = "0.1.0"
