#!/usr/bin/env python3
"""ScenePS against the PyTorch reference (../shared/reference), same data, same sitting.

    tools/bench_vs_torch.py [--data DIR] [--rows N] [--torch-venv DIR] [--torch-steps 400] [--quality] [--skip-torch]

Speed: the reference trainer (SparseAdam + Adam, batch 256, 2 threads) for
--torch-steps steps; ScenePS with 1 server + 1 worker that trains every scene
(worker --scene '*', training.prefetch on: the worker has a core of its own),
and the quickstart cluster (cluster/local.sh with the default config, one epoch).
Prints examples/s, the ratio to the reference, and the peak resident memory of
every process. With --quality it also trains both to completion (early
stopping for ScenePS; 1 and 2 epochs for the reference) and prints per-scene
test AUC next to the oracle.

The reference needs torch: it is installed into --torch-venv (default
.venv-torch, gitignored) with pip on first use.
"""
import argparse, json, os, re, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF = os.path.normpath(os.path.join(ROOT, "..", "shared", "reference"))


def sh(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def run_measured(cmd, env=None, cwd=None, log=None):
    """Runs cmd, returns (stdout text, peak RSS MiB of that process) using wait4."""
    print("+", " ".join(cmd), flush=True)
    out = open(log, "w+") if log else tempfile.TemporaryFile("w+")
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, text=True)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    text = out.read()
    if p.returncode != 0:
        sys.stderr.write(text[-4000:])
        raise SystemExit(f"{cmd[0]} failed with status {p.returncode}")
    return text, usage.ru_maxrss / 1024.0


def last_json(text):
    start = text.rfind("\n{\n")
    return json.loads(text[start + 1:] if start >= 0 else text[text.index("{"):])


def torch_python(venv):
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        sh([sys.executable, "-m", "venv", venv])
    if subprocess.run([py, "-c", "import torch, numpy"], capture_output=True).returncode != 0:
        sh([py, "-m", "pip", "install", "-q", "torch", "numpy"])
    return py


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "bench"))
    ap.add_argument("--rows", type=int, default=0, help="rows to generate (default: the generator's default)")
    ap.add_argument("--torch-venv", default=os.path.join(ROOT, ".venv-torch"))
    ap.add_argument("--torch-steps", type=int, default=400)
    ap.add_argument("--quality", action="store_true")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--port", type=int, default=18700)
    a = ap.parse_args()

    sh(["swift", "build", "-c", "release"], cwd=ROOT, stdout=subprocess.DEVNULL)
    bin_dir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
    psctl = os.path.join(bin_dir, "psctl")
    if not os.path.exists(os.path.join(a.data, "log.csv")):
        sh([psctl, "gen-data", "--out", a.data] + (["--rows", str(a.rows)] if a.rows else []))
    work = tempfile.mkdtemp(prefix="sceneps-bench-")
    results = {"machine": os.uname().nodename, "cores": os.cpu_count(), "data": a.data}

    # --- reference speed ---------------------------------------------------
    if not a.skip_torch:
        py = torch_python(a.torch_venv)
        text, rss = run_measured([py, os.path.join(REF, "train_torch.py"), a.data, "--max-steps", str(a.torch_steps)])
        t = last_json(text)
        results["torch"] = {"examples_per_sec": t["examples_per_sec"], "peak_rss_mib": rss}

    # --- ScenePS: 1 server + 1 worker over every scene -------------------------
    cfg = os.path.join(work, "bench.yaml")
    with open(cfg, "w") as f:
        f.write("servers: 1\ntraining: {epochs: 1, prefetch: true}\n")   # one worker, a core of its own
    prepared = os.path.join(work, "prepared")
    sh([psctl, "prepare", "--log", os.path.join(a.data, "log.csv"), "--truth", os.path.join(a.data, "truth.csv"),
        "--out", prepared, "--config", cfg], stdout=subprocess.DEVNULL)
    ep = f"tcp://127.0.0.1:{a.port}"
    server = subprocess.Popen([os.path.join(bin_dir, "ps-server"), "--shard-index", "0", "--shard-count", "1", "--bind", ep],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = server.stdout.readline()
    if not line.startswith("ready"):
        while line and not line.startswith("ready"):
            line = server.stdout.readline()
    run_dir = os.path.join(work, "one")
    text, worker_rss = run_measured([os.path.join(bin_dir, "worker"), "--config", cfg, "--data", prepared, "--servers", ep,
                                     "--scene", "*", "--run-dir", run_dir])
    report = json.load(open(os.path.join(run_dir, "workers", "epoch-1", "all-0.json")))
    subprocess.run([psctl, "shutdown", "--servers", ep], capture_output=True)
    _, status, usage = os.wait4(server.pid, 0)
    results["sceneps_1x1"] = {"examples_per_sec": report["examples"] / report["train_seconds"],
                              "worker_peak_rss_mib": worker_rss, "server_peak_rss_mib": usage.ru_maxrss / 1024.0}

    # --- ScenePS: the quickstart cluster, one epoch --------------------------
    cfg2 = os.path.join(work, "quick.yaml")
    with open(os.path.join(ROOT, "cluster", "default.yaml")) as f:
        text = f.read()
    with open(cfg2, "w") as f:
        f.write(re.sub(r"(?m)^  epochs: \d+", "  epochs: 1", text))
    run2 = os.path.join(work, "quick")
    env = dict(os.environ, SCENEPS_BIN=bin_dir)
    run_measured([os.path.join(ROOT, "cluster", "local.sh"), "--config", cfg2, "--log", os.path.join(a.data, "log.csv"),
                  "--truth", os.path.join(a.data, "truth.csv"), "--run-dir", run2, "--base-port", str(a.port + 10)], env=env)
    s = json.load(open(os.path.join(run2, "summary.json")))
    workers = [json.load(open(os.path.join(dp, f))) for dp, _, fs in os.walk(os.path.join(run2, "workers")) for f in fs]
    server_rss = []
    for name in sorted(os.listdir(os.path.join(run2, "logs"))):
        if name.startswith("server-"):
            m = re.search(r"stopped shard=\d+ peak_rss_mib=([0-9.]+)", open(os.path.join(run2, "logs", name)).read())
            if m:
                server_rss.append(float(m.group(1)))
    results["sceneps_quickstart"] = {"examples_per_sec": s["examples_per_sec"], "servers": s["servers"], "workers": s["workers"],
                                     "worker_peak_rss_mib": max(w["peak_rss_mib"] for w in workers)}
    if server_rss:
        results["sceneps_quickstart"]["server_peak_rss_mib"] = max(server_rss)

    print("\n== speed (examples/s, training only)")
    base = results.get("torch", {}).get("examples_per_sec")
    for k in ("torch", "sceneps_1x1", "sceneps_quickstart"):
        if k in results:
            r = results[k]
            ratio = f"  ratio {r['examples_per_sec'] / base:.2f}x" if base else ""
            print(f"{k:20s} {r['examples_per_sec']:10.0f}{ratio}   " +
                  "  ".join(f"{m}={v:.0f}" for m, v in r.items() if m.endswith("rss_mib")))

    if a.quality:
        q = {}
        if not a.skip_torch:
            for ep_n in (1, 2):
                text, _ = run_measured([py, os.path.join(REF, "train_torch.py"), a.data, "--epochs", str(ep_n)])
                q[f"torch_{ep_n}ep"] = last_json(text)
        run3 = os.path.join(work, "quality")
        run_measured([os.path.join(ROOT, "cluster", "local.sh"), "--log", os.path.join(a.data, "log.csv"),
                      "--truth", os.path.join(a.data, "truth.csv"), "--run-dir", run3, "--base-port", str(a.port + 20)], env=env)
        q["sceneps"] = json.load(open(os.path.join(run3, "summary.json")))
        results["quality"] = q
        print("\n== test AUC per scene")
        scenes = sorted(q["sceneps"]["scenes"])
        print(f"{'':14s}" + "".join(f"{s:>10s}" for s in scenes + ["overall"]))
        for k, v in q.items():
            print(f"{k:14s}" + "".join(f"{(v['scenes'][s]['auc'] or float('nan')):10.4f}" for s in scenes) + f"{v['overall']['auc']:10.4f}")
        o = q["sceneps"]
        print(f"{'oracle':14s}" + "".join(f"{(o['scenes'][s].get('oracle_auc') or float('nan')):10.4f}" for s in scenes)
              + f"{(o['overall'].get('oracle_auc') or float('nan')):10.4f}")

    out = os.path.join(ROOT, "runs", f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    json.dump(results, open(out, "w"), indent=1)
    print(f"\nwrote {out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
