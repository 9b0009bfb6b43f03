"""The round trip's byte budget (``budget.Budget``) on real sockets: what libpq would read next
is looked at before it reads, over TCP by the chain of messages, over a Unix socket by form."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest

from mcp_tenants.postgres.budget import AnswerTooLarge, Budget


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", 4 + len(body)) + body


def _row(text: bytes) -> bytes:
    return _message(b"D", struct.pack("!hi", 1, len(text)) + text)


def _error(message: str, severity: bytes = b"ERROR") -> bytes:
    fields = b"S" + severity + b"\0V" + severity + b"\0C22P02\0M" + message.encode() + b"\0\0"
    return _message(b"E", fields)


@pytest.fixture(params=["tcp", "unix"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket]]:
    """(server side, client side): the client side stands for libpq's socket."""
    if request.param == "unix":
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        listener = socket.create_server(("127.0.0.1", 0))
        b = socket.create_connection(listener.getsockname())
        a, _ = listener.accept()
        listener.close()
    b.settimeout(5)  # a budget that lets everything through fails the test instead of hanging it
    with a, b:
        yield a, b


def _send(sock: socket.socket, data: bytes) -> None:
    sock.sendall(data)
    time.sleep(0.02)  # loopback delivers at once; the peer sees all of it after this


def _read_like_libpq(sock: socket.socket, budget: Budget, size: int, total: int) -> bytes:
    got = b""
    while len(got) < total:
        budget.before_read()
        got += sock.recv(size)
    return got


def test_an_answer_of_small_messages_goes_through(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    budget = Budget(client.fileno(), 1 << 20, rows=False)
    answer = b"".join(_row(b'[%d,"E\\u0000N,' % i + b"x" * 80 + b'"]') for i in range(2000))
    _send(server, answer)
    assert _read_like_libpq(client, budget, 16 << 10, len(answer)) == answer


def test_a_large_error_is_stopped_before_it_is_read_and_says_what_it_was(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    budget = Budget(client.fileno(), 64 << 10)
    rows = b"".join(_row(b"[1]") for _ in range(100))
    error = _error('invalid input syntax for type integer: "' + "x" * 200_000 + '"')
    _send(server, rows + error[:100_000])
    with pytest.raises(AnswerTooLarge) as raised:
        _read_like_libpq(client, budget, 16 << 10, len(rows) + len(error))
    assert raised.value.kind == "error"
    assert raised.value.length == len(error) - 1
    assert raised.value.fields["M"].startswith("invalid input syntax for type integer")
    assert raised.value.fields["C"] == "22P02"


def test_a_large_row_is_stopped_when_rows_are_not_bounded(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    budget = Budget(client.fileno(), 64 << 10)
    _send(server, _row(b"[1]") + _row(b'["' + b"y" * 100_000 + b'"]')[:50_000])
    with pytest.raises(AnswerTooLarge) as raised:
        _read_like_libpq(client, budget, 16 << 10, 100_000)
    assert raised.value.kind == "row"
    assert raised.value.fields["text"].startswith('["yyy')


def test_an_answer_past_the_budget_in_small_messages_is_stopped(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    budget = Budget(client.fileno(), 64 << 10)
    answer = b"".join(_row(b"[" + b"7" * 500 + b"]") for _ in range(300))  # 150 kB in all
    _send(server, answer)
    with pytest.raises(AnswerTooLarge) as raised:
        _read_like_libpq(client, budget, 16 << 10, len(answer))
    assert raised.value.kind is None


def test_the_chain_sees_an_error_however_its_bytes_look() -> None:
    # Over TCP the headers are found by walking the messages, not by their look: an error whose
    # severity is not the usual form is found too, and row data that looks like a header is not.
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    client.settimeout(5)
    with server, client:
        budget = Budget(client.fileno(), 64 << 10, rows=False)
        lookalike = _row(b'["E\\u0000\\u0001\\u0000\\u0000S' + b"ERROR" * 10 + b'"]')
        odd = _message(b"E", b"Z" * 40_000)
        _send(server, lookalike * 50 + odd)
        with pytest.raises(AnswerTooLarge) as raised:
            _read_like_libpq(client, budget, 4 << 10, len(lookalike) * 50 + len(odd))
        assert raised.value.kind == "error"
