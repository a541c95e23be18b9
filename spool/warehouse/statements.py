"""Statements sent to the warehouse together, one round trip for many (none returns rows)."""

from __future__ import annotations


class Statements:
    def __init__(self, cur) -> None:
        self.cur = cur
        self.parts: list[bytes] = []

    def add(self, sql: str, params=None) -> None:
        self.parts.append(self.cur.mogrify(sql, params) if params is not None
                          else sql.encode())

    def flush(self) -> None:
        if self.parts:
            self.cur.execute(b";\n".join(self.parts))
            self.parts = []
