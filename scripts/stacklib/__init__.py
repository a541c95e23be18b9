"""The local services behind scripts/stack.py, one module per service."""
