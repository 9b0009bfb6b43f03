"""Scoped redaction: a call's output masks only its own tenant's and the server's secrets, never a guess."""

from mcp_tenants.access.redaction import ScopedRedaction, tenant_secrets
from mcp_tenants.config import redact
from mcp_tenants.postgres.tenant import PostgresTenant
from mcp_tenants.settings import RedisSettings, Settings

OTHER = PostgresTenant(tenant_id="other", host="h", database="d", user="u", password="other-tenant-pw-1")
MINE = PostgresTenant(tenant_id="mine", host="h", database="d", user="u", password="my-own-pw-2")
SERVER = ScopedRedaction(["server-token-3"])


def test_the_oracle_learns_nothing_about_another_tenants_password():
    guesses = "wrong-guess other-tenant-pw-1 another-guess"
    error = f'invalid input syntax for type integer: "{guesses}"'
    scoped = SERVER.for_call(tenant_secrets(MINE), {"tenant_id": "mine", "sql": f"SELECT $${guesses}$$::int"})
    assert scoped(error) == error  # every guess comes back as sent: right and wrong look the same
    assert "***" in redact(error)  # logs still mask every secret the process knows


def test_own_and_server_secrets_are_masked_unless_the_caller_sent_them():
    leaked = "connect failed for my-own-pw-2 with server-token-3"
    scoped = SERVER.for_call(tenant_secrets(MINE), {"tenant_id": "mine", "sql": "SELECT 1"})
    assert scoped(leaked) == "connect failed for *** with ***"
    sent = SERVER.for_call(tenant_secrets(MINE), {"tenant_id": "mine", "params": ["x", "my-own-pw-2"]})
    assert sent(leaked) == "connect failed for my-own-pw-2 with ***"
    inside = SERVER.for_call(tenant_secrets(MINE), {"sql": "SELECT 'prefix-server-token-3-suffix'"})
    assert inside(leaked) == "connect failed for *** with server-token-3"


def test_server_secrets_come_from_the_settings():
    settings = Settings(
        server="postgres",
        redis=RedisSettings(password="redis-pw-4", url="redis://:url-pw-5@r:6379/0"),
        auth_token="auth-token-6",
        encryption_keys=("fernet-key-7",),
    )
    scoped = ScopedRedaction.from_settings(settings).for_call([], {})
    assert scoped("redis-pw-4 url-pw-5 auth-token-6 fernet-key-7") == "*** *** *** ***"
