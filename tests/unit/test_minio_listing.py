"""Listing pages: our ListObjectsV2 parser, and page cutting over a simulated S3 server."""

import random
from urllib.parse import quote_plus
from xml.sax.saxutils import escape

import pytest

from mcp_tenants.errors import StorageError
from mcp_tenants.minio.listing import SERVER_PAGE_MAX, list_page, parse_page

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def listing_xml(objects=(), prefixes=(), *, truncated=False, token=None, url=True, ns=NS, timestamp=None):
    """A ListBucketResult as S3 writes it: Contents first, then CommonPrefixes."""
    enc = quote_plus if url else (lambda s: s)
    parts = [f"<?xml version='1.0' encoding='UTF-8'?><ListBucketResult {ns}><Name>b</Name>"]
    if url:
        parts.append("<EncodingType>url</EncodingType>")
    parts.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
    if token:
        parts.append(f"<NextContinuationToken>{escape(token)}</NextContinuationToken>")
    for key in objects:
        stamp = timestamp or "2024-05-01T10:20:30.000Z"
        parts.append(
            f"<Contents><Key>{escape(enc(key))}</Key><LastModified>{stamp}</LastModified>"
            f"<ETag>&quot;abc123&quot;</ETag><Size>{len(key)}</Size><StorageClass>STANDARD</StorageClass></Contents>"
        )
    parts += [f"<CommonPrefixes><Prefix>{escape(enc(p))}</Prefix></CommonPrefixes>" for p in prefixes]
    parts.append("</ListBucketResult>")
    return "".join(parts).encode()


class FakeS3:
    """ListObjectsV2 over a set of keys, with delimiter roll-up, max-keys and continuation tokens.

    ``repeat_start_after``: hand back a common prefix equal to start-after, as AWS does.
    ``page_max`` lowers the server's own page limit.
    """

    def __init__(self, keys, *, repeat_start_after=True, page_max=SERVER_PAGE_MAX):
        self.keys = sorted(keys)
        self.repeat = repeat_start_after
        self.page_max = page_max
        self.requests = []

    def names(self, prefix, delimiter):
        """Keys under ``prefix``, those with ``delimiter`` past it rolled up to one common prefix."""
        out = []
        for key in self.keys:
            if key.startswith(prefix):
                rest = key[len(prefix) :]
                name = prefix + rest[: rest.index(delimiter) + 1] if delimiter and delimiter in rest else key
                if not out or out[-1] != name:
                    out.append(name)
        return out

    def __call__(self, query):
        self.requests.append(dict(query))
        max_keys = min(int(query["max-keys"]), self.page_max)
        delimiter = query["delimiter"]
        token = query.get("continuation-token")
        after = token if token is not None else query.get("start-after")
        names = [
            n
            for n in self.names(query["prefix"], delimiter)
            if after is None or n > after or (self.repeat and token is None and delimiter and n == after)
        ]
        page, rest = names[:max_keys], names[max_keys:]
        objects = [n for n in page if not (delimiter and n.endswith(delimiter))]
        prefixes = [n for n in page if delimiter and n.endswith(delimiter)]
        return listing_xml(objects, prefixes, truncated=bool(rest), token=page[-1] if rest else None)


def paginate(server, count, *, delimited=True, prefix=""):
    seen, start_after, calls = [], None, 0
    while True:
        calls += 1
        page = list_page(server, prefix=prefix, delimited=delimited, start_after=start_after, count=count)
        entries = sorted([o["key"] for o in page.objects] + page.prefixes)
        assert len(entries) == count or not page.truncated
        seen.extend(entries)
        if not page.truncated:
            return seen, calls
        assert page.next_start_after == entries[-1]
        start_after = page.next_start_after


# --- parsing ---------------------------------------------------------------------------------


def test_parse_page_reads_objects_and_merges_prefixes_in_key_order():
    page = parse_page(listing_xml(["a", "c", "e"], ["b/", "d/"], truncated=True, token="tok"))
    assert [name for name, _ in page.entries] == ["a", "b/", "c", "d/", "e"]
    assert page.entries[0][1] == {"key": "a", "size": 1, "last_modified": "2024-05-01T10:20:30Z", "etag": "abc123"}
    assert page.entries[1][1] is None
    assert (page.truncated, page.next_token) == (True, "tok")


@pytest.mark.parametrize("ns", [NS, ""], ids=["namespaced", "plain"])
def test_parse_page_decodes_url_encoded_keys_with_or_without_namespace(ns):
    keys = ["with space", "plus+sign", "percent%41", "ünïcode/ключ"]
    page = parse_page(listing_xml(keys, ns=ns))
    assert sorted(info["key"] for _, info in page.entries) == sorted(keys)
    plain = parse_page(listing_xml(["a+b"], url=False, ns=ns))
    assert plain.entries[0][0] == "a+b"


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2024-05-01T10:20:30.000Z", "2024-05-01T10:20:30Z"),
        ("2024-05-01T10:20:30Z", "2024-05-01T10:20:30Z"),
        ("2024-05-01T10:20:30.5Z", "2024-05-01T10:20:30.500000Z"),
        ("2024-05-01T12:20:30+02:00", "2024-05-01T10:20:30Z"),
        ("yesterday", None),
    ],
)
def test_parse_page_writes_timestamps_as_the_other_tools_do(stamp, expected):
    (entry,) = parse_page(listing_xml(["k"], timestamp=stamp)).entries
    assert entry[1]["last_modified"] == expected


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"<html>not xml", "malformed XML"),
        (b"<Error><Code>x</Code></Error>", "not a listing"),
        (listing_xml(["k"]).replace(b"<Size>1</Size>", b"<Size>huge</Size>"), "size that is not a number"),
    ],
)
def test_parse_page_refuses_what_is_not_a_listing(body, text):
    with pytest.raises(StorageError, match=text):
        parse_page(body)


# --- page cutting ----------------------------------------------------------------------------


def interleaved(n):
    """Keys k00000, k00001/x, k00002, ... : a delimited listing alternates objects and prefixes."""
    return [f"k{i:05d}" if i % 2 == 0 else f"k{i:05d}/x" for i in range(n)]


@pytest.mark.parametrize(
    ("count", "total", "server_page"),
    [(1, 300, 40), (2, 300, 40), (7, 500, 40), (7, 1200, 1000), (333, 2500, 1000), (1000, 2500, 1000)],
)
def test_pages_come_out_in_key_order_without_gaps(count, total, server_page):
    server = FakeS3(interleaved(total), page_max=server_page)
    seen, calls = paginate(server, count)
    assert seen == sorted(k if i % 2 == 0 else k[:-1] for i, k in enumerate(interleaved(total)))
    assert calls == -(-total // count)


@pytest.mark.parametrize("seed", range(3))
def test_random_mixes_page_without_gaps_recursive_and_delimited(seed):
    rng = random.Random(seed)
    keys = sorted(
        {f"{rng.choice('abxyz')}{rng.randrange(10**5):05d}{rng.choice(['', '/f', '/g/h'])}" for _ in range(1500)}
    )
    for count in (3, 50, 1000):
        assert paginate(FakeS3(keys), count, delimited=False)[0] == keys
        rolled = sorted({k.split("/")[0] + "/" if "/" in k else k for k in keys})
        assert paginate(FakeS3(keys), count)[0] == rolled


def test_one_request_per_page_asking_one_entry_more():
    server = FakeS3([f"k{i:05d}" for i in range(5000)])
    page = list_page(server, count=10)
    assert page.truncated and [o["key"] for o in page.objects] == [f"k{i:05d}" for i in range(10)]
    assert [r["max-keys"] for r in server.requests] == ["11"]
    assert server.requests[0]["delimiter"] == "" and server.requests[0]["encoding-type"] == "url"


def test_a_repeated_start_after_prefix_is_skipped_and_the_page_completed():
    server = FakeS3(["a/1", "a/2", "b/1", "c", "d"], repeat_start_after=True)
    page = list_page(server, delimited=True, start_after="a/", count=2)
    assert (page.prefixes, [o["key"] for o in page.objects], page.truncated) == (["b/"], ["c"], True)
    # The server gave back "a/" and two more: three entries were asked for, none was missing.
    assert len(server.requests) == 1


def test_a_full_page_that_loses_the_repeated_prefix_continues_with_the_token():
    keys = ["a/1"] + [f"k{i:04d}" for i in range(1500)]
    server = FakeS3(keys, repeat_start_after=True)
    page = list_page(server, delimited=True, start_after="a/", count=1000)
    assert len(page.objects) == 1000 and page.truncated and page.next_start_after == "k0999"
    assert "continuation-token" in server.requests[-1]


def test_the_last_page_is_not_truncated():
    page = list_page(FakeS3(["a", "b", "c"]), count=3)
    assert ([o["key"] for o in page.objects], page.truncated, page.next_start_after) == (["a", "b", "c"], False, None)
