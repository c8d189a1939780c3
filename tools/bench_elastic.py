#!/usr/bin/env python3
"""Quickstart runs under the coordinator: speed, AUC and what failures cost.

    tools/bench_elastic.py [--bin DIR] [--base-bin DIR] [--cases speed,wps1,wps2,wps4,scaled,killed]
                           [--rows N] [--work DIR]

Cases (each a cluster/local.sh run on the default generated data, or on
--rows N rows):
  speed    this build, then --base-bin's build (the launcher of that checkout),
           one after the other in the same sitting: examples/s of each
  wps1/2/4 1, 2 and 4 workers per scene
  scaled   2 workers per scene; 20 s in, home scaled to 1 and shop to 3; 40 s in,
           video to 1
  killed   2 workers per scene with --restart-on-failure; a worker of home
           killed with SIGKILL every 20 s, three times; reports how long its
           chunk took to be leased again
Prints one table: examples/s, overall and per-scene AUC, epochs, chunks
re-leased, restarts, the coordinator's messages per second.
"""
import argparse, json, os, re, signal, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_job(launcher, bin_dir, run_dir, extra, during=None, env_extra=None):
    env = dict(os.environ, SCENEPS_BIN=bin_dir, **(env_extra or {}))
    os.makedirs(run_dir, exist_ok=True)
    log = open(os.path.join(run_dir, "launcher.out"), "w")
    t0 = time.time()
    p = subprocess.Popen([launcher, "--run-dir", run_dir] + extra, stdout=log, stderr=subprocess.STDOUT, env=env,
                         cwd=os.path.dirname(os.path.dirname(launcher)))
    notes = during(p, run_dir, t0) if during else {}
    rc = p.wait()
    log.close()
    if rc != 0:
        sys.exit(f"{run_dir}: launcher exited {rc}; see {run_dir}/launcher.out")
    s = json.load(open(os.path.join(run_dir, "summary.json")))
    s["_wall"] = time.time() - t0
    s["_notes"] = notes
    clog = os.path.join(run_dir, "logs", "coordinator.log")
    if os.path.exists(clog):
        m = re.findall(r"messages=(\d+) messages_per_sec=(\d+)", open(clog).read())
        if m:
            s["_messages"], s["_mps"] = int(m[-1][0]), int(m[-1][1])
    return s


def psctl(bin_dir, *args):
    return subprocess.run([os.path.join(bin_dir, "psctl")] + list(args), capture_output=True, text=True)


def wait_training(run_dir, t0, timeout=900):
    out = os.path.join(run_dir, "launcher.out")
    while time.time() - t0 < timeout:
        if os.path.exists(out) and "workers training" in open(out).read():
            return time.time()
        time.sleep(0.5)
    sys.exit(f"{run_dir}: training did not start")


def scaled(bin_dir):
    def during(p, run_dir, t0):
        start = wait_training(run_dir, t0)
        events = []
        for at, scene, n in [(20, "home", 1), (20, "shop", 3), (40, "video", 1)]:
            while time.time() - start < at and p.poll() is None:
                time.sleep(0.2)
            if p.poll() is not None:
                break
            r = psctl(bin_dir, "scale", "--run-dir", run_dir, "--scene", scene, "--workers", str(n))
            events.append(f"{scene}->{n}" + ("" if r.returncode == 0 else " (failed: " + r.stderr.strip() + ")"))
        return {"scaling": events}
    return during


def killed(bin_dir):
    def during(p, run_dir, t0):
        start = wait_training(run_dir, t0)
        relets = []
        for k in range(3):
            while time.time() - start < 20 * (k + 1) and p.poll() is None:
                time.sleep(0.2)
            if p.poll() is not None:
                break
            st = psctl(bin_dir, "status", "--run-dir", run_dir).stdout
            m = re.search(r"member \d+ (home-\d+) \(scene home\): lease (\d+)", st)
            if not m or m.group(2) == "0":
                continue
            name, lease = m.group(1), m.group(2)
            subprocess.run(["pkill", "-KILL", "-f", f"worker .*--name {name} "])
            t_kill = time.time()
            chunk_back = None
            # The killed lease is gone once another member holds a new lease of the chunk: poll the journal.
            jpath = os.path.join(run_dir, "coordinator", "state.json")
            while time.time() - t_kill < 30 and p.poll() is None:
                try:
                    j = json.load(open(jpath))
                except (OSError, ValueError):
                    time.sleep(0.05)
                    continue
                if all(str(l["id"]) != lease for l in j["leases"]):
                    chunk_back = time.time() - t_kill
                    break
                time.sleep(0.05)
            relets.append(round(chunk_back, 2) if chunk_back is not None else None)
        return {"seconds_until_the_killed_lease_was_taken_back": relets}
    return during


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=None, help="this build's executables (default: swift build -c release --show-bin-path)")
    ap.add_argument("--base-bin", default=None, help="executables of the build to compare speed with")
    ap.add_argument("--base-root", default=None, help="checkout whose cluster/local.sh runs --base-bin")
    ap.add_argument("--cases", default="speed,wps1,wps2,wps4,scaled,killed")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--work", default=os.path.join(ROOT, "runs", "bench-elastic"))
    a = ap.parse_args()
    bin_dir = a.bin or subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT,
                                      capture_output=True, text=True).stdout.strip()
    launcher = os.path.join(ROOT, "cluster", "local.sh")
    rows = ["--rows", str(a.rows)] if a.rows else []
    results = []
    for case in a.cases.split(","):
        d = os.path.join(a.work, case)
        if case == "speed":
            results.append(("this build", run_job(launcher, bin_dir, d + "-new", rows)))
            if a.base_bin and a.base_root:
                results.append(("base build", run_job(os.path.join(a.base_root, "cluster", "local.sh"), a.base_bin,
                                                      d + "-base", rows)))
        elif case.startswith("wps"):
            n = case[3:]
            results.append((f"{n} workers/scene", run_job(launcher, bin_dir, d, rows + ["--workers-per-scene", n])))
        elif case == "scaled":
            results.append(("2/scene, scaled", run_job(launcher, bin_dir, d, rows + ["--workers-per-scene", "2"],
                                                      during=scaled(bin_dir))))
        elif case == "killed":
            results.append(("2/scene, 3 kills", run_job(launcher, bin_dir, d, rows + ["--workers-per-scene", "2",
                                                                                     "--restart-on-failure"],
                                                       during=killed(bin_dir))))
        else:
            sys.exit(f"unknown case {case}")
        name, s = results[-1]
        print(f"{name}: done ({s['_wall']:.0f} s)", flush=True)
    scenes = sorted(results[0][1]["scenes"].keys())
    print("\n| run | examples/s | overall AUC | " + " | ".join(scenes) + " | epochs | re-leased | restarts | coordinator msg/s | notes |")
    print("|---|---:|---:|" + "---:|" * len(scenes) + "---:|---:|---|---:|---|")
    for name, s in results:
        released = sum(l.get("released", 0) for l in s.get("leases", []))
        print(f"| {name} | {s['examples_per_sec']:.0f} | {s['overall']['auc']:.4f} | "
              + " | ".join(f"{s['scenes'][k]['auc']:.4f}" for k in scenes)
              + f" | {s.get('best_epoch')}/{s.get('epochs_trained')} | {released if 'leases' in s else '-'} | "
              + f"{json.dumps(s.get('restarts') or {})} | {s.get('_mps', '-')} | {json.dumps(s['_notes']) if s['_notes'] else ''} |")


if __name__ == "__main__":
    main()
