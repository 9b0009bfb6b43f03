"""One page of a bucket listing: ListObjectsV2 requested and parsed here, not by minio-py.

Why not ``Minio.list_objects``: minio-py builds a dataclass per entry, finds every field with a
namespaced XPath and parses every timestamp with ``strptime``. For 1,000 keys that took about 75 ms
of CPU against 16 ms for the server's answer. Here the XML is parsed once by ElementTree and each
entry's children are matched by tag in one pass (about 5 ms), and the entries come out as the
result's own dicts.

Why the page logic is simple: a ListObjectsV2 answer is a contiguous range of the key space,
objects (``Contents``) and common prefixes (``CommonPrefixes``) counted together by ``max-keys``,
each run sorted. Merging the two runs gives the entries in key order, so a page is: ask for
``count + 1`` entries after ``start_after``; keep ``count``; it is truncated when one more came or
the server says so. A server may hand back the common prefix given as ``start_after`` (every key
under it sorts after it): that entry is dropped, and when it cost the last slot of the answer the
listing continues with the server's continuation token.
Python compares ``str`` by code point, which is the UTF-8 byte order S3 uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import unquote_plus
from xml.etree import ElementTree as ET

from minio import Minio

from mcp_tenants.errors import StorageError
from mcp_tenants.minio.results import ObjectInfo

SERVER_PAGE_MAX = 1000
#: An answer of 1,000 keys of 1,024 bytes, URL-encoded (3 bytes per byte at worst), fits easily.
RESPONSE_MAX_BYTES = 16 << 20


@dataclass
class ServerPage:
    """One ListObjectsV2 answer: objects and prefixes merged in key order."""

    entries: list[tuple[str, ObjectInfo | None]]  # (name, object) or (prefix, None)
    truncated: bool
    next_token: str | None


@dataclass
class Page:
    """What ``list_objects`` returns: one page of entries in key order."""

    objects: list[ObjectInfo] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_start_after: str | None = None


class Fetch(Protocol):
    """Sends one ListObjectsV2 request and returns the raw XML answer."""

    def __call__(self, query: dict[str, str]) -> bytes: ...


def _timestamp(text: str | None, memo: dict[str, str | None]) -> str | None:
    """An S3 timestamp as ISO 8601 UTC with ``Z``, as the other tools write it (memoised: keys
    written together share their timestamps)."""
    if text is None:
        return None
    found = memo.get(text)
    if found is None and text not in memo:
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            found = None
        else:
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            found = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        memo[text] = found
    return found


def parse_page(xml: bytes) -> ServerPage:
    """Parse a ListObjectsV2 answer (``ListBucketResult``) into entries in key order."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        raise StorageError("the object store answered a listing with malformed XML; check the endpoint") from None
    tag = root.tag
    ns = tag[: tag.index("}") + 1] if tag.startswith("{") else ""
    if tag != ns + "ListBucketResult":
        raise StorageError("the object store answered a listing with something that is not a listing")
    contents, common, key_tag, prefix_tag = ns + "Contents", ns + "CommonPrefixes", ns + "Key", ns + "Prefix"
    fields = {ns + "Size": "size", ns + "LastModified": "last_modified", ns + "ETag": "etag"}
    url_encoded = (root.findtext(ns + "EncodingType") or "").lower() == "url"
    memo: dict[str, str | None] = {}
    objects: list[tuple[str, ObjectInfo | None]] = []
    prefixes: list[tuple[str, ObjectInfo | None]] = []
    for child in root:
        if child.tag == contents:
            values: dict[str, str | None] = {}
            for part in child:
                name = fields.get(part.tag) or ("key" if part.tag == key_tag else None)
                if name is not None:
                    values[name] = part.text
            key = values.get("key") or ""
            if url_encoded:
                key = unquote_plus(key)
            size = values.get("size")
            etag = values.get("etag")
            try:
                info: ObjectInfo = {
                    "key": key,
                    "size": int(size) if size is not None else None,
                    "last_modified": _timestamp(values.get("last_modified"), memo),
                    "etag": etag.replace('"', "") if etag is not None else None,
                }
            except ValueError:
                raise StorageError(f"the object store listed a size that is not a number ({size!r:.40})") from None
            objects.append((key, info))
        elif child.tag == common:
            prefix = child.findtext(prefix_tag) or ""
            prefixes.append((unquote_plus(prefix) if url_encoded else prefix, None))
    # Both runs are sorted; timsort merges two runs in linear time.
    entries = sorted(objects + prefixes, key=_name) if prefixes else objects
    truncated = (root.findtext(ns + "IsTruncated") or "").strip().lower() == "true"
    return ServerPage(entries, truncated, root.findtext(ns + "NextContinuationToken") or None)


def _name(entry: tuple[str, ObjectInfo | None]) -> str:
    return entry[0]


def list_page(
    fetch: Fetch,
    *,
    prefix: str = "",
    delimited: bool = False,
    start_after: str | None = None,
    count: int,
) -> Page:
    """The first ``count`` entries after ``start_after`` in key order; usually one request."""
    taken: list[tuple[str, ObjectInfo | None]] = []
    token: str | None = None
    while True:
        query = {
            "list-type": "2",
            # Empty values and max-keys are sent on purpose: bucket policies are evaluated on them.
            "delimiter": "/" if delimited else "",
            "encoding-type": "url",
            "max-keys": str(min(SERVER_PAGE_MAX, count + 1 - len(taken))),
            "prefix": prefix,
        }
        if token is not None:
            query["continuation-token"] = token
        elif start_after:
            query["start-after"] = start_after
        answer = parse_page(fetch(query))
        taken += (entry for entry in answer.entries if entry[0] != start_after)
        if len(taken) > count or (answer.truncated and (len(taken) == count or answer.next_token is None)):
            # More entries follow; without a token (a server that sends none) the caller goes on
            # from the last key instead.
            return _page(taken[:count], truncated=bool(taken))
        if not answer.truncated:
            return _page(taken, truncated=False)
        token = answer.next_token


def _page(entries: list[tuple[str, ObjectInfo | None]], *, truncated: bool) -> Page:
    page = Page(truncated=truncated, next_start_after=entries[-1][0] if truncated and entries else None)
    for name, info in entries:
        if info is None:
            page.prefixes.append(name)
        else:
            page.objects.append(info)
    return page


def bucket_fetch(client: Minio, bucket: str) -> Fetch:
    """A ``Fetch`` that sends signed ListObjectsV2 requests to ``bucket`` through ``client``.

    It uses minio-py's request layer (``Minio._execute``: region, signing, S3 errors), which is
    stable across minio 7; only the listing's parsing is ours. The answer is read up to
    ``RESPONSE_MAX_BYTES``, so a misbehaving server cannot fill the memory.
    """

    def fetch(query: dict[str, str]) -> bytes:
        response = client._execute("GET", bucket, query_params=query, preload_content=False)  # type: ignore[arg-type]
        try:
            data: bytes = response.read(RESPONSE_MAX_BYTES + 1)
        finally:
            response.close()
            response.release_conn()
        if len(data) > RESPONSE_MAX_BYTES:
            raise StorageError(f"the object store answered a listing page with more than {RESPONSE_MAX_BYTES} bytes")
        return data

    return fetch
