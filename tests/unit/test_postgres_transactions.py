"""The statements a tool call opens its transaction with: constant SQL, values as parameters."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_tenants.errors import InvalidInput
from mcp_tenants.postgres.transactions import IDLE_GRACE_MS, begin_statements


def test_read_only_begin_sets_timeouts_styles_and_standard_strings_locally() -> None:
    (begin, no_params), (settings, params) = begin_statements(
        True, statement_timeout_ms=30_000, lock_timeout_ms=5_000, server_version=150_000
    )
    assert (begin, no_params) == (b"BEGIN READ ONLY", [])
    for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "IntervalStyle"):
        assert f"set_config('{name}'" in settings
    assert "set_config('standard_conforming_strings', 'on', true)" in settings
    assert "transaction_timeout" not in settings
    assert params == ["30000", "5000", str(30_000 + IDLE_GRACE_MS)]


def test_postgres_17_also_gets_a_transaction_timeout() -> None:
    (_begin, _), (settings, params) = begin_statements(
        True, statement_timeout_ms=1_000, lock_timeout_ms=1_000, server_version=170_002
    )
    assert "set_config('transaction_timeout', $4, true)" in settings and len(params) == 4


def test_default_begin_keeps_the_servers_transaction_mode() -> None:
    limits: dict[str, Any] = {"statement_timeout_ms": 1, "lock_timeout_ms": 1, "server_version": 150_000}
    assert begin_statements(None, **limits)[0][0] == b"BEGIN"
    assert begin_statements(False, **limits)[0][0] == b"BEGIN READ WRITE"


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "1000", "1; RESET ALL", None])
def test_anything_but_a_positive_integer_is_refused(value: Any) -> None:
    with pytest.raises(InvalidInput, match="statement_timeout_ms must be a positive integer"):
        begin_statements(True, statement_timeout_ms=value, lock_timeout_ms=1, server_version=150_000)
    with pytest.raises(InvalidInput, match="lock_timeout_ms must be a positive integer"):
        begin_statements(True, statement_timeout_ms=1, lock_timeout_ms=value, server_version=150_000)
