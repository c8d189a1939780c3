#!/usr/bin/env python3
"""Model quality studies on one data set, same budget for every run.

    tools/quality.py [--data DIR] [--ablations] [--workers 1,2,4] [--config FILE] [--out FILE.md]

--ablations  the quickstart cluster (cluster/local.sh, early stopping) once
             per model.ablation (full, same-scene, long-only, short-only,
             no-scene-gates) and once with model.kind baseline.
--workers    the full model with each number of workers per scene
             (asynchronous training must reach the same AUC).

Prints per-scene test AUC tables (markdown) next to the oracle AUC, and
writes them to --out (default runs/quality-<time>.md). Every run's directory
is kept under runs/quality-<time>/ for its summary.json and logs.
"""
import argparse, json, os, re, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build():
    subprocess.run(["swift", "build", "-c", "release"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()


def with_overrides(base_text, model=None, kind=None):
    t = base_text
    if model:
        t, n = re.subn(r"(?m)^  ablation: \S+", f"  ablation: {model}", t)
        assert n == 1, "config has no model.ablation line"
    if kind:
        t, n = re.subn(r"(?m)^  kind: \S+", f"  kind: {kind}", t)
        assert n == 1, "config has no model.kind line"
    return t


def run(name, config_text, args, a, bin_dir, port):
    d = os.path.join(a.work, name)
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, "config.yaml")
    open(cfg, "w").write(config_text)
    cmd = [os.path.join(ROOT, "cluster", "local.sh"), "--config", cfg, "--run-dir", os.path.join(d, "run"),
           "--log", os.path.join(a.data, "log.csv"), "--base-port", str(port)] + args
    if os.path.exists(os.path.join(a.data, "truth.csv")):
        cmd += ["--truth", os.path.join(a.data, "truth.csv")]
    t0 = time.time()
    with open(os.path.join(d, "local.log"), "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, SCENEPS_BIN=bin_dir)).returncode
    if rc != 0:
        sys.exit(f"{name}: cluster/local.sh failed (status {rc}); see {d}/local.log")
    s = json.load(open(os.path.join(d, "run", "summary.json")))
    print(f"{name:16s} overall AUC {s['overall']['auc']:.4f}  best epoch {s.get('best_epoch')}  "
          f"{s['examples_per_sec']:.0f} ex/s  {time.time() - t0:.0f} s", flush=True)
    return s


def table(title, results, note=""):
    first = next(iter(results.values()))
    scenes = sorted(first["scenes"])
    lines = [f"### {title}", ""]
    if note:
        lines += [note, ""]
    lines.append("| run | " + " | ".join(scenes) + " | overall | best epoch |")
    lines.append("|---|" + "---:|" * (len(scenes) + 2))
    for name, s in results.items():
        cells = [f"{s['scenes'][sc]['auc']:.4f}" if s['scenes'][sc]['auc'] is not None else "n/a" for sc in scenes]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {s['overall']['auc']:.4f} | {s.get('best_epoch', '')} |")
    if first["overall"].get("oracle_auc"):
        lines.append("| *oracle* | " + " | ".join(f"*{first['scenes'][sc]['oracle_auc']:.4f}*" for sc in scenes)
                     + f" | *{first['overall']['oracle_auc']:.4f}* | |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "default"),
                    help="directory with log.csv (and truth.csv); generated with the defaults when missing")
    ap.add_argument("--config", default=os.path.join(ROOT, "cluster", "default.yaml"))
    ap.add_argument("--ablations", action="store_true")
    ap.add_argument("--workers", default="", help="comma-separated workers per scene, e.g. 1,2,4")
    ap.add_argument("--port", type=int, default=18800)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    if not a.ablations and not a.workers:
        ap.error("nothing to do: give --ablations and/or --workers")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    a.work = os.path.join(ROOT, "runs", f"quality-{stamp}")
    out = a.out or os.path.join(ROOT, "runs", f"quality-{stamp}.md")
    bin_dir = build()
    if not os.path.exists(os.path.join(a.data, "log.csv")):
        subprocess.run([os.path.join(bin_dir, "psctl"), "gen-data", "--out", a.data], check=True)
    base = open(a.config).read()
    port = a.port
    md = [f"Data: {a.data}; config: {a.config}; machine: {os.uname().nodename}, {os.cpu_count()} cores; {stamp}\n"]

    if a.ablations:
        res = {}
        for abl in ("full", "same-scene", "long-only", "short-only", "no-scene-gates"):
            res[abl] = run(abl, with_overrides(base, model=abl), [], a, bin_dir, port); port += 10
        res["baseline model"] = run("baseline", with_overrides(base, kind="baseline"), [], a, bin_dir, port); port += 10
        md.append(table("Ablations (test AUC, quickstart cluster, early stopping)", res))
    if a.workers:
        res = {}
        for w in [int(x) for x in a.workers.split(",")]:
            res[f"{w} per scene"] = run(f"workers-{w}", base, ["--workers-per-scene", str(w)], a, bin_dir, port); port += 10
        aucs = [s["overall"]["auc"] for s in res.values()]
        md.append(table("Workers per scene (test AUC, asynchronous)", res,
                        f"Spread of overall AUC: {max(aucs) - min(aucs):.4f}"))
    text = "\n".join(md)
    print("\n" + text)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    open(out, "w").write(text)
    print(f"wrote {out}; runs in {a.work}")


if __name__ == "__main__":
    main()
