"""A lexical scanner for PostgreSQL SQL text, just precise enough for the read-only guard.

The guard must see the statement the way the server will: where a string literal, a comment, a
dollar-quoted body or a quoted identifier begins and ends. The rules mirror PostgreSQL's
``scan.l`` (PostgreSQL 12 to 17): nested ``/* */`` comments, ``--`` comments, ``'...'`` with
``''`` doubling, ``E'...'`` with backslash escapes (and plain ``'...'`` too when
``standard_conforming_strings`` is off), ``B''``/``X''`` strings that end at the first quote,
``$tag$...$tag$`` bodies, ``"..."`` and ``U&"..."`` identifiers (decoded, ``UESCAPE`` included),
identifiers that may contain ``$``, and ``$n`` parameters. Everything else is one-character
punctuation, which is enough: no multi-character operator can hide a comment or a quote.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from mcp_tenants.errors import QueryError

#: Token kinds.
WORD = "word"  # an unquoted identifier or keyword, lower-cased (ASCII only, like PostgreSQL)
QUOTED = "quoted"  # a quoted identifier, decoded, case kept
STRING = "string"  # any string constant, including dollar-quoted bodies; value is ""
NUMBER = "number"
PARAM = "param"  # $1, $2, ...
PUNCT = "punct"  # one character: ( ) , ; . : [ ] and operator characters

_WHITESPACE = " \t\n\r\f\v"
_DOLLAR_DELIM = re.compile(r"\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z_0-9\x80-\U0010ffff]*)?\$")
_PARAM = re.compile(r"\$[0-9]+")
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX = "0123456789abcdefABCDEF"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class Token(NamedTuple):
    """One lexical token; ``pos`` is the 0-based character offset in the SQL text."""

    kind: str
    value: str
    pos: int


def _is_ident_start(ch: str) -> bool:
    return (ch.isascii() and (ch.isalpha() or ch == "_")) or ord(ch) >= 0x80


def _is_ident_cont(ch: str) -> bool:
    return _is_ident_start(ch) or (ch.isdigit() and ch.isascii()) or ch == "$"


def tokenize(sql: str, *, standard_conforming_strings: bool = True) -> list[Token]:
    """Split ``sql`` into tokens, dropping comments and whitespace.

    ``standard_conforming_strings`` must be the server's setting: when it is off, a backslash
    escapes a quote inside a plain '...' literal, which moves where that literal ends.
    Raises ``QueryError`` for an unterminated literal or comment, or a malformed U& identifier.
    """
    return _Scanner(sql, standard_conforming_strings).tokens()


def _decode_unicode(raw: str, escape: str, pos: int) -> str:
    """Decode the escapes of a U&"..." identifier body, as PostgreSQL does."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch != escape:
            out.append(ch)
            i += 1
            continue
        if raw[i + 1 : i + 2] == escape:
            out.append(escape)
            i += 2
            continue
        if raw[i + 1 : i + 2] == "+":
            digits, i = raw[i + 2 : i + 8], i + 8
        else:
            digits, i = raw[i + 1 : i + 5], i + 5
        if len(digits) not in (4, 6) or any(d not in _HEX for d in digits):
            raise QueryError(f"syntax error: invalid Unicode escape in identifier at position {pos + 1}")
        code = int(digits, 16)
        if code > 0x10FFFF or code == 0:
            raise QueryError(f"syntax error: invalid Unicode code point in identifier at position {pos + 1}")
        out.append(chr(code))
    return "".join(out)


def _unterminated(what: str, pos: int) -> QueryError:
    return QueryError(f"syntax error: unterminated {what} starting at position {pos + 1}")


class _Scanner:
    """Walks the text once; ``tokens()`` returns every token except comments and whitespace."""

    def __init__(self, sql: str, standard_conforming_strings: bool) -> None:
        self.sql = sql
        self.scs = standard_conforming_strings
        self.i = 0
        self.out: list[Token] = []

    def tokens(self) -> list[Token]:
        while self.i < len(self.sql):
            self._step()
        return self.out

    def _step(self) -> None:
        """Consume one token, comment or whitespace character at ``self.i``."""
        sql = self.sql
        ch, nxt = sql[self.i], sql[self.i + 1 : self.i + 2]
        start = self.i
        if ch in _WHITESPACE:
            self.i += 1
        elif ch == "-" and nxt == "-":
            ends = [p for p in (sql.find("\n", start), sql.find("\r", start)) if p >= 0]
            self.i = min(ends, default=len(sql))
        elif ch == "/" and nxt == "*":
            self._block_comment()
        elif ch in "eE" and nxt == "'":
            self.i += 1
            self._quoted_string(backslash=True)
        elif ch in "bBxX" and nxt == "'":
            self._bit_string()
        elif ch in "nN" and nxt == "'":
            self.i += 1
            self._quoted_string(backslash=not self.scs)
        elif ch in "uU" and sql[self.i + 1 : self.i + 3] in ("&'", '&"'):
            self._unicode_literal()
        elif ch == "'":
            self._quoted_string(backslash=not self.scs)
        elif ch == '"':
            self.out.append(Token(QUOTED, self._quoted_identifier(), start))
        elif ch == "$":
            self._dollar()
        elif _is_ident_start(ch):
            self.i += 1
            while self.i < len(sql) and _is_ident_cont(sql[self.i]):
                self.i += 1
            # PostgreSQL folds only ASCII letters in unquoted identifiers.
            self.out.append(Token(WORD, sql[start : self.i].translate(_ASCII_LOWER), start))
        elif (m := _NUMBER.match(sql, self.i)) is not None:
            self.i = m.end()
            self.out.append(Token(NUMBER, m.group(), start))
        else:
            self.i += 1
            self.out.append(Token(PUNCT, ch, start))

    def _block_comment(self) -> None:
        # Comments nest in PostgreSQL, unlike the SQL standard's C-style reading.
        start, depth, self.i = self.i, 1, self.i + 2
        while depth:
            pair = self.sql[self.i : self.i + 2]
            if not pair:
                raise _unterminated("/* comment", start)
            if pair == "/*":
                depth, self.i = depth + 1, self.i + 2
            elif pair == "*/":
                depth, self.i = depth - 1, self.i + 2
            else:
                self.i += 1

    def _quoted_string(self, *, backslash: bool) -> None:
        """Skip a '...' literal whose opening quote is at ``self.i``."""
        sql, start = self.sql, self.i
        self.i += 1
        while True:
            if self.i >= len(sql):
                raise _unterminated("quoted string", start)
            ch = sql[self.i]
            if backslash and ch == "\\":
                self.i += 2
            elif ch == "'":
                if sql[self.i + 1 : self.i + 2] == "'":
                    self.i += 2
                else:
                    self.i += 1
                    break
            else:
                self.i += 1
        self.out.append(Token(STRING, "", start))

    def _bit_string(self) -> None:
        # B'...' and X'...' have no escapes and no '' doubling: they end at the first quote.
        start = self.i
        end = self.sql.find("'", self.i + 2)
        if end < 0:
            raise _unterminated("bit string", start)
        self.i = end + 1
        self.out.append(Token(STRING, "", start))

    def _quoted_identifier(self) -> str:
        """Read a "..." identifier whose opening quote is at ``self.i``; return its text."""
        sql, start = self.sql, self.i
        parts: list[str] = []
        self.i += 1
        while True:
            end = sql.find('"', self.i)
            if end < 0:
                raise _unterminated("quoted identifier", start)
            parts.append(sql[self.i : end])
            if sql[end + 1 : end + 2] == '"':
                parts.append('"')
                self.i = end + 2
            else:
                self.i = end + 1
                return "".join(parts)

    def _unicode_literal(self) -> None:
        start = self.i
        self.i += 2  # past U&
        if self.sql[self.i] == "'":
            self._quoted_string(backslash=False)
            return
        raw = self._quoted_identifier()
        escape = self._uescape() or "\\"
        self.out.append(Token(QUOTED, _decode_unicode(raw, escape, start), start))

    def _uescape(self) -> str | None:
        """Consume an optional ``UESCAPE 'c'`` clause after a U& identifier; return ``c``."""
        probe = _Scanner(self.sql, self.scs)
        probe.i = self.i
        while len(probe.out) < 2 and probe.i < len(self.sql):
            probe._step()
        toks = probe.out
        if not toks or toks[0][:2] != (WORD, "uescape"):
            return None
        if len(toks) < 2 or toks[1].kind != STRING or self.sql[toks[1].pos] != "'":
            raise QueryError(f"syntax error: UESCAPE must be followed by a simple string at position {toks[0].pos + 1}")
        body = self.sql[toks[1].pos + 1 : probe.i - 1]
        if len(body) != 1 or body in _HEX + "+'\" " + _WHITESPACE:
            raise QueryError(f"syntax error: invalid Unicode escape character at position {toks[1].pos + 1}")
        self.i = probe.i
        return body

    def _dollar(self) -> None:
        sql, start = self.sql, self.i
        if (m := _PARAM.match(sql, start)) is not None:
            self.i = m.end()
            self.out.append(Token(PARAM, m.group(), start))
        elif (m := _DOLLAR_DELIM.match(sql, start)) is not None:
            end = sql.find(m.group(), m.end())
            if end < 0:
                raise _unterminated("dollar-quoted string", start)
            self.i = end + len(m.group())
            self.out.append(Token(STRING, "", start))
        else:
            self.i += 1
            self.out.append(Token(PUNCT, "$", start))
