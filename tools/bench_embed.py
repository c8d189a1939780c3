#!/usr/bin/env python3
"""Titles per second of `psctl embed-titles` against sentence-transformers.

Both run all-MiniLM-L6-v2 from the same model directory on the same titles
with the same thread count, each in its own process (so each one's peak RSS
is its own, from os.wait4's ru_maxrss), one after the other in the same
sitting. Then the two outputs are compared (cosine per title).

    tools/fetch-minilm.sh
    python3 -m venv .venv-st && .venv-st/bin/pip install sentence-transformers
    swift build -c release --product psctl
    .venv-st/bin/python tools/bench_embed.py --threads 2 [--items items.csv] [--limit 10000]

Without --items it generates the default catalogue (`psctl gen-data`,
items.csv with titles) into a temporary directory. Titles/s counts the
embedding itself (tokenisation, encoder, pooling) as each tool reports it;
the whole-process wall time (start, model load, write) is shown beside it.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_model_dir():
    cache = os.environ.get("SCENEPS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sceneps")
    return os.path.join(cache, "all-MiniLM-L6-v2")


def run_measured(cmd, env=None):
    """Runs cmd; returns (wall seconds, peak RSS MiB, stdout, stderr, 1-minute load average at the start)."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env)
        # Reaped by wait4 (not Popen.wait), so ru_maxrss is this child's own peak.
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        wall = time.perf_counter() - t0
        out, err = fo.read(), fe.read()
    if p.returncode != 0:
        sys.stderr.write(err.decode(errors="replace"))
        raise SystemExit("%s exited %d" % (cmd[0], p.returncode))
    return wall, usage.ru_maxrss / 1024.0, out.decode(), err.decode(), load


def st_worker(args):
    """Runs inside its own process: sentence-transformers on the titles."""
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer
    with open(args.titles_json) as f:
        titles = json.load(f)
    t0 = time.perf_counter()
    model = SentenceTransformer(args.model, device="cpu")
    t1 = time.perf_counter()
    emb = model.encode(titles, batch_size=args.st_batch[0], convert_to_numpy=True, normalize_embeddings=False,
                       show_progress_bar=False)
    t2 = time.perf_counter()
    np.save(args.st_out, emb.astype(np.float32))
    print(json.dumps({"load_s": t1 - t0, "encode_s": t2 - t1, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "max_seq_length": model.max_seq_length}))


def read_titles(path, limit):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if limit:
        rows = rows[:limit]
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", help="catalogue CSV (item_id,category_id,title); default: psctl gen-data's")
    ap.add_argument("--limit", type=int, default=0, help="first N titles only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=default_model_dir())
    ap.add_argument("--psctl", default=os.path.join(REPO, ".build", "release", "psctl"))
    ap.add_argument("--parallelism", default="batches", help="psctl --parallelism (batches or blas)")
    ap.add_argument("--st-batch", type=int, nargs="+", default=[32, 128], help="sentence-transformers batch sizes to run")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each; the best is reported")
    ap.add_argument("--st-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--titles-json", help=argparse.SUPPRESS)
    ap.add_argument("--st-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.st_worker:
        return st_worker(args)

    import numpy as np
    work = tempfile.mkdtemp(prefix="bench-embed-")
    items = args.items
    if not items:
        gen = os.path.join(work, "gen")
        subprocess.run([args.psctl, "gen-data", "--out", gen], check=True, stdout=subprocess.DEVNULL)
        items = os.path.join(gen, "items.csv")
    rows = read_titles(items, args.limit)
    titles = [r["title"] for r in rows]
    if args.limit or args.items is None:
        # psctl reads a file: give it exactly the titles sentence-transformers gets.
        sub = os.path.join(work, "items.csv")
        with open(sub, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["item_id", "category_id", "title"])
            for r in rows:
                w.writerow([r["item_id"], r["category_id"], r["title"]])
        items = sub
    titles_json = os.path.join(work, "titles.json")
    with open(titles_json, "w") as f:
        json.dump(titles, f)
    n = len(titles)
    print("%d titles from %s, %d thread(s), model %s" % (n, items, args.threads, args.model))

    results = []
    # psctl
    best = None
    for _ in range(args.repeat):
        out_dir = os.path.join(work, "psctl-out")
        cmd = [args.psctl, "embed-titles", "--items", items, "--out", out_dir, "--model", args.model,
               "--threads", str(args.threads), "--parallelism", args.parallelism]
        wall, rss, out, err, load = run_measured(cmd)
        # "... in 1.23 s: 456.7 titles/s ..."
        embed_s = float(out.split(" in ")[1].split(" s:")[0])
        r = {"tool": "psctl embed-titles (%s)" % args.parallelism, "cmd": " ".join(cmd), "embed_s": embed_s, "wall_s": wall, "rss_mib": rss, "load": load}
        if best is None or r["embed_s"] < best["embed_s"]:
            best = r
    results.append(best)
    ours = np.load(os.path.join(work, "psctl-out", "embeddings.npy"))

    # sentence-transformers
    theirs = None
    for bs in args.st_batch:
        best = None
        for _ in range(args.repeat):
            st_out = os.path.join(work, "st-%d.npy" % bs)
            cmd = [sys.executable, os.path.abspath(__file__), "--st-worker", "--threads", str(args.threads), "--model", args.model,
                   "--titles-json", titles_json, "--st-out", st_out, "--st-batch", str(bs)]
            wall, rss, out, err, load = run_measured(cmd)
            info = json.loads(out.strip().splitlines()[-1])
            r = {"tool": "sentence-transformers %s, torch %s, batch %d" % (_st_version(), info["torch"], bs),
                 "cmd": "torch.set_num_threads(%d); SentenceTransformer(MODEL, device='cpu').encode(titles, batch_size=%d)" % (args.threads, bs),
                 "embed_s": info["encode_s"], "wall_s": wall, "rss_mib": rss, "load": load}
            if best is None or r["embed_s"] < best["embed_s"]:
                best = r
        results.append(best)
        theirs = np.load(os.path.join(work, "st-%d.npy" % bs))

    cos = (ours.astype(np.float64) * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    fastest_st = min(r["embed_s"] for r in results[1:])
    print()
    print("| tool | threads | titles/s (embedding) | vs fastest sentence-transformers | process wall s | peak RSS MiB | load avg at start |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print("| %s | %d | %.0f | %.2fx | %.1f | %.0f | %.1f |" % (r["tool"], args.threads, n / r["embed_s"], fastest_st / r["embed_s"],
                                                             r["wall_s"], r["rss_mib"], r["load"]))
    print()
    print("agreement over %d titles: min cosine %.6f, mean %.7f" % (n, cos.min(), cos.mean()))
    print()
    for r in results:
        print("%s: %s" % (r["tool"], r["cmd"]))


def _st_version():
    import importlib.metadata
    return importlib.metadata.version("sentence-transformers")


if __name__ == "__main__":
    main()
