"""Validation of object-store tool arguments, done before any network call.

Every check raises ``InvalidInput`` with a message that names the argument and the rule it broke.
Values are echoed only in a shortened form (``_shown``) so a huge or binary argument never ends up
in an error message or a log line.

Object keys: S3 allows any UTF-8 except that many servers refuse NUL, and XML 1.0 listings cannot
carry most C0 control characters. We reject every C0 control character (U+0000..U+001F) and DEL
(U+007F) in keys and prefixes: in practice they are typos or injection attempts, and refusing them
keeps keys printable in results and logs. The cost: an object that already has such a key cannot be
addressed through these tools.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re

from mcp_tenants.errors import InvalidInput

MAX_KEY_BYTES = 1024
MIN_EXPIRY_SECONDS = 1
MAX_EXPIRY_SECONDS = 7 * 24 * 3600  # the SigV4 ceiling for presigned URLs
ENCODINGS = ("text", "base64")
PRESIGN_METHODS = ("GET", "PUT")

_BUCKET_CHARS = re.compile(r"^[a-z0-9.-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Control characters that mark data as binary; tab, LF, CR, FF and ESC (ANSI colours in logs)
# are common in text.
_BINARY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")
# Reserved by AWS for access points, directory buckets and internal use; other S3 servers
# accept some of them, but a name that works everywhere is the useful promise.
_RESERVED_PREFIXES = ("xn--", "sthree-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", "--x-s3", ".mrap")
_SHOWN_MAX = 64
_BASE64_WHITESPACE = (" ", "\t", "\n", "\r", "\v", "\f")
_BASE64_WHITESPACE_BYTES = "".join(_BASE64_WHITESPACE).encode()


def _shown(value: object) -> str:
    """A short, printable form of ``value`` for error messages."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > _SHOWN_MAX:
        text = text[:_SHOWN_MAX] + f"... ({len(text)} characters)"
    return repr(text) if isinstance(value, str) else text


def _require_str(value: object, argument: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{argument} must be a string, got {type(value).__name__}")
    return value


def _require_int(value: object, argument: str) -> int:
    # bool is an int subclass; True as an offset is always a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{argument} must be an integer, got {type(value).__name__}")
    return value


def validate_bucket_name(name: object) -> str:
    """Check ``name`` against the S3 bucket naming rules and return it."""
    name = _require_str(name, "bucket")
    shown = _shown(name)
    if not 3 <= len(name) <= 63:
        raise InvalidInput(f"bucket {shown} is invalid: must be 3 to 63 characters long (got {len(name)})")
    if not _BUCKET_CHARS.match(name):
        raise InvalidInput(f"bucket {shown} is invalid: only lowercase letters, digits, '.' and '-' are allowed")
    if not (name[0].isalnum() and name[-1].isalnum()):
        raise InvalidInput(f"bucket {shown} is invalid: must start and end with a letter or digit")
    for pair in ("..", ".-", "-."):
        if pair in name:
            raise InvalidInput(f"bucket {shown} is invalid: must not contain {pair!r}")
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        pass
    else:
        raise InvalidInput(f"bucket {shown} is invalid: must not look like an IP address")
    for prefix in _RESERVED_PREFIXES:
        if name.startswith(prefix):
            raise InvalidInput(f"bucket {shown} is invalid: the prefix {prefix!r} is reserved")
    for suffix in _RESERVED_SUFFIXES:
        if name.endswith(suffix):
            raise InvalidInput(f"bucket {shown} is invalid: the suffix {suffix!r} is reserved")
    return name


def _validate_key_text(value: str, argument: str, *, allow_empty: bool) -> str:
    shown = _shown(value)
    if not value and not allow_empty:
        raise InvalidInput(f"{argument} must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput(f"{argument} {shown} is not valid Unicode (lone surrogate)") from None
    if size > MAX_KEY_BYTES:
        raise InvalidInput(f"{argument} {shown} is too long: at most {MAX_KEY_BYTES} bytes of UTF-8 (got {size})")
    match = _CONTROL.search(value)
    if match:
        raise InvalidInput(
            f"{argument} {shown} contains the control character U+{ord(match.group()):04X} "
            f"at position {match.start()}; control characters are not allowed"
        )
    return value


def validate_object_key(key: object, argument: str = "key") -> str:
    """Check an object key: 1 to 1024 bytes of UTF-8, no control characters."""
    return _validate_key_text(_require_str(key, argument), argument, allow_empty=False)


def validate_prefix(prefix: object) -> str:
    """Check a listing prefix: like a key, but may be empty."""
    return _validate_key_text(_require_str(prefix, "prefix"), "prefix", allow_empty=True)


def validate_start_after(start_after: object) -> str | None:
    """Check a listing continuation key; None and "" both mean "from the start"."""
    if start_after is None:
        return None
    value = _validate_key_text(_require_str(start_after, "start_after"), "start_after", allow_empty=True)
    return value or None


def validate_max_keys(max_keys: object, cap: int) -> int:
    """Return the page size: ``max_keys`` (at least 1) clamped to ``cap``."""
    value = _require_int(max_keys, "max_keys")
    if value < 1:
        raise InvalidInput(f"max_keys must be at least 1, got {value}")
    return min(value, cap)


def validate_range(offset: object, length: object) -> tuple[int, int | None]:
    """Check a byte range: ``offset`` >= 0, ``length`` None (to the end) or >= 1."""
    start = _require_int(offset, "offset")
    if start < 0:
        raise InvalidInput(f"offset must be 0 or more, got {start}")
    if length is None:
        return start, None
    count = _require_int(length, "length")
    if count < 1:
        raise InvalidInput(f"length must be at least 1 (or null to read to the end), got {count}")
    return start, count


def validate_expiry(seconds: object) -> int:
    """Check a presigned URL lifetime: 1 second to 7 days."""
    value = _require_int(seconds, "expires_seconds")
    if not MIN_EXPIRY_SECONDS <= value <= MAX_EXPIRY_SECONDS:
        raise InvalidInput(
            f"expires_seconds must be between {MIN_EXPIRY_SECONDS} and {MAX_EXPIRY_SECONDS} (7 days), got {value}"
        )
    return value


def validate_method(method: object) -> str:
    """Check a presigned URL method (GET or PUT, any case) and return it upper-case."""
    value = _require_str(method, "method").upper()
    if value not in PRESIGN_METHODS:
        raise InvalidInput(f"method must be 'GET' or 'PUT', got {_shown(method)}")
    return value


def validate_content_type(content_type: object) -> str | None:
    """Check an optional Content-Type: printable, at most 255 characters (it becomes a header)."""
    if content_type is None:
        return None
    value = _require_str(content_type, "content_type").strip()
    if not value or len(value) > 255 or _CONTROL.search(value) or not value.isascii():
        raise InvalidInput(
            f"content_type {_shown(content_type)} is invalid: must be 1 to 255 printable ASCII "
            "characters, such as 'application/json'"
        )
    return value


def validate_encoding(encoding: object) -> str:
    """Check a ``content`` encoding: "text" or "base64"."""
    if encoding not in ENCODINGS:
        raise InvalidInput(f"encoding must be 'text' or 'base64', got {_shown(encoding)}")
    return str(encoding)


def require_content(content: object) -> str:
    """Check that a ``content`` argument is a string."""
    return _require_str(content, "content")


def content_size_floor(content: str, encoding: str) -> int:
    """A lower bound of the bytes ``content`` decodes to, found without copying it.

    Text takes at least one UTF-8 byte per character (exactly one when it is ASCII). Base64 without
    its ASCII whitespace decodes to three bytes per four characters, less at most two of padding.
    """
    if encoding == "text":
        return len(content)
    significant = len(content) - sum(map(content.count, _BASE64_WHITESPACE))
    return max(0, significant // 4 * 3 - 2)


def decode_content(content: object, encoding: object) -> bytes:
    """Turn a tool's ``content`` argument into bytes.

    "text" is encoded as UTF-8. "base64" uses the standard alphabet with padding; ASCII whitespace
    is ignored (line-wrapped MIME output is common), anything else outside the alphabet is an error
    rather than silently dropped.
    """
    encoding = validate_encoding(encoding)
    text = _require_str(content, "content")
    if encoding == "text":
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput("content is not valid Unicode (lone surrogate)") from None
    try:
        # Two C-speed copies at most (ASCII bytes, then without whitespace) before decoding.
        compact = text.encode("ascii").translate(None, _BASE64_WHITESPACE_BYTES)
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        # binascii's message ("Incorrect padding", ...) says what is wrong, never the data.
        reason = "a character outside ASCII" if isinstance(exc, UnicodeEncodeError) else str(exc)
        raise InvalidInput(
            f"content is not valid base64 ({reason}); use the standard alphabet "
            "A-Z a-z 0-9 + / with '=' padding, or encoding='text'"
        ) from None


def encode_content(data: bytes, *, cut: bool) -> tuple[str, str, int]:
    """Choose how to return ``data``: ``(content, encoding, bytes_used)``.

    Text when the bytes are UTF-8 without control characters other than tab, newline, carriage
    return, form feed and ESC; base64 otherwise. When ``cut`` is true (the range stopped before
    the end of the object) a multi-byte character split at the end is trimmed away, so the text is
    clean and the next read starts on a character boundary; ``bytes_used`` says how much was kept.
    """
    used = len(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A character cut by the range end shows up as "unexpected end of data" within the last
        # three bytes; trim it unless that leaves nothing (then base64 keeps the bytes intact).
        split_at_end = exc.reason == "unexpected end of data" and exc.start >= len(data) - 3
        if cut and split_at_end and exc.start > 0:
            used = exc.start
            try:
                text = data[:used].decode("utf-8")
            except UnicodeDecodeError:
                return base64.b64encode(data).decode("ascii"), "base64", len(data)
        else:
            return base64.b64encode(data).decode("ascii"), "base64", len(data)
    if _BINARY_CONTROL.search(text):
        return base64.b64encode(data).decode("ascii"), "base64", len(data)
    return text, "text", used
