#!/usr/bin/env python3
"""Top-10 hit rate of `psctl recommend` against item popularity, per scene (docs/RECOMMEND.md).

    tools/recommend_hitrate.py RUN_DIR PSCTL SCENE [MAX_USERS]

For the first MAX_USERS users of the log (default 150) who click in SCENE in the test period and have a
history (a click before the test cut): the share whose top 10 (`psctl recommend -k 10`, their history left
out) holds one of their test clicks in SCENE, against the scene's most clicked training items (their
history left out too). Prints one line with both rates, the counts, and recommend's median wall time.
"""
import collections
import csv
import json
import subprocess
import sys
import time

if len(sys.argv) not in (4, 5):
    sys.exit(__doc__)
run, psctl, scene = sys.argv[1:4]
max_users = int(sys.argv[4]) if len(sys.argv) == 5 else 150
m = json.load(open(run + "/data/manifest.json"))
if scene not in [s["name"] for s in m["scenes"]]:
    sys.exit(f"unknown scene {scene!r}: the data set has {', '.join(s['name'] for s in m['scenes'])}")
cut = m["split"]["testCut"]
pop = collections.Counter()
seen = collections.defaultdict(set)
test = collections.defaultdict(set)
with open(m["source"]["log"], newline="") as f:
    for r in csv.DictReader(f):
        clicked, here = r["label"] == "1", r["scene"] == scene
        if int(r["timestamp"]) < cut:
            if clicked:
                seen[r["user_id"]].add(r["item_id"])
                if here:
                    pop[r["item_id"]] += 1
        elif clicked and here:
            test[r["user_id"]].add(r["item_id"])
users = [u for u in test if seen[u]][:max_users]
if not users:
    sys.exit(f"no user clicks in {scene} in the test period with a history before it")
ranked = [i for i, _ in pop.most_common()]
hits_model = hits_pop = 0
secs = []
for u in users:
    t0 = time.time()
    out = subprocess.run([psctl, "recommend", "--run-dir", run, "--user", u, "--scene", scene, "-k", "10", "--json"],
                         capture_output=True, text=True)
    secs.append(time.time() - t0)
    if out.returncode != 0:
        sys.exit(f"psctl recommend --user {u} failed ({out.returncode}): {out.stderr.strip()}")
    top = {it["id"] for it in json.loads(out.stdout)["items"]}
    popular = {i for i in [i for i in ranked if i not in seen[u]][:10]}
    hits_model += bool(test[u] & top)
    hits_pop += bool(test[u] & popular)
secs.sort()
n = len(users)
print(f"scene {scene}: {n} users; hit@10 model {hits_model / n:.3f} ({hits_model}), "
      f"popularity {hits_pop / n:.3f} ({hits_pop}); recommend p50 {secs[n // 2] * 1000:.0f} ms")
