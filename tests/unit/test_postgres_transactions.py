"""The BEGIN text a tool call opens its transaction with: constant SQL and checked integers only."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_tenants.errors import InvalidInput
from mcp_tenants.postgres.transactions import begin_command


def test_read_only_begin_sets_its_timeouts_and_styles_locally() -> None:
    assert begin_command(True, statement_timeout_ms=30_000, lock_timeout_ms=5_000) == (
        b"BEGIN READ ONLY; SET LOCAL statement_timeout = 30000; SET LOCAL lock_timeout = 5000;"
        b" SET LOCAL IntervalStyle = iso_8601; SET LOCAL DateStyle = 'ISO, YMD'"
    )


def test_default_begin_keeps_the_servers_transaction_mode() -> None:
    limits = {"statement_timeout_ms": 1, "lock_timeout_ms": 1}
    assert begin_command(None, **limits).startswith(b"BEGIN; SET LOCAL")
    assert begin_command(False, **limits).startswith(b"BEGIN READ WRITE; SET LOCAL")


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "1000", "1; RESET ALL", None])
def test_anything_but_a_positive_integer_is_refused(value: Any) -> None:
    with pytest.raises(InvalidInput, match="statement_timeout_ms must be a positive integer"):
        begin_command(True, statement_timeout_ms=value, lock_timeout_ms=1)
    with pytest.raises(InvalidInput, match="lock_timeout_ms must be a positive integer"):
        begin_command(True, statement_timeout_ms=1, lock_timeout_ms=value)
