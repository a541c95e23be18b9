"""The house rules of docs/architecture.md, held: which package may import which.

``pipelines → transforms → spool``; nothing under ``spool/`` imports Beam; inside ``spool/``
each package imports only what its row of the table allows; ``spool/commands`` holds no SQL.
Imports inside functions count too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# module (or package) → what it may import of the project besides itself
ALLOWED: dict[str, set[str]] = {
    "spool.sdc": set(),
    "spool.secrets": set(),
    "spool.failpoints": set(),
    "spool.kafka_config": set(),
    "spool.retry": set(),
    "spool.kafka_topics": {"spool.kafka_config"},
    # spool check offsets: the ledger's offset sets against Kafka, gaps decoded as the spool
    # job decodes them
    "spool.offset_check": {"spool.ledger", "spool.kafka_topics", "spool.kafka_config",
                           "spool.ingest.decode", "spool.ingest.offsets"},
    "spool.metrics": {"spool.ledger"},
    "spool.objectstore": {"spool.retry"},
    "spool.ledger": {"spool.sdc", "spool.secrets", "spool.retry"},
    "spool.read_stalls": {"spool.retry", "spool.ledger"},
    "spool.ingest": {"spool.sdc", "spool.ledger.store", "spool.objectstore", "spool.maps"},
    "spool.warehouse": {"spool.sdc", "spool.ingest.batchfile", "spool.objectstore",
                        "spool.secrets", "spool.failpoints"},
    "spool.loader": {"spool.ledger", "spool.warehouse", "spool.objectstore", "spool.secrets",
                     "spool.failpoints", "spool.webhooks.events", "spool.retry"},
    "spool.webhooks": {"spool.ledger", "spool.secrets", "spool.sdc", "spool.retry"},
    "spool.maps": {"spool.secrets"},
    "spool.commands": {"spool.ledger", "spool.warehouse.destination", "spool.kafka_config",
                       "spool.kafka_topics",
                       "spool.warehouse.history", "spool.warehouse.probe",
                       "spool.secrets", "spool.webhooks", "spool.offset_check",
                       # spool maps test: a map's records shaped and named as they would load
                       "spool.maps", "spool.ingest.shape", "spool.warehouse.naming",
                       # spool produce: each line checked as the spool job decodes it
                       "spool.ingest.decode", "spool.ingest.envelope",
                       "spool.ingest.messages"},
    "spool.cli": {"spool", "spool.commands"},
    "spool": set(),
    "transforms": {"spool"},
    "pipelines": {"spool", "transforms"},
}
PROJECT = ("spool", "transforms", "pipelines")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def exists(module: str) -> bool:
    base = ROOT / module.replace(".", "/")
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, ``from a import b`` as ``a.b`` when that is
    a module of the project."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                out.append((node.lineno, full if exists(full) else node.module))
    return out


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def rule_of(module: str) -> str:
    return max((k for k in ALLOWED if within(module, k)), key=len)


def violations() -> list[str]:
    found = []
    for top in PROJECT:
        for path in sorted((ROOT / top).rglob("*.py")):
            me = module_name(path)
            rule = rule_of(me)
            for line, target in imports(path):
                where = f"{path.relative_to(ROOT)}:{line}"
                if top == "spool" and within(target, "apache_beam"):
                    found.append(f"{where}: spool/ imports no Beam ({target})")
                if target.split(".")[0] not in PROJECT or within(target, rule):
                    continue
                if not any(within(target, ok) for ok in ALLOWED[rule]):
                    found.append(f"{where}: {me} may not import {target}")
    return found


def test_every_import_follows_the_layers():
    assert violations() == []


def test_the_layer_check_sees_a_forbidden_import():
    bad = ROOT / "spool" / "warehouse" / "zz_layer_probe.py"
    bad.write_text("def f():\n    from spool.ledger import claims\n    import apache_beam\n")
    try:
        found = violations()
    finally:
        bad.unlink()
    assert "spool/warehouse/zz_layer_probe.py:2: spool.warehouse.zz_layer_probe may not " \
        "import spool.ledger.claims" in found
    assert any("zz_layer_probe.py:3: spool/ imports no Beam" in f for f in found)


def test_the_cli_commands_hold_no_sql():
    sql = re.compile(r"\b(SELECT|UPDATE|INSERT INTO|DELETE FROM)\b")
    found = [f"{path.relative_to(ROOT)}:{n}"
             for path in sorted((ROOT / "spool" / "commands").rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), start=1)
             if sql.search(line)]
    assert found == []
