"""Evolving a tenant's tables for a load: additive DDL only, users' customisations kept.

Create new tables, add new columns, index tables that have grown past a few MB, widen
VARCHARs. Views that depend on a widened table are dropped and recreated around the change,
in the load's transaction, with their definition, owner, grants and comment.
"""

from __future__ import annotations

from spool.failpoints import failpoint
from spool.warehouse.plan import Plan, TablePlan
from spool.warehouse.schema import record_names
from spool.warehouse.stage import StagedGroup
from spool.warehouse.statements import Statements

# aclitem privilege letters (PostgreSQL and Redshift)
PRIVILEGE_LETTERS = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE",
                     "D": "TRUNCATE", "x": "REFERENCES", "t": "TRIGGER"}


def apply_ddl(d, cur, schema: str, groups: list[StagedGroup],
              plans: list[Plan], record: bool = True) -> dict[str, list[str]]:
    """Apply the plans' DDL and (``record``) then record the new names; returns the views
    rebuilt around each widened table (by name, qualified when in another schema)."""
    batch = Statements(cur)
    for group, plan in zip(groups, plans, strict=True):
        for tp in plan.tables.values():
            if tp.create:
                batch.add(d.ddl.create_table(schema, tp.name, tp.new_columns))
                continue
            for col, sql_type in tp.new_columns:
                batch.add(d.ddl.add_column(schema, tp.name, col, sql_type))
            if tp.index:
                # merges look rows up by record id and key: index once the table is big
                for sql in (d.ddl.index_record_id(schema, tp.name),
                            d.ddl.index_keys(schema, tp.name, tp.key_columns)
                            if group.key_names and tp.key_columns else None):
                    if sql:
                        batch.add(sql)
    batch.flush()
    failpoint("load.ddl")
    rebuilt: dict[str, list[str]] = {}
    for plan in plans:
        for tp in plan.tables.values():
            if tp.widen:
                rebuilt[tp.name] = widen(d, cur, schema, tp)
    if record:
        record_names(d, cur, schema, plans)
    return rebuilt


def widen(d, cur, schema: str, tp: TablePlan) -> list[str]:
    """Widen VARCHARs; views that depend on the table are dropped and recreated around
    the change, in this transaction, with their definition, owner, grants, comment."""
    cur.execute(d.catalog.dependent_views(), (schema, tp.name))
    views = cur.fetchall()
    batch = Statements(cur)
    for view_schema, view, _definition, *_rest in reversed(views):
        batch.add(d.views.drop_view(view_schema, view))
    for col, sql_type in tp.widen:
        batch.add(d.ddl.alter_type(schema, tp.name, col, sql_type))
    for view_schema, view, definition, acl, owner, comment, _depth in views:
        batch.add(d.views.create_view(view_schema, view, definition.rstrip().rstrip(";")))
        if owner:
            batch.add(d.views.view_owner(view_schema, view, owner))
        for grantee, privileges in grants(acl):
            batch.add(d.views.grant(view_schema, view, privileges, grantee))
        if comment:
            literal = cur.mogrify("%s", (comment,)).decode()
            batch.add(d.views.comment_view(view_schema, view, literal))
    batch.flush()
    return [view if view_schema == schema else f"{view_schema}.{view}"
            for view_schema, view, *_rest in views]


def _acl_items(acl) -> list[str]:
    """aclitems from ``relacl``: a list, or its text form ``{a=r/o,"group g=r/o"}``."""
    if not acl:
        return []
    if isinstance(acl, list | tuple):
        return [str(a) for a in acl]
    items, current, quoted = [], "", False
    for ch in str(acl).strip("{}"):
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            items.append(current)
            current = ""
        else:
            current += ch
    if current:
        items.append(current)
    return items


def grants(acl) -> list[tuple[str, list[str]]]:
    """(grantee, privileges) from aclitems like ``alice=arwd/owner`` (``=r/o``: PUBLIC)."""
    out: list[tuple[str, list[str]]] = []
    for item in _acl_items(acl):
        grantee, _, rest = item.partition("=")
        privs = rest.split("/")[0].replace("*", "")
        names = [PRIVILEGE_LETTERS[ch] for ch in privs if ch in PRIVILEGE_LETTERS]
        if names:
            out.append((grantee.strip('"') or "PUBLIC", names))
    return out
