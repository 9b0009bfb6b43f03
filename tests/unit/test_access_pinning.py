"""The connect hooks pin the checked address: PostgreSQL (hostaddr) and S3 (urllib3 connections)."""

import http.server
import threading

import psycopg
import pytest
import urllib3

from mcp_tenants.access.targets import TargetPolicy
from mcp_tenants.devservices import free_ports
from mcp_tenants.errors import AccessDenied
from mcp_tenants.minio import targets as s3_targets
from mcp_tenants.postgres.targets import pin, pinned_connection_class

from .test_access_targets import FakeDNS


class Answers:
    """A DNS answer the test can change between connects (rebinding)."""

    def __init__(self, *addresses):
        self.addresses = list(addresses)

    def __call__(self):
        return self.addresses


def test_postgres_params_carry_the_checked_addresses_and_drop_a_callers_hostaddr():
    answers = Answers("93.184.216.34", "2606:2800:220:1::1")
    policy = TargetPolicy(remote=True, resolver=FakeDNS({"db.example.com": answers}))
    params = pin(policy, {"host": "db.example.com", "port": 5432, "hostaddr": "169.254.169.254", "user": "u"})
    assert params == {
        "host": "db.example.com,db.example.com",
        "hostaddr": "93.184.216.34,2606:2800:220:1::1",
        "port": 5432,
        "user": "u",
    }
    answers.addresses = ["169.254.169.254"]
    with pytest.raises(AccessDenied, match=r"169\.254\.169\.254"):
        pin(policy, {"host": "db.example.com", "port": 5432})


def test_postgres_connect_goes_to_the_checked_address_and_rechecks_every_time():
    (port,) = free_ports(1)  # nothing listens there
    answers = Answers("127.0.0.1")
    policy = TargetPolicy(remote=False, resolver=FakeDNS({"db.test": answers}))
    connection_class = pinned_connection_class(policy)
    assert pinned_connection_class(policy) is connection_class  # one class per policy
    # The fake name resolves only through the policy, so reaching 127.0.0.1 proves the pin was used.
    with pytest.raises(psycopg.OperationalError, match=r"127\.0\.0\.1"):
        connection_class.connect(host="db.test", port=port, dbname="d", user="u", password="p", connect_timeout=2)
    answers.addresses = ["::ffff:169.254.169.254"]  # rebinding between two connects
    with pytest.raises(AccessDenied, match="may never point there"):
        connection_class.connect(host="db.test", port=port, dbname="d", user="u", password="p", connect_timeout=2)
    with pytest.raises(ValueError, match="keyword"):
        connection_class.connect(f"host=db.test port={port}")


@pytest.fixture
def http_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = self.headers.get("Host", "").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_s3_connections_go_to_the_checked_address_and_recheck_on_reconnect(http_server):
    answers = Answers("127.0.0.1")
    policy = TargetPolicy(remote=False, resolver=FakeDNS({"s3.test": answers}))
    manager = s3_targets.pin(urllib3.PoolManager(retries=False), policy)
    response = manager.request("GET", f"http://s3.test:{http_server}/")
    assert response.status == 200 and response.data == f"s3.test:{http_server}".encode()  # the name is kept
    answers.addresses = ["169.254.169.254"]
    manager.clear()  # the next request needs a new connection: checked again
    with pytest.raises(AccessDenied, match=r"169\.254\.169\.254"):
        manager.request("GET", f"http://s3.test:{http_server}/")


def test_s3_connections_over_http_transport_refuse_loopback(http_server):
    manager = s3_targets.pin(urllib3.PoolManager(retries=False), TargetPolicy(remote=True))
    for host in ("127.0.0.1", "[::ffff:127.0.0.1]", "2130706433"):
        with pytest.raises(AccessDenied, match="loopback"):
            manager.request("GET", f"http://{host}:{http_server}/")
