"""Spool: multi-tenant ELT on Apache Beam, the plain-Python library under the transforms.

Nothing in this package imports Beam: envelope, shaping rules, batch file format, object
store, ledger, warehouse dialects and contract, CLI.
"""

__version__ = "0.1.0"
