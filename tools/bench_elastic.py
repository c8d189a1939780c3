#!/usr/bin/env python3
"""Quickstart runs under the coordinator: speed, AUC and what failures cost.

    tools/bench_elastic.py [--bin DIR] [--base-bin DIR] [--cases speed,wps1,wps2,wps4,scaled,killed]
                           [--rows N] [--work DIR] [--kill-after S]

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
  ckpt-off / ckpt-on   checkpoints off (checkpoint.every_seconds 0, at_epoch_end
           false) / at the defaults (every 60 s and at each epoch end): examples/s.
           A case may be repeated (ckpt-off,ckpt-on,ckpt-on,ckpt-off: alternating)
  nofail / partial / global   --restart-on-failure; partial and global kill
           server-1 with SIGKILL --kill-after seconds (default 50) after training
           started, under `recovery: partial` / `recovery: global`; reports the
           seconds from the kill to the first push its replacement applied (the
           server logs "first push applied" with unix_time), the checkpoint's age
           (seconds undone) and what the rewind took back
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


def kill_descendant(root_pid, executable, *words):
    """SIGKILLs the one process below `root_pid` (this job's launcher) that runs `executable` (e.g. "worker")
    with `words` one after the other among its arguments (e.g. "--name", "home-1"), read from /proc; another job's processes on the machine are never touched (a `pkill -f`
    pattern would match them too). Returns whether one was found."""
    parent = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parent[int(entry)] = int(fields[1])
    below, grew = {root_pid}, True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in below and pid not in below:
                below.add(pid)
                grew = True
    below.discard(root_pid)
    for pid in sorted(below):
        try:
            args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in args if a]
        n = len(words)
        if argv and os.path.basename(argv[0]) == executable and any(tuple(argv[i:i + n]) == words for i in range(len(argv) - n + 1)):
            try:
                os.kill(pid, signal.SIGKILL)
                return True
            except ProcessLookupError:
                continue
    return False


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
            if not kill_descendant(p.pid, "worker", "--name", name):
                continue
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


def config_with(work, name, text):
    """A config file: cluster/default.yaml with `text`'s keys over it."""
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"base: {os.path.join(ROOT, 'cluster', 'default.yaml')}\n" + text)
    return path


def server_killed(kill_after):
    def during(p, run_dir, t0):
        start = wait_training(run_dir, t0)
        while time.time() - start < kill_after and p.poll() is None:
            time.sleep(0.2)
        if p.poll() is not None:
            return {"kill": "the job ended first"}
        # This job's server only (its --checkpoint-dir is in the run directory).
        if not kill_descendant(p.pid, "ps-server", "--shard-index", "1"):
            sys.exit(f"{run_dir}: no server-1 process of this job to kill")
        t_kill = time.time()
        first = None
        log = os.path.join(run_dir, "logs", "server-1.log")
        while time.time() - t_kill < 300 and p.poll() is None and first is None:
            try:
                for m in re.finditer(r"unix_time=([0-9.]+) .*first push applied", open(log).read()):
                    if float(m.group(1)) > t_kill:
                        first = float(m.group(1)) - t_kill
                        break
            except OSError:
                pass
            time.sleep(0.1)
        return {"kill_to_first_push_s": round(first, 2) if first is not None else None}
    return during


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=None, help="this build's executables (default: swift build -c release --show-bin-path)")
    ap.add_argument("--base-bin", default=None, help="executables of the build to compare speed with")
    ap.add_argument("--base-root", default=None, help="checkout whose cluster/local.sh runs --base-bin")
    ap.add_argument("--cases", default="speed,wps1,wps2,wps4,scaled,killed")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--work", default=os.path.join(ROOT, "runs", "bench-elastic"))
    ap.add_argument("--kill-after", type=float, default=50, help="partial/global: seconds of training before the kill")
    a = ap.parse_args()
    a.work = os.path.abspath(a.work)   # the processes see absolute paths: kill patterns must match them
    bin_dir = a.bin or subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT,
                                      capture_output=True, text=True).stdout.strip()
    launcher = os.path.join(ROOT, "cluster", "local.sh")
    rows = ["--rows", str(a.rows)] if a.rows else []
    results = []
    seen = {}
    for case in a.cases.split(","):
        seen[case] = seen.get(case, 0) + 1
        d = os.path.join(a.work, case + (f"-{seen[case]}" if seen[case] > 1 else ""))
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
        elif case in ("ckpt-off", "ckpt-on"):
            cfg = config_with(a.work, case, "checkpoint: {every_seconds: 0, at_epoch_end: false}\n" if case == "ckpt-off" else "")
            results.append((f"{case} #{seen[case]}", run_job(launcher, bin_dir, d, rows + ["--config", cfg])))
        elif case in ("nofail", "partial", "global"):
            cfg = config_with(a.work, case, f"recovery: {'global' if case == 'global' else 'partial'}\n")
            results.append((case if case == "nofail" else f"server-1 killed, {case}",
                            run_job(launcher, bin_dir, d, rows + ["--config", cfg, "--restart-on-failure"],
                                    during=None if case == "nofail" else server_killed(a.kill_after))))
            rec = results[-1][1].get("recoveries") or []
            if rec:
                results[-1][1]["_notes"]["recoveries"] = [{k: v for k, v in r.items() if k not in ("time", "cause")} for r in rec]
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
