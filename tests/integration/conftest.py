"""Integration-only hooks: the secret audit over everything the suite's servers said."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests import audit

from .stdio import ServerProcess


@pytest.fixture(scope="session", autouse=True)
def secret_audit() -> Iterator[None]:
    """After the last test: no tool result, error or log line may contain a secret the suite used."""
    yield
    leaks = audit.leaks()
    if leaks:
        pytest.fail("secrets leaked into output:\n" + "\n".join(sorted(set(leaks))[:50]), pytrace=False)


@pytest.fixture
def stdio_servers() -> Iterator[Callable[..., ServerProcess]]:
    """``make(module, **env)``: server processes to run over stdio; closed after the test, and
    their logs handed to the secret audit."""
    made: list[ServerProcess] = []

    def make(module: str, **env: str) -> ServerProcess:
        server = ServerProcess(module, env)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()
