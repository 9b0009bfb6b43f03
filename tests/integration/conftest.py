"""Integration-only hooks: the secret audit over everything the suite's servers said."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import audit


@pytest.fixture(scope="session", autouse=True)
def secret_audit() -> Iterator[None]:
    """After the last test: no tool result, error or log line may contain a secret the suite used."""
    yield
    leaks = audit.leaks()
    if leaks:
        pytest.fail("secrets leaked into output:\n" + "\n".join(sorted(set(leaks))[:50]), pytrace=False)
