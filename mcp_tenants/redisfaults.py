"""What a Redis failure means: an outage that heals by itself, or a refusal that needs the operator.

- An *outage*: a lost connection, a timeout, or an error reply of a Redis that is loading, out of
  memory, read-only (a demoted primary), failing over or unable to save (LOADING, OOM, READONLY,
  MASTERDOWN, MISCONF, ...). Writes are queued and retried.
- A *refusal*: an ACL that forbids the command (NOPERM), wrong credentials (WRONGPASS, NOAUTH), or
  any other error reply. Retrying cannot help, so the call fails at once, naming the cause.
"""

from __future__ import annotations

import redis

from mcp_tenants.config import redact

#: Error replies of a Redis that will take the command again later, without anyone's help.
OUTAGE_REPLIES = frozenset(
    {"OOM", "READONLY", "LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "MISCONF"}
)

# redis-py strips the code from the message of the replies it maps to a class of its own.
_CODES_BY_CLASS = (
    ("OutOfMemoryError", "OOM"),
    ("ReadOnlyError", "READONLY"),
    ("NoPermissionError", "NOPERM"),
    ("MasterDownError", "MASTERDOWN"),
    ("TryAgainError", "TRYAGAIN"),
    ("ClusterDownError", "CLUSTERDOWN"),
)

_PIPELINE_NOTE = " of pipeline caused error: "


def reply_code(exc: redis.RedisError) -> str:
    """The error code of a Redis error reply (``OOM``, ``NOPERM``, ``WRONGTYPE``...)."""
    for name, code in _CODES_BY_CLASS:
        cls = getattr(redis.exceptions, name, None)
        if cls is not None and isinstance(exc, cls):
            return code
    return str(getattr(exc, "status_code", None) or str(exc).split(" ", 1)[0]).upper()


def is_unreachable(exc: redis.RedisError) -> bool:
    """True when Redis did not answer at all (not: it answered and refused our credentials)."""
    auth = (redis.exceptions.AuthenticationError, getattr(redis.exceptions, "AuthorizationError", ()))
    network = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
    return isinstance(exc, network) and not isinstance(exc, auth)


def is_outage(exc: redis.RedisError) -> bool:
    """True when retrying later can succeed without anyone's help."""
    return is_unreachable(exc) or (
        isinstance(exc, redis.exceptions.ResponseError) and reply_code(exc) in OUTAGE_REPLIES
    )


def reason(exc: BaseException) -> str:
    """The failure as text for a message: secrets masked."""
    return redact(str(exc)) or type(exc).__name__


def without_pipeline_note(exc: redis.RedisError) -> redis.RedisError:
    """``exc`` without the note redis-py adds to an error in a pipeline, which quotes the command
    (values included) and hides the reply's error code."""
    text = str(exc.args[0]) if exc.args else ""
    if text.startswith("Command # ") and _PIPELINE_NOTE in text:
        exc.args = (text.split(_PIPELINE_NOTE, 1)[1], *exc.args[1:])
    return exc


def refusal_hint(exc: redis.RedisError, keys: str) -> str:
    """What the operator can do about a refusal; ``keys`` names the keys the writes need."""
    code = reply_code(exc)
    if code == "NOPERM":
        return f"grant the Redis user access to the {keys} keys (ACL SETUSER; see README, Security)"
    if isinstance(exc, redis.exceptions.ConnectionError) or code in ("NOAUTH", "WRONGPASS"):
        return "check REDIS_PASSWORD and REDIS_USERNAME (or the credentials in REDIS_URL)"
    return "retrying cannot help: fix Redis, then try again"
