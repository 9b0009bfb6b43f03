"""Cutting one page, in key order, out of minio's lazy object listing.

An S3 server answers a listing in pages of at most 1,000 entries, each page in key order. But
minio-py yields every page as its objects first and its common prefixes after, so with a
delimiter (``recursive=False``) a prefix can come after larger keys: taking the first N entries
as they come would skip prefixes, and a caller continuing from the last key would never see them.

What we rely on: pages are contiguous ranges in key order, at most 1,000 entries each (minio asks
for max-keys=1000), and inside a page both runs (objects, then prefixes) are sorted. So:

1. Take ``count + 1`` entries as they come (one more than the page, to know it is truncated).
2. With a delimiter, keep reading until no pending entry of the current server page can sort
   before the cut: a prefix at or after the cut ends its (sorted) run; an object right after a
   prefix opens the next server page; and after 1,000 objects in a row the page must have ended.
   Objects read in this step sort after the cut and are dropped.

Without a delimiter there are no prefixes, entries arrive in key order, and step 1 is all: at most
two server requests. With one, step 2 can cost one more request in the worst case.
Python compares ``str`` by code point, which is the UTF-8 byte order S3 uses.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from minio.datatypes import Object

SERVER_PAGE_MAX = 1000


def _name(entry: Object) -> str:
    return entry.object_name or ""


def first_entries(
    entries: Iterable[Object], count: int, *, delimited: bool, start_after: str | None = None
) -> tuple[list[Object], bool]:
    """The first ``count`` entries after ``start_after`` in key order, and whether more follow."""
    # start_after is exclusive; a server that repeats the common prefix given as start_after
    # would otherwise hand the same page back forever.
    stream = iter(e for e in entries if _name(e) != start_after)
    seen: list[Object] = []
    for entry in stream:
        seen.append(entry)
        if len(seen) > count:
            break
    else:
        return sorted(seen, key=_name), False
    if delimited:
        _take_pending_prefixes(stream, seen, count)
    seen.sort(key=_name)
    return seen[:count], True


def _take_pending_prefixes(stream: Iterable[Object], seen: list[Object], count: int) -> None:
    """Step 2 above: add to ``seen`` the prefixes still due that sort before the cut."""
    previous = seen[-1]
    objects_in_a_row = 0
    ordered = sorted(_name(e) for e in seen)
    for entry in stream:
        if entry.is_dir:
            # ordered[count] is the first name past the page: the cut.
            if _name(entry) >= ordered[count]:
                break
            seen.append(entry)
            bisect.insort(ordered, _name(entry))
            objects_in_a_row = 0
        else:
            if previous.is_dir:
                break
            objects_in_a_row += 1
            if objects_in_a_row >= SERVER_PAGE_MAX:
                break
        previous = entry
