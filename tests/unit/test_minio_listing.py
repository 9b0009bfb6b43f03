"""Page cutting over a simulated minio listing: objects then prefixes within each server page."""

import bisect
import random

import pytest
from minio.datatypes import Object

from mcp_tenants.minio.listing import SERVER_PAGE_MAX, first_entries


def fake_listing(names, start_after=None, page_sizes=None):
    """Yield entries like minio does: server pages in key order, each as objects then prefixes.

    ``names`` must be sorted; ``page_sizes`` gives the server's page lengths (1,000 by default).
    """
    start = 0 if start_after is None else bisect.bisect_right(names, start_after)
    sizes = iter(page_sizes or [])
    while start < len(names):
        size = next(sizes, SERVER_PAGE_MAX)
        page = names[start : start + size]
        start += size
        yield from (Object("b", n) for n in page if not n.endswith("/"))
        yield from (Object("b", n) for n in page if n.endswith("/"))


def paginate(names, count, *, page_sizes=None, delimited=True):
    names = sorted(names)
    seen, start_after, calls = [], None, 0
    while True:
        calls += 1
        listing = fake_listing(names, start_after, page_sizes)
        page, truncated = first_entries(listing, count, delimited=delimited, start_after=start_after)
        assert len(page) == count or not truncated
        seen.extend(e.object_name for e in page)
        if not truncated:
            return seen, calls
        start_after = page[-1].object_name


def interleaved(n):
    return [f"k{i:05d}" if i % 2 == 0 else f"k{i:05d}/" for i in range(n)]


@pytest.mark.parametrize(
    ("count", "total", "server_page"),
    [
        (1, 300, 40),
        (2, 300, 40),
        (7, 500, 40),
        (7, 1200, 1000),
        (333, 2500, 1000),
        (999, 2500, 1000),
        (1000, 2500, 1000),
        (1001, 2500, 1000),
    ],
)
def test_pages_come_out_in_key_order_without_gaps(count, total, server_page):
    names = interleaved(total)
    seen, calls = paginate(names, count, page_sizes=[server_page] * total)
    assert seen == sorted(names)
    assert calls == -(-len(names) // count)


def test_prefixes_all_after_objects_in_key_space():
    names = [f"a{i:04d}" for i in range(1500)] + [f"z{i:04d}/" for i in range(800)]
    assert paginate(names, 250)[0] == sorted(names)


def test_prefixes_all_before_objects_in_key_space():
    # Every server page yields its (larger) objects before its (smaller) prefixes.
    names = [f"a{i:04d}/" for i in range(1500)] + [f"z{i:04d}" for i in range(800)]
    assert paginate(names, 250)[0] == sorted(names)


@pytest.mark.parametrize("seed", range(3))
def test_random_mixes_and_uneven_server_pages(seed):
    rng = random.Random(seed)
    names = sorted({f"{rng.choice('abcxyz')}{rng.randrange(10**6):06d}{rng.choice(['', '/'])}" for _ in range(2500)})
    for count, largest_page in ((3, 60), (50, 400), (1000, SERVER_PAGE_MAX)):
        sizes = [rng.randrange(1, largest_page + 1) for _ in range(3000)]
        assert paginate(names, count, page_sizes=sizes)[0] == names


def test_without_delimiter_stops_one_entry_past_the_page():
    consumed = []

    def listing():
        for i in range(5000):
            consumed.append(i)
            yield Object("b", f"k{i:05d}")

    page, truncated = first_entries(listing(), 10, delimited=False)
    assert truncated and [e.object_name for e in page] == [f"k{i:05d}" for i in range(10)]
    assert len(consumed) == 11


def test_with_delimiter_reads_at_most_one_more_server_page():
    consumed = []
    names = [f"k{i:05d}" for i in range(10_000)]

    def listing():
        for entry in fake_listing(names):
            consumed.append(entry)
            yield entry

    page, truncated = first_entries(listing(), 10, delimited=True)
    assert truncated and len(page) == 10
    assert len(consumed) <= 11 + SERVER_PAGE_MAX


def test_a_repeated_start_after_is_skipped():
    listing = [Object("b", "a/"), Object("b", "b/"), Object("b", "c")]
    page, truncated = first_entries(iter(listing), 5, delimited=True, start_after="a/")
    assert [e.object_name for e in page] == ["b/", "c"] and not truncated
