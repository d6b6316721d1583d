#!/usr/bin/env python3
"""Prints one massif snapshot as heap bytes per connection, by allocation site.

heap_sites.py MASSIF_OUT CONNS AT_MS    the detailed snapshot nearest AT_MS (ms since start)

A site is the first frame below the allocator that names a crate (wsbroker, tokio, hyper,
tungstenite, hashbrown, bytes, ...), so a task's cell, a hash table's buckets or a buffer each
show as one line.
"""
import re
import sys

SITE = re.compile(r"(wsbroker::|tokio::|tokio_tungstenite::|tungstenite::|hyper::|hashbrown::|flume::|mio::|bytes::)")


def snapshots(text):
    for block in text.split("snapshot=")[1:]:
        if "heap_tree=detailed" in block or "heap_tree=peak" in block:
            time = int(re.search(r"time=(\d+)", block).group(1))
            heap = int(re.search(r"mem_heap_B=(\d+)", block).group(1))
            yield time, heap, block


def sites(block):
    """Sums each tree node that is the first crate-naming frame on its path."""
    totals, path = {}, []
    for line in block.splitlines():
        m = re.match(r"(\s*)n\d+: (\d+) (.*)", line)
        if not m:
            continue
        depth, size, frame = len(m.group(1)), int(m.group(2)), m.group(3)
        while path and path[-1][0] >= depth:
            path.pop()
        named_above = any(SITE.search(f) for _, f in path[1:])
        path.append((depth, frame))
        if depth > 0 and not named_above and SITE.search(frame):
            name = re.sub(r" \(.*", "", frame.split(": ", 1)[-1])[:110]
            totals[name] = totals.get(name, 0) + size
    return totals


def main(path, conns, at_ms):
    with open(path) as f:
        time, heap, block = min(snapshots(f.read()), key=lambda s: abs(s[0] - at_ms))
    print(f"snapshot at {time} ms: heap {heap / 1e6:.2f} MB, {heap / conns:.0f} B per connection")
    print("| B per connection | allocation site |")
    print("|---|---|")
    for name, size in sorted(sites(block).items(), key=lambda kv: -kv[1])[:20]:
        print(f"| {size / conns:.0f} | `{name}` |")


main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
