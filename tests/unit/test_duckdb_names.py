"""DuckDB compares identifiers without case, even quoted: a user's own ``Orders`` table or
``Coupon`` column takes the names ``orders`` and ``coupon`` there, and Spool must pick others
(PostgreSQL, where they are different names, keeps the plain ones)."""

from __future__ import annotations

import duckdb
import pytest

from spool.ingest.batchfile import ROOT_TABLE_KEY
from spool.warehouse.dialects import DIALECTS
from spool.warehouse.dialects.duckdb import DUCKDB
from spool.warehouse.plan import CatalogState, Observed, plan_load


def plan_orders(dialect):
    state = CatalogState(relations={"Orders"},  # the user's own table
                         tables={("invoices", ROOT_TABLE_KEY): "invoices"},
                         columns={"invoices": {}},
                         physical={"invoices": {"Coupon": "VARCHAR"}})  # the user's column
    obs = Observed()
    obs.add('["coupon"]', "string", 1, 3)
    new = plan_load(dialect, "orders", [], {ROOT_TABLE_KEY: obs}, state)
    old = plan_load(dialect, "invoices", [], {ROOT_TABLE_KEY: obs}, state)
    return new.tables[ROOT_TABLE_KEY].name, old.tables[ROOT_TABLE_KEY].columns[
        ('["coupon"]', "string")]


@pytest.mark.parametrize(("dialect", "expected"), [(DUCKDB, ("orders_2", "coupon_2")),
                                                   (DIALECTS["postgres"], ("orders", "coupon"))])
def test_names_a_user_took_in_another_case_are_not_reused(dialect, expected):
    assert plan_orders(dialect) == expected


def test_duckdb_really_takes_both_cases_for_one_name():
    conn = duckdb.connect()
    conn.execute('CREATE TABLE "Orders" (a INTEGER)')
    with pytest.raises(duckdb.CatalogException):
        conn.execute('CREATE TABLE "orders" (a INTEGER)')
