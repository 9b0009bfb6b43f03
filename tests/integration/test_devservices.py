"""The throwaway services the suite relies on start, answer, restart and check credentials."""

from __future__ import annotations

import io
import os
import secrets

import psycopg
import pytest
import redis
from minio.error import S3Error
from redis.backoff import NoBackoff
from redis.retry import Retry

from mcp_tenants.devservices import PostgresService, RedisService, S3Service, ServiceUnavailable

NO_RETRY = Retry(NoBackoff(), 0)  # redis-py retries failed connects with backoff by default


def _bucket() -> str:
    return f"devsvc-{secrets.token_hex(4)}"


# --- PostgreSQL -------------------------------------------------------------------------------


def test_postgres_accepts_its_superuser_password_over_tcp_and_refuses_a_wrong_one(
    postgres_service: PostgresService,
) -> None:
    with psycopg.connect(**postgres_service.conninfo()) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        assert conn.info.host == "127.0.0.1"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**postgres_service.conninfo(password="wrong"))


def test_postgres_restart_keeps_port_password_and_data(postgres_service: PostgresService) -> None:
    table = f"restart_{secrets.token_hex(4)}"
    postgres_service.execute(f"CREATE TABLE {table} (v text)")
    postgres_service.execute(f"INSERT INTO {table} VALUES ('kept')")
    port = postgres_service.port
    session = psycopg.connect(**postgres_service.conninfo(), autocommit=True)
    try:
        postgres_service.restart()
        assert postgres_service.port == port
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")  # the restart ended the old session
        assert postgres_service.execute(f"SELECT v FROM {table}") == [("kept",)]
    finally:
        session.close()
        postgres_service.execute(f"DROP TABLE IF EXISTS {table}")


def test_pg_database_belongs_to_a_fresh_role_that_logs_in_with_its_password(
    pg_database: dict[str, object],
) -> None:
    conninfo = {
        "host": pg_database["host"],
        "port": pg_database["port"],
        "dbname": pg_database["database"],
        "user": pg_database["user"],
    }
    with psycopg.connect(**conninfo, password=pg_database["password"]) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1)")
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        assert owner == (pg_database["user"],)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**conninfo, password="wrong")


# --- Redis ------------------------------------------------------------------------------------


def test_redis_answers_only_with_its_password(redis_service: RedisService) -> None:
    assert redis_service.client().ping()
    assert redis.Redis.from_url(redis_service.url).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=redis_service.host, port=redis_service.port, password="wrong", retry=NO_RETRY).ping()


@pytest.mark.parametrize("turn", [1, 2])
def test_redis_db_is_empty_at_the_start_of_every_test(redis_db, turn: int) -> None:
    assert redis_db.client.dbsize() == 0
    redis_db.client.set("left-behind", str(turn))
    assert redis.Redis.from_url(redis_db.url).get("left-behind") == str(turn).encode()
    assert redis_db.env()["REDIS_DB"] == str(redis_db.db)


def test_redis_comes_back_on_the_same_port_after_a_kill_and_after_a_stop(
    redis_service: RedisService,  # only to share its skip / CI-failure when Redis is missing
) -> None:
    with RedisService() as service:
        port = service.port
        service.kill()
        with pytest.raises(redis.ConnectionError):
            service.client(retry=NO_RETRY).ping()
        service.start()
        assert service.port == port and service.client().ping()
        service.stop()
        service.start()
        assert service.port == port and service.client().ping()
        data_dir = service.tmpdir
    assert data_dir is not None and not os.path.exists(data_dir)


def test_missing_binary_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ServiceUnavailable, match="apt-get install redis-server"):
        RedisService().start()


# --- S3 ---------------------------------------------------------------------------------------


def test_s3_admin_identity_creates_a_bucket_and_round_trips_an_object(
    s3_service: S3Service,
) -> None:
    client, bucket = s3_service.client(), _bucket()
    client.make_bucket(bucket)
    client.put_object(bucket, "hello.txt", io.BytesIO(b"hello"), 5)
    assert client.get_object(bucket, "hello.txt").read() == b"hello"
    assert bucket in {b.name for b in client.list_buckets()}


def test_s3_rejects_a_wrong_secret_key(s3_service: S3Service) -> None:
    import minio

    impostor = minio.Minio(
        s3_service.endpoint,
        access_key=s3_service.access_key,
        secret_key="not-the-secret",
        secure=False,
        region=s3_service.region,
    )
    with pytest.raises(S3Error) as caught:
        impostor.list_buckets()
    assert caught.value.code in {"SignatureDoesNotMatch", "AccessDenied"}


def test_s3_read_only_identity_reads_but_cannot_create_a_bucket_or_write(
    s3_service: S3Service,
) -> None:
    bucket = _bucket()
    s3_service.client().make_bucket(bucket)
    s3_service.client().put_object(bucket, "k", io.BytesIO(b"v"), 1)
    reader = s3_service.client(read_only=True)
    assert reader.get_object(bucket, "k").read() == b"v"
    with pytest.raises(S3Error) as caught:
        reader.make_bucket(_bucket())
    assert caught.value.code == "AccessDenied"
    with pytest.raises(S3Error) as caught:
        reader.put_object(bucket, "k2", io.BytesIO(b"v"), 1)
    assert caught.value.code == "AccessDenied"


def test_s3_refuses_to_delete_a_non_empty_bucket_like_minio(s3_service: S3Service) -> None:
    client, bucket = s3_service.client(), _bucket()
    client.make_bucket(bucket)
    client.put_object(bucket, "k", io.BytesIO(b"v"), 1)
    with pytest.raises(S3Error) as caught:
        client.remove_bucket(bucket)
    assert caught.value.code == "BucketNotEmpty"
