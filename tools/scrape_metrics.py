#!/usr/bin/env python3
"""Scrapes Prometheus endpoints and parses them with prometheus-client's own
text parser (an independent reader of what ScenePS serves).

    tools/scrape-metrics.sh URL [URL ...]    # creates the venv on first use
    tools/scrape-metrics.sh                  # only creates the venv

Prints one JSON object: {URL: {"samples": [[name, {labels}, value], ...],
"types": {family: type}}}; exits 1 naming the URL when one cannot be fetched
or does not parse.
"""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}")
        ctype = r.headers.get("Content-Type", "")
        if not ctype.startswith("text/plain"):
            raise RuntimeError(f"Content-Type {ctype!r}, expected text/plain (the Prometheus text format)")
        text = r.read().decode("utf-8")
    samples, types = [], {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples.append([s.name, dict(s.labels), s.value])
    return {"samples": samples, "types": types}


def main(urls):
    if not urls:
        print(__doc__, file=sys.stderr)
        return 2
    out = {}
    for u in urls:
        try:
            out[u] = scrape(u)
        except Exception as e:  # the test wants the URL and the reason, not a traceback
            print(f"scrape_metrics: {u}: {e}", file=sys.stderr)
            return 1
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
