"""How a Snowflake warehouse URL (given by reference to ``--dsn``) becomes connector
arguments, and the one line a malformed one gets."""

from __future__ import annotations

import pytest

from spool.warehouse.snowflake_session import connect_args


def test_a_url_names_account_user_database_and_passes_the_rest_on():
    assert connect_args("snowflake://loader:p%40ss%2Fw@xy12345.eu-west-1/ANALYTICS"
                        "?warehouse=LOAD_WH&role=SPOOL&port=443") == {
        "account": "xy12345.eu-west-1", "user": "loader", "password": "p@ss/w",
        "database": "ANALYTICS", "warehouse": "LOAD_WH", "role": "SPOOL", "port": 443}


def test_upper_case_parameters_are_session_parameters():
    assert connect_args("snowflake://u:p@acct/db?LOCK_TIMEOUT=30&QUERY_TAG=spool"
                        "&warehouse=wh")["session_parameters"] == {"LOCK_TIMEOUT": 30,
                                                                   "QUERY_TAG": "spool"}


def test_a_key_pair_url_has_no_password():
    args = connect_args("snowflake://loader@acct/db?authenticator=SNOWFLAKE_JWT"
                        "&private_key_file=/run/secrets/key.p8")
    assert "password" not in args and args["private_key_file"] == "/run/secrets/key.p8"


@pytest.mark.parametrize("url", ["postgresql://u:p@host/db", "snowflake://u:p@acct",
                                 "snowflake://u:p@acct/"])
def test_a_url_without_a_database_or_of_another_scheme_is_refused(url):
    with pytest.raises(ValueError, match=r"snowflake://USER:PASSWORD@ACCOUNT/DATABASE"):
        connect_args(url)
