"""The ``spool`` command's subcommands, one module per group (tenants, batches, status)."""
