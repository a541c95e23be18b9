"""Secrets by reference: connection strings name where the secret is, not what it is.

``env:NAME`` reads the environment variable NAME, ``file:/path`` reads a file (stripped),
anything else is taken literally. References are what options, the ledger and logs hold;
values are resolved where the connection is made. ``redact`` hides passwords in DSNs and
URLs before anything is logged or stored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


class SecretError(LookupError):
    pass


def resolve(ref: str | None) -> str | None:
    if ref is None:
        return None
    if ref.startswith("env:"):
        name = ref[4:]
        value = os.environ.get(name)
        if value is None:
            raise SecretError(f"environment variable {name} is not set (referenced as {ref})")
        return value
    if ref.startswith("file:"):
        path = Path(ref[5:])
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise SecretError(f"cannot read secret file {path}: {exc.strerror}") from exc
    return ref


_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+(?P<at>@)", re.I)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)('[^']*'|\S+)", re.I)
_JSON_PASSWORD = re.compile(r'(?P<head>"(?:password|secret|token)"\s*:\s*)"(?:[^"\\]|\\.)*"',
                            re.I)


def redact(text: str) -> str:
    """``text`` with passwords in URLs (user:pass@ or :pass@), key=value DSNs and JSON
    ("password": "...") replaced by ***."""
    text = _URL_PASSWORD.sub(r"\g<head>***\g<at>", text)
    text = _JSON_PASSWORD.sub(r'\g<head>"***"', text)
    return _KV_PASSWORD.sub(r"\g<head>***", text)
