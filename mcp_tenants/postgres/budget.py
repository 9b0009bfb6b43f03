"""What libpq may read of one round trip's answer: bytes counted, and messages looked at first.

libpq keeps a whole protocol message in memory, three times over, before anyone can look at it,
and PostgreSQL quotes whole values in its messages (``invalid input syntax for type integer:
"xxx..."``, 200 MB) and prints folded constants in plans. So before libpq reads from its socket,
``Budget.before_read`` looks at the socket:

- **Over TCP** (Linux), exactly. The kernel counts the bytes that arrived on the connection
  (``TCP_INFO``'s ``tcpi_bytes_received``) and those still waiting (``FIONREAD``); the difference
  is where libpq's next read starts in the answer. The answer is a chain of messages (a type
  byte, then a length), so the budget walks that chain from its start: each message header
  ahead of libpq's read is looked at (``MSG_PEEK``, ``_WINDOW`` bytes ahead) before libpq can
  take it, and a message longer than half the budget ends the round trip before libpq reads it,
  with what was coming (an error's or notice's fields, a row's first characters). The bytes
  that arrived are counted, so an answer of many smaller messages ends the same way once it
  passes the budget: what libpq holds never grows much past the budget.
- **Otherwise** (a Unix socket), by the bytes waiting before each read, looked at for message
  headers by their form, and counted when the rows are not bounded by the statement itself.

What this cannot see: a header that arrives while libpq is already reading (the walk then stops
and only the count holds), and anything through TLS (the count holds; the headers cannot be
read). There the cap on what is copied and returned (``diagnostics``) still holds.
"""

from __future__ import annotations

import fcntl
import re
import socket
import struct
import termios

#: Bytes looked at ahead of libpq's next read; it reads at most its buffer's free space at once
#: (16 kB until a message needs more).
_WINDOW = 64 << 10
#: ``struct tcp_info`` up to and including ``tcpi_bytes_received`` (a u64 at byte 128, Linux 4.1+).
_TCP_INFO_LEN = 136
_BYTES_RECEIVED = struct.Struct("=Q")
#: The message types a backend sends (PostgreSQL's protocol, "Message Formats").
_TYPES = frozenset(b"123ACDEGHIKNRSTVWZcdnstv")
_KINDS = {ord("E"): "error", ord("N"): "notice", ord("D"): "row"}
# Without the chain: a header of an error, notice or row, found by its form (length below 1 GB).
_HEADER = re.compile(rb"[DEN][\x00-\x3f]")
_HEADER_NO_ROWS = re.compile(rb"[EN][\x00-\x3f]")
_SEVERITY = re.compile(rb"S[^\x00]{1,32}\x00[VCM]")


class AnswerTooLarge(Exception):
    """PostgreSQL's answer to a round trip was larger than its budget; the connection was closed."""

    def __init__(self, limit: int, kind: str | None = None, length: int = 0, fields: dict[str, str] | None = None):
        self.limit = limit
        self.kind = kind  # "error", "notice" or "row" when the large message was seen, else None
        self.length = length  # bytes of that message
        self.fields = fields or {}  # of an error or notice: "M" message, "C" code, ... (cut); of a row: "text"
        super().__init__(f"PostgreSQL's answer passed the {limit}-byte budget of the round trip")


class Budget:
    """One round trip's budget over libpq's socket ``fd``: ``limit`` bytes, messages of at most
    half of it. ``rows``: False when the statement bounds its rows itself (``rowjson``), so only
    other messages need a look on the way without the chain."""

    def __init__(self, fd: int, limit: int, *, rows: bool = True) -> None:
        self.fd = fd
        self.limit = limit
        self.rows = rows
        self.received = 0
        sock = socket.socket(fileno=fd)
        try:
            self._family = sock.family
            tcp = self._family in (socket.AF_INET, socket.AF_INET6)
            arrived = _bytes_received(sock) if tcp else None
        finally:
            sock.detach()
        # Where the answer starts in the connection's byte count: what arrived, less what is
        # still waiting (a whole message at least: libpq read the last answer to its end).
        self._start = None if arrived is None else arrived - _waiting(fd)
        self._next = 0  # where the next message header is, from the answer's start
        self._walking = self._start is not None

    def before_read(self) -> None:
        """Raises ``AnswerTooLarge`` when what libpq would read next passes the budget."""
        sock = socket.socket(self._family, socket.SOCK_STREAM, 0, self.fd)
        try:
            if self._start is None:
                self._by_form(sock)
            else:
                self._by_chain(sock)
        finally:
            sock.detach()

    def _by_chain(self, sock: socket.socket) -> None:
        assert self._start is not None
        # The count and the bytes waiting from one moment: nothing arrived between two looks.
        arrived: int | None = None
        for _ in range(3):
            waiting = _waiting(self.fd)
            arrived = _bytes_received(sock)
            if arrived is None or _waiting(self.fd) == waiting:
                break
        else:
            waiting = -1  # arriving too fast to say where libpq is: only the count this time
        if arrived is None:  # the kernel stopped saying: look by form from here on
            self._start = None
            self._by_form(sock)
            return
        self.received = arrived - self._start
        if self._walking and waiting > 0:
            self._look_ahead(sock, waiting)
        if self.received > self.limit:
            raise AnswerTooLarge(self.limit)

    def _look_ahead(self, sock: socket.socket, waiting: int) -> None:
        """Walks the headers within reach of libpq's next read (``waiting`` bytes are there)."""
        at = self.received - waiting  # libpq's next read starts here
        if self._next < at:
            self._walking = False  # a header went by unseen (it arrived during a read)
            return
        if self._next - at + 5 > min(waiting, _WINDOW):
            return  # the next header is not within reach yet
        chunk = _peek(sock, min(waiting, _WINDOW))
        self._next = at + self._walk(chunk, self._next - at)

    def _walk(self, chunk: bytes, offset: int) -> int:
        """The messages in ``chunk`` from ``offset`` on; returns where the next one starts."""
        half = self.limit // 2
        end = len(chunk) - 5
        while offset <= end:
            kind = chunk[offset]
            length = int.from_bytes(chunk[offset + 1 : offset + 5], "big")
            if kind not in _TYPES or length < 4:
                self._walking = False  # not a message: encrypted, or the chain was lost
                return offset
            if length > half:
                body = chunk[offset + 5 :]
                name = _KINDS.get(kind)
                if name == "row":
                    raise AnswerTooLarge(self.limit, name, length, {"text": _text(body[6:])})
                raise AnswerTooLarge(self.limit, name, length, _fields(body) if name else {})
            offset += 1 + length
        return offset

    def _by_form(self, sock: socket.socket) -> None:
        waiting = _waiting(self.fd)
        if waiting <= 0:
            return
        found = self._large_message(_peek(sock, min(waiting, self.limit)))
        if found is not None:
            raise found
        if self.rows:
            # Bytes libpq leaves unread are counted again at the next read: an overestimate,
            # which only rows the statement does not bound could need.
            self.received += waiting
            if self.received > self.limit:
                raise AnswerTooLarge(self.limit)

    def _large_message(self, chunk: bytes) -> AnswerTooLarge | None:
        """A header in ``chunk`` of an error, notice or row longer than half the budget."""
        for found in (_HEADER if self.rows else _HEADER_NO_ROWS).finditer(chunk):
            at = found.start()
            length = int.from_bytes(chunk[at + 1 : at + 5], "big")
            if length <= self.limit // 2:
                continue
            body = chunk[at + 5 :]
            kind = _KINDS[chunk[at]]
            if kind == "row":
                # One column (2 bytes), its length (4 bytes: all of the message but 10), its text.
                if body[:2] == b"\x00\x01" and int.from_bytes(body[2:6], "big") == length - 10:
                    return AnswerTooLarge(self.limit, kind, length, {"text": _text(body[6:])})
            elif _SEVERITY.match(body):  # every error and notice starts with its severity
                return AnswerTooLarge(self.limit, kind, length, _fields(body))
        return None


def _waiting(fd: int) -> int:
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])


def _bytes_received(sock: socket.socket) -> int | None:
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except (OSError, AttributeError):
        return None
    if len(info) < _TCP_INFO_LEN:
        return None  # a kernel older than 4.1
    return int(_BYTES_RECEIVED.unpack_from(info, _TCP_INFO_LEN - 8)[0])


def _peek(sock: socket.socket, size: int) -> bytes:
    try:
        return sock.recv(size, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return b""


def _text(data: bytes) -> str:
    return data.decode("utf-8", "ignore")


def _fields(body: bytes) -> dict[str, str]:
    """The fields of an ErrorResponse or NoticeResponse body (code byte, text, NUL), the last one cut."""
    fields: dict[str, str] = {}
    at = 0
    while at < len(body) and body[at] != 0:
        end = body.find(b"\0", at + 1)
        fields[chr(body[at])] = _text(body[at + 1 : end if end >= 0 else len(body)])
        if end < 0:
            break
        at = end + 1
    return fields
