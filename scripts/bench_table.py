#!/usr/bin/env python3
"""Prints loadgen --json results as a markdown table.

bench_table.py FILE...                  one row per result file
bench_table.py --saturation FILE...     picks the highest rate with p99 < 100 ms and nothing lost,
                                        prints it as one JSON result (with every step listed)
bench_table.py --ratios FILE...         for each X with an X-reference among the files: the broker's
                                        CPU per delivery over the reference server's, and, with an
                                        X-queued (--fast-path false), that one's too
"""
import json
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def clean(r):
    broken = r["connect_failures"] + r["closed_by_server"] + r["publish_failures"]
    return broken == 0 and r["lost"] == 0 and r["duplicated"] == 0 and r["out_of_order"] == 0


def saturation(paths):
    steps = sorted((load(p) for p in paths), key=lambda r: r["deliveries_per_sec"])
    passing = [r for r in steps if clean(r) and r["latency_ms"]["p99"] < 100]
    best = dict(passing[-1] if passing else steps[0])
    best["scenario"] = "saturation"
    best["steps"] = [
        {"deliveries_per_sec": round(r["deliveries_per_sec"]), "p99_ms": r["latency_ms"]["p99"], "lost": r["lost"]}
        for r in steps
    ]
    json.dump(best, sys.stdout, indent=2)
    print()


def row(path):
    r = load(path)
    lat = r["latency_ms"]
    server = r.get("server") or {}
    per_conn = server.get("rss_per_conn_bytes")
    return "| {} | {} ok / {} failed / {} closed, {:.0f}/s | {:.0f} | {:.2f} / {:.2f} / {:.2f} / {:.2f} | {} / {} / {} | {} | {} | {:.0f} % | {:.2f} µs | {:.2f} µs |".format(
        r["scenario"],
        r["connected"],
        r["connect_failures"],
        r["closed_by_server"],
        r["connects_per_sec"],
        r["deliveries_per_sec"],
        lat["p50"],
        lat["p99"],
        lat["p999"],
        lat["max"],
        r["lost"],
        r["duplicated"],
        r["out_of_order"],
        "{:.1f} MiB".format(server["rss_connected_kib"] / 1024) if server else "-",
        "{} B".format(per_conn) if per_conn is not None else "-",
        server.get("cpu_percent", 0),
        r.get("server_cpu_us_per_delivery", 0),
        r.get("loadgen_cpu_us_per_delivery", 0),
    )


def ratios(paths):
    # bench.sh names its files <results>/<YYYY-MM-DD>-<scenario>.json.
    by_name = {p.rsplit("/", 1)[-1][len("YYYY-MM-DD-"):-len(".json")]: load(p) for p in paths}
    print("| scenario | broker CPU/delivery | reference CPU/delivery | ratio | fast path off: CPU/delivery | its ratio |")
    print("|---|---|---|---|---|---|")
    cpu = lambda r: r["server_cpu_us_per_delivery"]
    for name, broker in by_name.items():
        reference = by_name.get(name + "-reference")
        if reference is None or name.endswith("-reference"):
            continue
        b, ref = cpu(broker), cpu(reference)
        ratio = lambda x: "{:.2f}×".format(x / ref) if ref else "-"
        queued = by_name.get(name + "-queued")
        off = ("{:.2f} µs".format(cpu(queued)), ratio(cpu(queued))) if queued else ("-", "-")
        print("| {} | {:.2f} µs | {:.2f} µs | {} | {} | {} |".format(name, b, ref, ratio(b), *off))


def main(args):
    if args and args[0] == "--saturation":
        saturation(args[1:])
        return
    if args and args[0] == "--ratios":
        ratios(args[1:])
        return
    print("| scenario | connections | deliveries/s | latency ms p50 / p99 / p99.9 / max | lost / dup / reordered | broker RSS | RSS per conn | broker CPU | broker CPU/delivery | loadgen CPU/delivery |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in args:
        print(row(path))


main(sys.argv[1:])
