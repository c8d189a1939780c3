#!/usr/bin/env python3
"""Model selection on small drifting logs: configs x seeds on one log, every
epoch's validation and test AUC, and the chosen epoch's test AUC per scene.

    tools/selection_study.py --log data/ml-100k/log.csv --name ml100k \\
        --variant default: --variant patience2:training.patience=2 --seeds 1,2,3 [--bin DIR] [--parallel 2]
    tools/selection_study.py --report-only --work runs/selection-ml100k      # the tables again

A variant is NAME:KEY=VALUE[,KEY=VALUE...] over cluster/default.yaml (keys
`section.key`, e.g. training.patience=2, data.valid_fraction=0.1); the seed
is the config's `seed` (initial values; the data order follows it too). Each
run is `cluster/local.sh --log LOG --config VARIANT.yaml`; runs already done
in --work are not run again. Prints, per variant, the mean and spread of the
chosen epoch's overall test AUC, the per-scene means, and each run's
(validation, test) AUC per epoch with the schedule's actions, and writes them
to WORK/report.md. --reference FILE.json (tools/torch_epochs.py output) adds
the reference's best epoch and the differences.
"""
import argparse, json, os, re, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_text(base, overrides, seed):
    t = re.sub(r"(?m)^seed: \S+", f"seed: {seed}", base, count=1)
    for kv in overrides:
        key, value = kv.split("=", 1)
        section, name = key.split(".", 1)
        # The key inside its section: the first `  name:` line after `section:`.
        m = re.search(rf"(?m)^{re.escape(section)}:.*$", t)
        if not m:
            sys.exit(f"selection_study.py: no section {section!r} in the config")
        rest = t[m.end():]
        k = re.search(rf"(?m)^  {re.escape(name)}: *([^ #\n]+)", rest)
        if not k:
            sys.exit(f"selection_study.py: no key {key!r} in the config")
        s, e = m.end() + k.start(1), m.end() + k.end(1)
        t = t[:s] + value + t[e:]
    return t


def run_one(a, bin_dir, variant, overrides, seed, port):
    d = os.path.join(a.work, f"{variant}-s{seed}")
    done = os.path.join(d, "run", "summary.json")
    if os.path.exists(done):
        return
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, "config.yaml")
    open(cfg, "w").write(config_text(open(os.path.join(ROOT, "cluster", "default.yaml")).read(), overrides, seed))
    cmd = [os.path.join(ROOT, "cluster", "local.sh"), "--config", cfg, "--run-dir", os.path.join(d, "run"),
           "--log", a.log, "--base-port", str(port)]
    truth = os.path.join(os.path.dirname(a.log), "truth.csv")
    if os.path.exists(truth):
        cmd += ["--truth", truth]
    t0 = time.time()
    env = dict(os.environ, SCENEPS_BIN=bin_dir) if bin_dir else os.environ
    with open(os.path.join(d, "local.log"), "w") as log:
        rc = subprocess.run(["nice", "-n", "5"] + cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        print(f"{variant} seed {seed}: cluster/local.sh failed (status {rc}); see {d}/local.log", flush=True)
        return
    print(f"{variant} seed {seed}: done in {time.time() - t0:.0f} s", flush=True)


def load_run(d):
    s = json.load(open(os.path.join(d, "run", "summary.json")))
    epochs = []
    for r in s.get("schedule", []):
        e = json.load(open(os.path.join(d, "run", "epochs", f"epoch-{r['epoch']}.json")))
        epochs.append((r["epoch"], r.get("valid_auc"), e["overall"]["auc"], r["action"], r["lr_scale"]))
    return s, epochs


def report(a):
    ref = json.load(open(a.reference)) if a.reference else None
    lines = [f"Log: {a.log}; runs in {a.work}", ""]
    variants = sorted({n.rsplit("-s", 1)[0] for n in os.listdir(a.work) if os.path.isdir(os.path.join(a.work, n))})
    scenes = None
    rows = []
    detail = []
    for v in variants:
        runs = sorted(n for n in os.listdir(a.work) if n.rsplit("-s", 1)[0] == v
                      and os.path.exists(os.path.join(a.work, n, "run", "summary.json")))
        if not runs:
            continue
        res = [load_run(os.path.join(a.work, n)) for n in runs]
        scenes = scenes or sorted(res[0][0]["scenes"])
        overall = [s["overall"]["auc"] for s, _ in res]
        mean = sum(overall) / len(overall)
        per_scene = [sum(s["scenes"][sc]["auc"] for s, _ in res) / len(res) for sc in scenes]
        rows.append((v, len(res), mean, min(overall), max(overall), per_scene,
                     sum(s["best_epoch"] for s, _ in res) / len(res), sum(s["epochs_trained"] for s, _ in res) / len(res)))
        for n, (s, ep) in zip(runs, res):
            detail.append(f"- {n}: chosen epoch {s['best_epoch']} of {s['epochs_trained']}, test {s['overall']['auc']:.4f}; "
                          + ", ".join(f"e{e} x{sc:g} {va if va is None else round(va, 4)}/{te:.4f} {act}" for e, va, te, act, sc in ep))
    lines.append("| variant | runs | " + " | ".join(scenes or []) + " | overall mean | min-max | chosen epoch | epochs |")
    lines.append("|---|---:|" + "---:|" * (len(scenes or []) + 4))
    for v, n, mean, lo, hi, ps, be, et in rows:
        lines.append(f"| {v} | {n} | " + " | ".join(f"{x:.4f}" for x in ps) + f" | {mean:.4f} | {lo:.4f}-{hi:.4f} | {be:.1f} | {et:.1f} |")
    if ref and scenes:
        b = ref["best"]
        lines.append(f"| reference, best epoch ({ref['best_epoch']} of {len(ref['epochs'])}) | 1 | "
                     + " | ".join(f"{b['scenes'][sc]['auc']:.4f}" for sc in scenes) + f" | {b['overall']['auc']:.4f} | | | |")
        for v, n, mean, lo, hi, ps, be, et in rows:
            lines.append(f"| {v} - reference | | " + " | ".join(f"{x - b['scenes'][sc]['auc']:+.4f}" for x, sc in zip(ps, scenes))
                         + f" | {mean - b['overall']['auc']:+.4f} | | | |")
    lines += ["", "Per run, epoch: rate, validation/test AUC, action:", ""] + detail
    text = "\n".join(lines) + "\n"
    open(os.path.join(a.work, "report.md"), "w").write(text)
    print(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", required=True)
    ap.add_argument("--name", default="log")
    ap.add_argument("--variant", action="append", default=[], help="NAME:KEY=VALUE,... (repeatable)")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--bin", default="", help="prebuilt executables (SCENEPS_BIN); default: cluster/local.sh builds")
    ap.add_argument("--work", default="")
    ap.add_argument("--port", type=int, default=19500)
    ap.add_argument("--parallel", type=int, default=1, help="runs at once (each uses 2 servers + a worker per scene)")
    ap.add_argument("--reference", default="", help="tools/torch_epochs.py output for the same log")
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    a.work = a.work or os.path.join(ROOT, "runs", f"selection-{a.name}")
    a.log = os.path.abspath(a.log)
    os.makedirs(a.work, exist_ok=True)
    if not a.report_only:
        jobs = []
        for v in a.variant:
            name, _, spec = v.partition(":")
            overrides = [x for x in spec.split(",") if x]
            for seed in [int(x) for x in a.seeds.split(",")]:
                jobs.append((name, overrides, seed))
        with ThreadPoolExecutor(max_workers=a.parallel) as pool:
            for k, (name, overrides, seed) in enumerate(jobs):
                pool.submit(run_one, a, os.path.abspath(a.bin) if a.bin else "", name, overrides, seed, a.port + 20 * k)
    report(a)


if __name__ == "__main__":
    main()
