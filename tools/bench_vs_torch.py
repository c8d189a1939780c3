#!/usr/bin/env python3
"""ScenePS against the PyTorch reference (tools/reference), same data, same sitting: issue 23's table.

    tools/bench_vs_torch.py [--data DIR] [--rows N] [--torch-venv DIR] [--torch-steps 400] [--skip-torch]
                            [--quality] [--port 18700] [--bin DIR]

Speed (examples/s of training, preparation and evaluation excluded):
  - the reference trainer (SparseAdam + Adam, batch 256, 2 threads), --torch-steps steps;
  - ScenePS, the quickstart's layout (cluster/local.sh: 2 servers, the default pools (by rows), the default
    config, one epoch);
  - ScenePS with 1 server and the default pools (one epoch).
Each row gives the ratio to the reference, the workers' busy fraction (summary.json) and the machine's
CPU busy fraction over the run (/proc/stat: every process on the machine, ours or not).

With --quality, time to accuracy: the reference trains one epoch (its best; BENCHMARKS.md) and its test
AUC is the bar; ScenePS runs the quickstart with its full schedule, and the time to the bar is the wall
time from the job's start to the end of the evaluation of its first epoch whose test AUC reaches it
(RUN_DIR/epochs/epoch-N.json). The reference's time is its training time of that epoch (its test
scoring is not timed by it; ScenePS's evaluation is counted). Both exclude data preparation. Per-scene test AUC of both is printed beside the oracle.

TensorFlow is not among the peers: neither the project nor its reference (tools/reference) has a TensorFlow
implementation of the model (issue 23's TensorFlow rows were measured with code outside both), and a
second reference implementation is a project of its own. The reference needs torch: it is installed
into --torch-venv (default .venv-torch, gitignored) with pip on first use.
Results are also written to runs/bench-DATE.json.
"""
import argparse, json, os, re, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF = os.path.join(ROOT, "tools", "reference")


def sh(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def cpu_ticks():
    f = open("/proc/stat").readline().split()[1:]
    v = [int(x) for x in f]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v), idle


def run_measured(cmd, env=None, log=None):
    """Runs cmd; returns (output, seconds, machine CPU busy fraction over the run)."""
    print("+", " ".join(cmd), flush=True)
    out = open(log, "w+") if log else tempfile.TemporaryFile("w+")
    t0, (tot0, idle0) = time.time(), cpu_ticks()
    p = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, text=True)
    tot1, idle1 = cpu_ticks()
    out.seek(0)
    text = out.read()
    if p.returncode != 0:
        sys.stderr.write(text[-4000:])
        raise SystemExit(f"{cmd[0]} failed with status {p.returncode}")
    busy = 1 - (idle1 - idle0) / max(1, tot1 - tot0)
    return text, time.time() - t0, busy


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


def with_epochs(src, dst, epochs):
    text = open(src).read()
    with open(dst, "w") as f:
        f.write(re.sub(r"(?m)^  epochs: \d+", f"  epochs: {epochs}", text) if epochs else text)
    return dst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "default"), help="generated data set (psctl gen-data)")
    ap.add_argument("--rows", type=int, default=0, help="rows to generate when --data has no log (default: the generator's)")
    ap.add_argument("--torch-venv", default=os.path.join(ROOT, ".venv-torch"))
    ap.add_argument("--torch-steps", type=int, default=400)
    ap.add_argument("--quality", action="store_true", help="also time to the reference's best test AUC")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--port", type=int, default=18700)
    ap.add_argument("--bin", help="directory of the executables (default: SCENEPS_BIN, else swift build -c release)")
    a = ap.parse_args()

    bin_dir = a.bin or os.environ.get("SCENEPS_BIN")
    if not bin_dir:
        sh(["swift", "build", "-c", "release"], cwd=ROOT, stdout=subprocess.DEVNULL)
        bin_dir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout.strip()
    psctl = os.path.join(bin_dir, "psctl")
    if not os.path.exists(os.path.join(a.data, "log.csv")):
        sh([psctl, "gen-data", "--out", a.data] + (["--rows", str(a.rows)] if a.rows else []))
    work = tempfile.mkdtemp(prefix="sceneps-bench-")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    results = {"machine": os.uname().nodename, "cpu": cpu, "cores": os.cpu_count(), "data": a.data,
               "load_at_start": os.getloadavg()[0], "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "")}
    env = dict(os.environ, SCENEPS_BIN=bin_dir)
    py = None if a.skip_torch else torch_python(a.torch_venv)
    rows = []   # (name, examples/s, workers' busy, machine busy)

    if py:
        text, _, busy = run_measured([py, os.path.join(REF, "train_torch.py"), a.data, "--max-steps", str(a.torch_steps)])
        t = last_json(text)
        results["torch"] = {"examples_per_sec": t["examples_per_sec"], "machine_busy": busy}
        rows.append(("PyTorch reference (2 threads, batch 256)", t["examples_per_sec"], None, busy))

    def scene_ps(name, servers, epochs, port):
        cfg = with_epochs(os.path.join(ROOT, "cluster", "default.yaml"), os.path.join(work, f"{name}.yaml"), epochs)
        run = os.path.join(work, name)
        _, secs, busy = run_measured([os.path.join(ROOT, "cluster", "local.sh"), "--config", cfg,
                                      "--log", os.path.join(a.data, "log.csv"), "--truth", os.path.join(a.data, "truth.csv"),
                                      "--run-dir", run, "--servers", str(servers), "--base-port", str(port)],
                                     env=env, log=os.path.join(work, f"{name}.log"))
        s = json.load(open(os.path.join(run, "summary.json")))
        s["_machine_busy"], s["_seconds"] = busy, secs
        epochs_dir = os.path.join(run, "epochs")
        s["_epochs"] = [json.load(open(os.path.join(epochs_dir, f))) for f in
                        sorted(os.listdir(epochs_dir), key=lambda f: int(re.sub(r"\D", "", f) or 0))]
        return s

    q = scene_ps("quick", 2, 1, a.port)
    rows.append(("ScenePS, 2 servers, pools by rows (quickstart layout)", q["examples_per_sec"], q.get("busy_fraction"),
                 q["_machine_busy"]))
    one = scene_ps("one", 1, 1, a.port + 10)
    rows.append(("ScenePS, 1 server, pools by rows", one["examples_per_sec"], one.get("busy_fraction"), one["_machine_busy"]))
    results["sceneps_quickstart"] = {k: q.get(k) for k in ("examples_per_sec", "busy_fraction", "waits", "worker_seconds", "pipeline")}
    results["sceneps_1server"] = {k: one.get(k) for k in ("examples_per_sec", "busy_fraction", "waits", "worker_seconds", "pipeline")}

    base = results.get("torch", {}).get("examples_per_sec") or q["examples_per_sec"]
    print(f"\n== speed: CPU {cpu}, {os.cpu_count()} cores, load average {results['load_at_start']:.1f} at the start"
          + (f", OPENBLAS_CORETYPE={results['openblas_coretype']}" if results["openblas_coretype"] else ""))
    print(f"| trainer | examples/s | vs {'the reference' if 'torch' in results else 'the quickstart'} | workers busy | machine CPU busy |")
    print("|---|---:|---:|---:|---:|")
    for name, eps, wbusy, mbusy in rows:
        print(f"| {name} | {eps:,.0f} | {eps / base:.2f} | {'-' if wbusy is None else f'{wbusy:.2f}'} | {mbusy:.2f} |")

    if a.quality:
        full = scene_ps("quality", 2, 0, a.port + 20)
        results["sceneps_quality"] = {"overall": full["overall"], "scenes": full["scenes"], "best_epoch": full.get("best_epoch"),
                                      "epochs": [{"epoch": e["epoch"], "auc": e["overall"]["auc"], "wall_seconds": e["wall_seconds"]}
                                                 for e in full["_epochs"]]}
        print("\n== time to accuracy (test AUC, data preparation excluded)")
        scenes = sorted(full["scenes"])
        if py:
            text, _, _ = run_measured([py, os.path.join(REF, "train_torch.py"), a.data, "--epochs", "1"])
            t = last_json(text)
            bar = t["overall"]["auc"]
            ref_secs = t["train_seconds"]   # its test scoring is not timed by it (a few seconds): in ScenePS's favour
            reach = next((e for e in full["_epochs"] if e["overall"]["auc"] >= bar), None)
            results["time_to_reference_auc"] = {"reference_auc": bar, "reference_seconds": ref_secs,
                                                "sceneps_epoch": reach and reach["epoch"],
                                                "sceneps_seconds": reach and reach["wall_seconds"]}
            print(f"reference, 1 epoch (its best): test AUC {bar:.4f} after {ref_secs:.1f} s of training")
            if reach:
                print(f"ScenePS quickstart: test AUC {reach['overall']['auc']:.4f} at the end of epoch {reach['epoch']}, "
                      f"{reach['wall_seconds']:.1f} s after the job started: {ref_secs / reach['wall_seconds']:.2f}x shorter")
            else:
                print(f"ScenePS quickstart: no epoch reached {bar:.4f} (best {full['overall']['auc']:.4f})")
            print(f"\n{'':14s}" + "".join(f"{s:>10s}" for s in scenes + ["overall"]))
            print(f"{'torch_1ep':14s}" + "".join(f"{(t['scenes'][s]['auc'] or float('nan')):10.4f}" for s in scenes)
                  + f"{t['overall']['auc']:10.4f}")
        else:
            print(f"\n{'':14s}" + "".join(f"{s:>10s}" for s in scenes + ["overall"]))
        print(f"{'sceneps':14s}" + "".join(f"{(full['scenes'][s]['auc'] or float('nan')):10.4f}" for s in scenes)
              + f"{full['overall']['auc']:10.4f}")
        print(f"{'oracle':14s}" + "".join(f"{(full['scenes'][s].get('oracle_auc') or float('nan')):10.4f}" for s in scenes)
              + f"{(full['overall'].get('oracle_auc') or float('nan')):10.4f}")

    out = os.path.join(ROOT, "runs", f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    json.dump(results, open(out, "w"), indent=1)
    print(f"\nwrote {out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
