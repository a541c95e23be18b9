"""The state id a Singer STATE is saved under comes from a Kafka header any producer sets: a
bad one rejects that STATE (the reason in _sdc_rejected), never stops the spool job."""

from spool.ingest.singer import DEFAULT_STATE_ID, STATE_ID_HEADER, state_id_of


def test_a_state_without_the_header_is_the_default_one():
    assert state_id_of([("tenant", b"acme")]) == (DEFAULT_STATE_ID, None)
    assert state_id_of(None) == (DEFAULT_STATE_ID, None)


def test_a_named_state_keeps_its_name():
    assert state_id_of([(STATE_ID_HEADER, "tap-ü".encode())]) == ("tap-ü", None)


def test_a_name_the_ledger_cannot_hold_is_rejected_not_saved():
    # PostgreSQL's text holds no NUL: saving it would fail on every retry of the bundle
    for bad in (b"tap\x00a", b"", b"  ", b"\xff", b"x" * 256):
        name, why = state_id_of([(STATE_ID_HEADER, bad)])
        assert name is None and STATE_ID_HEADER in why, bad
