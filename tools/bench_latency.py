#!/usr/bin/env python3
"""Training throughput with a network between the processes (issue 22 §4).

    tools/bench_latency.py [--delays-us 0,250,500,1000] [--repeats 2] [--data DIR] [--config FILE]
                           [--epochs 1] [--port 18900] [--bin DIR] [--keep DIR]
                           [--variants config,prefetch,overlap,before]

Runs the quickstart's layout (2 servers, the coordinator, one worker per
scene, the default config at --epochs epochs) on loopback, once with every
process talking directly ("direct") and then, for every delay D, with
tools/delay_relay.c between every worker and every server and between the
workers and the coordinator: every byte arrives D microseconds late each way
(a round trip gains 2D), as between hosts (this kernel has no netem; the relay
is toxiproxy's latency toxic). Runs alternate (direct, D1, D2, ..., direct,
D1, ...) so that the machine's load hits every setting alike.

Prints, per setting: training examples/s (summary.json's examples_per_sec,
median of the repeats), the ratio to the direct run, test AUC, the workers'
busy fraction and their waits per reason (summary.json's busy_fraction and
waits). Exit status 0; a failed run stops the benchmark with its logs kept.

The relay is compiled with `cc` into the work directory. Executables: --bin,
else SCENEPS_BIN, else `swift build -c release --show-bin-path` (built first).
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def bin_dir(a):
    if a.bin:
        return a.bin
    if os.environ.get("SCENEPS_BIN"):
        return os.environ["SCENEPS_BIN"]
    sh(["swift", "build", "-c", "release"], cwd=ROOT, stdout=subprocess.DEVNULL)
    return subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()


def wait_line(p, prefix, what, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        line = p.stdout.readline()
        if not line:
            raise SystemExit(f"{what} exited before printing '{prefix}'")
        if line.startswith(prefix):
            return line
    raise SystemExit(f"{what} did not print '{prefix}' within {timeout} s")


class Job:
    """One training job: servers, relays (delay_us None = none), coordinator, workers."""

    def __init__(self, a, bins, relay, prepared, cfg, scenes, delay_us, run_dir, env=None):
        self.env = env
        self.procs = []
        os.makedirs(os.path.join(run_dir, "logs"), exist_ok=True)
        self.run_dir = run_dir
        p = a.port
        servers = [f"tcp://127.0.0.1:{p + i}" for i in range(2)]
        coord = f"tcp://127.0.0.1:{p + 2}"
        self.servers = servers
        ckpt = os.path.join(run_dir, "checkpoints")   # as cluster/local.sh: the coordinator checkpoints the job
        for i, ep in enumerate(servers):
            s = self.start(f"server-{i}", [os.path.join(bins, "ps-server"), "--shard-index", str(i), "--shard-count", "2",
                                           "--bind", ep, "--checkpoint-dir", ckpt], pipe=True)
            wait_line(s, "ready", f"server {i}")
        seen_servers, seen_coord = servers, coord
        if delay_us is not None:
            routes = [f"{p + 10 + i}=127.0.0.1:{p + i}" for i in range(3)]
            r = self.start("relay", [relay, "--delay-us", str(delay_us)] + routes, pipe=True)
            wait_line(r, "ready", "delay_relay")
            seen_servers = [f"tcp://127.0.0.1:{p + 10 + i}" for i in range(2)]
            seen_coord = f"tcp://127.0.0.1:{p + 12}"
        # The coordinator reaches the servers (evaluation) through the relay too: it is on a host of its own.
        self.coordinator = self.start("coordinator", [os.path.join(bins, "coordinator"), "--config", cfg, "--data", prepared,
                                                      "--servers", ",".join(seen_servers), "--run-dir", run_dir, "--bind", coord,
                                                      "--checkpoint-dir", ckpt])
        self.workers = [self.start(f"worker-{s}", [os.path.join(bins, "worker"), "--config", cfg, "--data", prepared,
                                                  "--coordinator", seen_coord, "--scene", s, "--name", f"{s}-0",
                                                  "--host-workers", str(len(scenes))])
                        for s in scenes]

    def start(self, name, cmd, pipe=False):
        log = open(os.path.join(self.run_dir, "logs", name + ".log"), "w")
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE if pipe else log, stderr=log, text=True, env=self.env)
        p.name = name
        self.procs.append(p)
        return p

    def finish(self, timeout):
        end = time.time() + timeout
        for p in self.workers + [self.coordinator]:
            left = max(1, end - time.time())
            if p is self.coordinator:   # it writes summary.json before telling the workers the job is over
                left = min(left, 60)
            try:
                rc = p.wait(timeout=left)
            except subprocess.TimeoutExpired:
                self.stop()
                raise SystemExit(f"{p.name} did not finish within {timeout} s (logs: {self.run_dir}/logs)")
            if rc != 0:
                self.stop()
                raise SystemExit(f"{p.name} exited with status {rc} (logs: {self.run_dir}/logs)")
        self.stop()

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--delays-us", default="0,250,500,1000", help="delays each way, microseconds, comma-separated")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "default"), help="generated data set (psctl gen-data --out)")
    ap.add_argument("--config", default=os.path.join(ROOT, "cluster", "default.yaml"))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--port", type=int, default=18900)
    ap.add_argument("--bin", help="directory of the executables")
    ap.add_argument("--keep", help="keep the run directories under this directory")
    ap.add_argument("--timeout", type=float, default=900, help="seconds a job may take")
    ap.add_argument("--variants", default="config",
                    help="comma-separated: config (the config as given), prefetch (training.prefetch: true), "
                         "overlap (training.prefetch: false), before (prefetch false and SCENEPS_SYNC_PUSH=1: every "
                         "push waited for, the loop before the overlap)")
    a = ap.parse_args()
    delays = [int(x) for x in a.delays_us.split(",") if x != ""]
    if any(d < 0 for d in delays) or a.repeats < 1 or a.epochs < 1:
        ap.error("delays must be >= 0, --repeats and --epochs >= 1")

    bins = bin_dir(a)
    psctl = os.path.join(bins, "psctl")
    work = a.keep or tempfile.mkdtemp(prefix="sceneps-latency-")
    os.makedirs(work, exist_ok=True)
    relay = os.path.join(work, "delay_relay")
    sh(["cc", "-O2", "-pthread", "-o", relay, os.path.join(ROOT, "tools", "delay_relay.c")])
    if not os.path.exists(os.path.join(a.data, "log.csv")):
        sh([psctl, "gen-data", "--out", a.data])
    variants = [v for v in a.variants.split(",") if v]
    if not variants or any(v not in ("config", "overlap", "prefetch", "before") for v in variants):
        ap.error(f"--variants: expected config, prefetch, overlap or before, got '{a.variants}'")
    cfg = os.path.join(work, "bench.yaml")
    text = re.sub(r"(?m)^  epochs: \d+", f"  epochs: {a.epochs}", open(a.config).read())
    with open(cfg, "w") as f:
        f.write(text)
    configs = {"config": cfg}
    for v, value in (("prefetch", "true"), ("overlap", "false"), ("before", "false")):
        configs[v] = os.path.join(work, f"bench-{v}.yaml")
        with open(configs[v], "w") as f:
            f.write(re.sub(r"(?m)^  prefetch: \S+", f"  prefetch: {value}", text))
    prepared = os.path.join(work, "prepared")
    if not os.path.exists(os.path.join(prepared, "manifest.json")):
        sh([psctl, "prepare", "--config", cfg, "--log", os.path.join(a.data, "log.csv"),
            "--truth", os.path.join(a.data, "truth.csv"), "--out", prepared], stdout=subprocess.DEVNULL)
    scenes = [s["name"] for s in sorted(json.load(open(os.path.join(prepared, "manifest.json")))["scenes"],
                                        key=lambda s: s["index"])]

    settings = [(f"{v} direct" if len(variants) > 1 else "direct", v, None) for v in variants]
    settings += [(f"{v} {d / 1000:g} ms" if len(variants) > 1 else f"{d / 1000:g} ms", v, d) for d in delays for v in variants]
    results = {name: [] for name, _, _ in settings}
    for rep in range(a.repeats):
        for name, variant, d in settings:
            run_dir = os.path.join(work, f"run-{rep}-{variant}-{'direct' if d is None else d}")
            shutil.rmtree(run_dir, ignore_errors=True)
            load = os.getloadavg()[0]
            t0 = time.time()
            env = dict(os.environ, SCENEPS_SYNC_PUSH="1") if variant == "before" else None
            job = Job(a, bins, relay, prepared, configs[variant], scenes, d, run_dir, env)
            job.finish(a.timeout)
            s = json.load(open(os.path.join(run_dir, "summary.json")))
            s["_load"] = load
            results[name].append(s)
            print(f"{name:>16s} run {rep + 1}: {s['examples_per_sec']:8.0f} examples/s, AUC {s['overall']['auc']:.4f}, "
                  f"busy {s.get('busy_fraction') or float('nan'):.2f}, load {load:.1f}, {time.time() - t0:.0f} s", flush=True)

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"\nCPU: {cpu}, {os.cpu_count()} cores; {a.repeats} alternating run(s) per setting, {a.epochs} epoch(s) each; "
          f"load average at the starts {min(s['_load'] for r in results.values() for s in r):.1f}-"
          f"{max(s['_load'] for r in results.values() for s in r):.1f}")
    base = statistics.median(s["examples_per_sec"] for s in results[settings[0][0]])
    print(f"\n(vs direct: against '{settings[0][0]}'; waits summed over the workers)")
    print("\n| each way | examples/s (median) | vs direct | test AUC | busy | waits pull / push / align / lease (s) |")
    print("|---|---:|---:|---:|---:|---|")
    for name, _, _ in settings:
        rs = results[name]
        eps = statistics.median(s["examples_per_sec"] for s in rs)
        auc = statistics.mean(s["overall"]["auc"] for s in rs)
        busy = [s["busy_fraction"] for s in rs if s.get("busy_fraction") is not None]
        w = {k: statistics.mean(s.get("waits", {}).get(k, 0) for s in rs) for k in ("pull", "push", "align", "lease")}
        print(f"| {name} | {eps:,.0f} | {eps / base:.2f} | {auc:.4f} | "
              f"{statistics.mean(busy) if busy else float('nan'):.2f} | "
              f"{w['pull']:.1f} / {w['push']:.1f} / {w['align']:.1f} / {w['lease']:.1f} |")
    out = os.path.join(work, "latency.json")
    json.dump({k: [{kk: vv for kk, vv in s.items()} for s in v] for k, v in results.items()}, open(out, "w"), indent=1)
    print(f"\nwrote {out}")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
