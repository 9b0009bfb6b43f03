"""Settings, tenant ids, env tenants and redaction: no services needed."""

import pytest

from mcp_tenants.config import env_tenants, mask_url, redact, validate_tenant_id
from mcp_tenants.errors import InvalidInput
from mcp_tenants.postgres.tenant import PostgresTenant
from mcp_tenants.settings import RedisSettings, Settings

BAD_IDS = ["*", "a:b", "a b", "../x", "", "x" * 100, "ténant", "A", "-a", "_a", "a\n", "a/b", None, 7]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_tenant_ids_are_refused(bad):
    with pytest.raises(InvalidInput, match="tenant_id"):
        validate_tenant_id(bad)


@pytest.mark.parametrize("good", ["a", "0", "acme", "acme-prod_2", "a" * 64])
def test_good_tenant_ids_are_accepted(good):
    assert validate_tenant_id(good) == good


def test_env_tenants_match_ids_case_insensitively_and_lower_case_them():
    env = {
        "POSTGRES_TENANT_Acme_HOST": "db.example",
        "postgres_tenant_acme_database": "sales",
        "POSTGRES_TENANT_ACME_USER": "reader",
        "POSTGRES_TENANT_ACME_PASSWORD": "pw-acme-123",
        "POSTGRES_TENANT_ACME_PORT": "6543",
        "POSTGRES_TENANT_ACME_ACCESS": "read-write",
        "UNRELATED": "x",
    }
    tenants = env_tenants(PostgresTenant, env)
    assert list(tenants) == ["acme"]
    acme = tenants["acme"]
    assert (acme.host, acme.port, acme.database, acme.user, acme.access) == (
        "db.example",
        6543,
        "sales",
        "reader",
        "read-write",
    )
    assert acme.sslmode == "prefer"


def test_env_tenant_with_bad_port_names_the_tenant_and_field():
    env = {
        "POSTGRES_TENANT_X_HOST": "h",
        "POSTGRES_TENANT_X_DATABASE": "d",
        "POSTGRES_TENANT_X_USER": "u",
        "POSTGRES_TENANT_X_PORT": "eighty",
    }
    with pytest.raises(InvalidInput, match=r"'x'.*PORT"):
        env_tenants(PostgresTenant, env)


def test_tenant_config_validation_names_the_field_but_never_the_password():
    with pytest.raises(InvalidInput, match="port"):
        PostgresTenant(tenant_id="t", host="h", database="d", user="u", password="pw", port=70000)
    with pytest.raises(InvalidInput, match="access"):
        PostgresTenant(tenant_id="t", host="h", database="d", user="u", password="pw", access="admin")
    with pytest.raises(InvalidInput) as info:
        PostgresTenant(tenant_id="t", host="h", database="d", user="u", password="bad\x00secret")
    assert "secret" not in str(info.value)


def test_redacted_and_public_views_hide_the_password():
    tenant = PostgresTenant(tenant_id="t", host="h", database="d", user="u", password="hunter2-long")
    assert tenant.redacted()["password"] == "***"
    assert "password" not in tenant.public()
    assert tenant.to_dict()["password"] == "hunter2-long"


def test_redactor_masks_registered_secrets_in_any_text():
    PostgresTenant(tenant_id="t", host="h", database="d", user="u", password="s3cr3t-value")
    assert redact("failed with s3cr3t-value inside") == "failed with *** inside"


def test_mask_url_hides_password():
    assert mask_url("rediss://user:pa55word@host:6380/2") == "rediss://user:***@host:6380/2"
    assert mask_url("redis://host:6379/0") == "redis://host:6379/0"


def test_settings_defaults_follow_the_spec():
    s = Settings.from_env("minio", {})
    assert (s.query_max_rows, s.result_max_bytes, s.statement_timeout_ms) == (1000, 1 << 20, 30_000)
    assert (s.object_max_bytes, s.list_max_keys, s.worker_threads) == (1 << 20, 1000, 16)
    assert s.redis == RedisSettings(host="redis", port=6379, db=1)
    assert Settings.from_env("postgres", {}).redis.db == 0


def test_bad_setting_names_the_variable():
    with pytest.raises(InvalidInput, match="MCP_WORKER_THREADS"):
        Settings.from_env("postgres", {"MCP_WORKER_THREADS": "many"})
    with pytest.raises(InvalidInput, match="MCP_QUERY_MAX_ROWS=0"):
        Settings.from_env("postgres", {"MCP_QUERY_MAX_ROWS": "0"})
    with pytest.raises(InvalidInput, match="MCP_TRANSPORT"):
        Settings.from_env("postgres", {"MCP_TRANSPORT": "carrier-pigeon"})


def test_redis_url_wins_and_is_described_without_password():
    s = Settings.from_env("postgres", {"REDIS_URL": "redis://:topsecret@cache:6390/3", "REDIS_HOST": "ignored"})
    assert s.redis.client_kwargs() == {"url": "redis://:topsecret@cache:6390/3"}
    assert "topsecret" not in s.redis.describe()


def test_redactor_masks_longest_overlapping_secret_and_keeps_the_rest():
    from mcp_tenants.config import Redactor

    r = Redactor()
    r.add("abcd", "abcdef-long", "xyz9", None, "ab")  # "ab" is too short to mask
    assert r("1 abcdef-long 2 abcd 3 abcdxyz9 ab") == "1 *** 2 *** 3 ****** ab"
    assert r("") == "" and r("abc") == "abc"


def test_redactor_cost_does_not_grow_with_the_number_of_secrets():
    from mcp_tenants.config import Redactor

    r = Redactor()
    r.add(*(f"secret-{i:06d}" for i in range(20_000)))
    assert r("x secret-012345 y secret-019999") == "x *** y ***"
