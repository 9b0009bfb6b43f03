"""The suite-wide secret audit: every secret the tests hand out, every text the servers give back.

Fixtures register the secrets they create (database passwords, S3 secret keys, the Redis
password); helpers that drive servers record every tool result, error message and log line.
At the end of the session ``tests/integration/conftest.py`` fails the run if any recorded text
contains any registered secret.
"""

from __future__ import annotations

SECRETS: set[str] = set()
TEXTS: list[tuple[str, str]] = []


def secret(*values: str | None) -> None:
    """Remember values that must never appear in output."""
    SECRETS.update(v for v in values if v and len(v) >= 6)


def record(source: str, text: str) -> None:
    """Remember a text a server produced (a result, an error, a log)."""
    if text:
        TEXTS.append((source, text))


def leaks() -> list[str]:
    """One line for each recorded text that contains a registered secret (the secret masked)."""
    found = []
    for source, text in TEXTS:
        for value in SECRETS:
            if value in text:
                found.append(f"{source}: contains a secret ({value[:2]}...)")
    return found
