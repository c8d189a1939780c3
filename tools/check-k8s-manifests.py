#!/usr/bin/env python3
"""Checks ScenePS's Kubernetes manifests offline (no cluster needed).

    tools/check-k8s-manifests.py [--dir cluster/k8s] [--bin DIR] [--kubernetes-version V] [--config-out DIR]

1. Every manifest listed in DIR/kustomization.yaml (and every *.yaml of DIR is listed there) validates
   strictly against the Kubernetes schemas (PyPI `kubernetes-validate`; installed on first use into a venv
   under ${SCENEPS_CACHE:-~/.cache/sceneps}/venv-k8s-validate; this script re-runs itself there).
2. Every ScenePS command a container or probe runs (ps-server, worker, coordinator, psctl SUBCOMMAND; as
   argv or inside `sh -c '...'`) uses only flags that the built executable's --help lists (BIN, default
   $SCENEPS_BIN or .build/release): a renamed flag fails here.
3. Names and ports agree: the StatefulSet `ps` (its replicas, headless Service, container port) with
   ps-server --shard-count/--bind, the config's `servers` and the coordinator's --servers
   (tcp://ps-I.ps:PORT for every I); the coordinator Service's port with its --bind, with every worker's
   --coordinator and with the probes; every worker Deployment is named worker-<its --scene>; every
   --config names the ConfigMap's file and every mounted claim/ConfigMap exists in the manifests.
With --config-out DIR the ConfigMap's config files are written there (the Swift test loads them with the
config loader, so an unknown key fails too). Prints `ok N manifests, M commands` and exits 0, or prints
every problem as `FILE: RESOURCE: problem` and exits 1.
"""
import argparse
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXECUTABLES = {"ps-server", "worker", "coordinator", "psctl"}


def ensure_venv():
    try:
        import kubernetes_validate  # noqa: F401
        import yaml  # noqa: F401
        return
    except ImportError:
        pass
    cache = os.environ.get("SCENEPS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sceneps")
    venv = os.path.join(cache, "venv-k8s-validate")
    py = os.path.join(venv, "bin", "python")
    if os.environ.get("SCENEPS_K8S_VENV") == venv:
        sys.exit(f"check-k8s-manifests: kubernetes-validate is not importable in {venv} even after installing it")
    if not os.path.exists(py):
        print(f"== installing kubernetes-validate into {venv} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    r = subprocess.run([py, "-m", "pip", "install", "-q", "kubernetes-validate"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"check-k8s-manifests: cannot install kubernetes-validate from PyPI into {venv}:\n{r.stderr[-2000:]}")
    os.environ["SCENEPS_K8S_VENV"] = venv
    os.execv(py, [py] + sys.argv)


class Checker:
    def __init__(self, directory, bindir, version):
        self.dir = directory
        self.bin = bindir
        self.version = version
        self.problems = []
        self.helps = {}
        self.commands = 0

    def problem(self, where, text):
        self.problems.append(f"{where}: {text}")

    def help_text(self, argv):
        key = tuple(argv)
        if key not in self.helps:
            exe = os.path.join(self.bin, argv[0])
            r = subprocess.run([exe] + argv[1:] + ["--help"], capture_output=True, text=True, timeout=60)
            self.helps[key] = (r.returncode, r.stdout + r.stderr)
        return self.helps[key]

    # --- the ScenePS commands a manifest runs --------------------------------------------------------
    def commands_of(self, argv):
        """(argv of one ScenePS command) for a container's or probe's argv; `sh -c SCRIPT` is split."""
        if not argv:
            return []
        if os.path.basename(argv[0]) in ("sh", "bash") and len(argv) >= 3 and argv[1] == "-c":
            out = []
            for part in re.split(r"[;&|]+|\bthen\b|\bdo\b", argv[2]):
                words = shlex.split(part)
                while words and words[0] in ("exec", "if", "until", "while", "!"):
                    words = words[1:]
                if words and os.path.basename(words[0]) in EXECUTABLES:
                    out.append(words)
            return out
        return [argv] if os.path.basename(argv[0]) in EXECUTABLES else []

    @staticmethod
    def flags(argv):
        """{flag: value or None} of an argv (after the executable and a psctl subcommand)."""
        out, i = {}, 0
        while i < len(argv):
            a = argv[i]
            if a.startswith("--"):
                if "=" in a:
                    k, v = a.split("=", 1)
                    out[k] = v
                elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                    out[a] = argv[i + 1]
                    i += 1
                else:
                    out[a] = None
            i += 1
        return out

    def check_command(self, where, argv):
        self.commands += 1
        exe = os.path.basename(argv[0])
        head = [exe]
        rest = argv[1:]
        if exe == "psctl":
            if not rest or rest[0].startswith("-"):
                return self.problem(where, f"`{' '.join(argv)}`: psctl needs a subcommand")
            head, rest = [exe, rest[0]], rest[1:]
        status, text = self.help_text(head)
        if status != 0:
            return self.problem(where, f"`{' '.join(head)} --help` failed (status {status}): {text.strip()[:300]}")
        # The options ArgumentParser lists (a line of their own: `  --flag <value>`, `  -h, --help`), not every
        # --word the discussion mentions.
        known = set(re.findall(r"^\s+(?:-\w, )?(--[a-z0-9][a-z0-9-]*)", text, re.M))
        for f in self.flags(rest):
            if f not in known:
                self.problem(where, f"`{' '.join(head)}` has no flag {f} (its --help lists: {', '.join(sorted(known))})")
        return self.flags(rest)

    # --- manifests ---------------------------------------------------------------------------------------
    def load(self):
        import yaml
        kfile = os.path.join(self.dir, "kustomization.yaml")
        listed = []
        if os.path.exists(kfile):
            with open(kfile) as f:
                listed = (yaml.safe_load(f) or {}).get("resources", [])
        present = sorted(f for f in os.listdir(self.dir) if f.endswith(".yaml") and f != "kustomization.yaml")
        for f in present:
            if f not in listed:
                self.problem(f, "not listed in kustomization.yaml's resources (kubectl apply -k would leave it out)")
        for f in listed:
            if f not in present:
                self.problem("kustomization.yaml", f"lists {f}, which does not exist")
        self.docs = []
        for f in present:
            with open(os.path.join(self.dir, f)) as h:
                for d in yaml.safe_load_all(h):
                    if d:
                        self.docs.append((f, d))

    def validate_schemas(self):
        import kubernetes_validate
        for f, d in self.docs:
            try:
                kubernetes_validate.validate(d, self.version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                self.problem(f"{f}: {d.get('kind')}/{d.get('metadata', {}).get('name')}", f"schema: {path}: {e.message}")
            except Exception as e:  # noqa: BLE001 - a schema the package lacks, say
                self.problem(f"{f}: {d.get('kind')}/{d.get('metadata', {}).get('name')}", f"schema: {e}")

    def find(self, kind, name=None):
        return [(f, d) for f, d in self.docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]

    @staticmethod
    def pod_spec(d):
        return d.get("spec", {}).get("template", {}).get("spec")

    def run_checks(self, config_out):
        import yaml
        # The ConfigMap: its files, their `servers`.
        config_files, config_servers = {}, None
        for f, d in self.find("ConfigMap"):
            for key, text in (d.get("data") or {}).items():
                config_files[(d["metadata"]["name"], key)] = text
                if key == "config.yaml":
                    config_servers = (yaml.safe_load(text) or {}).get("servers", 2)
                if config_out:
                    os.makedirs(config_out, exist_ok=True)
                    with open(os.path.join(config_out, f"{d['metadata']['name']}-{key}"), "w") as h:
                        h.write(text)
        claims = {d["metadata"]["name"] for _, d in self.find("PersistentVolumeClaim")}
        services = {d["metadata"]["name"]: (f, d) for f, d in self.find("Service")}

        def port_of(endpoint, where, what):
            m = re.fullmatch(r"tcp://([^:/]+):(\d+)", endpoint or "")
            if not m:
                self.problem(where, f"{what} {endpoint!r} is not tcp://HOST:PORT")
                return None, None
            return m.group(1), int(m.group(2))

        per_exe = {}
        for f, d in self.docs:
            spec = self.pod_spec(d)
            if not spec:
                continue
            where = f"{f}: {d['kind']}/{d['metadata']['name']}"
            mounts_ok = {}
            for v in spec.get("volumes", []):
                if "persistentVolumeClaim" in v and v["persistentVolumeClaim"]["claimName"] not in claims:
                    self.problem(where, f"volume {v['name']} names claim {v['persistentVolumeClaim']['claimName']}, which no manifest defines")
                if "configMap" in v:
                    cm = v["configMap"]["name"]
                    if not any(n == cm for n, _ in config_files):
                        self.problem(where, f"volume {v['name']} names ConfigMap {cm}, which no manifest defines")
                    mounts_ok[v["name"]] = cm
            for c in spec.get("initContainers", []) + spec.get("containers", []):
                cwhere = f"{where}: container {c['name']}"
                argv = list(c.get("command", [])) + list(c.get("args", []))
                cmds = self.commands_of(argv)
                config_mounts = {m["mountPath"]: mounts_ok[m["name"]] for m in c.get("volumeMounts", []) if m["name"] in mounts_ok}
                for cmd in cmds:
                    fl = self.check_command(cwhere, cmd)
                    if fl is None:
                        continue
                    per_exe.setdefault(os.path.basename(cmd[0]), []).append((cwhere, d, c, fl))
                    if fl.get("--config"):
                        dirname, base = os.path.split(fl["--config"])
                        if (config_mounts.get(dirname), base) not in config_files:
                            self.problem(cwhere, f"--config {fl['--config']}: no ConfigMap key {base} is mounted at {dirname}")
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    p = c.get(probe)
                    if not p:
                        continue
                    if "exec" not in p:
                        self.problem(cwhere, f"{probe} is not an exec probe of psctl probe")
                        continue
                    pcmds = self.commands_of(p["exec"]["command"])
                    if not any(x[:2] == ["psctl", "probe"] for x in pcmds):
                        self.problem(cwhere, f"{probe} runs no `psctl probe`: {p['exec']['command']}")
                    for x in pcmds:
                        fl = self.check_command(f"{cwhere}: {probe}", x)
                        if fl is not None:
                            per_exe.setdefault("probe", []).append((cwhere, d, c, fl))

        # Servers: StatefulSet ps behind the headless Service ps.
        sts = self.find("StatefulSet", "ps")
        replicas, server_port = None, None
        if not sts:
            self.problem("servers", "no StatefulSet ps")
        else:
            f, d = sts[0]
            replicas = d["spec"].get("replicas", 1)
            where = f"{f}: StatefulSet/ps"
            if d["spec"].get("serviceName") != "ps":
                self.problem(where, "serviceName must be ps (stable names ps-I.ps)")
            svc = services.get("ps")
            if not svc or svc[1]["spec"].get("clusterIP") != "None":
                self.problem(where, "the Service ps must exist and be headless (clusterIP: None)")
            if config_servers is not None and replicas != config_servers:
                self.problem(where, f"replicas {replicas} but the config's servers is {config_servers}")
            for cwhere, dd, c, fl in per_exe.get("ps-server", []):
                if dd is not d:
                    continue
                if str(fl.get("--shard-count")) != str(replicas):
                    self.problem(cwhere, f"--shard-count {fl.get('--shard-count')} but replicas {replicas}")
                _, server_port = port_of(fl.get("--bind"), cwhere, "--bind")
                ports = [p["containerPort"] for p in c.get("ports", [])]
                if server_port not in ports:
                    self.problem(cwhere, f"--bind port {server_port} is not a containerPort ({ports})")
                if svc and server_port not in [p.get("targetPort", p["port"]) for p in svc[1]["spec"]["ports"]]:
                    self.problem(cwhere, f"--bind port {server_port} is not a targetPort of Service ps")
                if fl.get("--restore") not in (None, "latest-if-any"):
                    self.problem(cwhere, "--restore must be latest-if-any: a restarted pod restores, a first start starts empty")

        # The coordinator: its Service, its --servers, its --bind.
        coord_port = None
        coords = per_exe.get("coordinator", [])
        if len(coords) != 1:
            self.problem("coordinator", f"{len(coords)} coordinator containers; one is needed")
        for cwhere, d, c, fl in coords:
            want = ",".join(f"tcp://ps-{i}.ps:{server_port}" for i in range(replicas or 0))
            if fl.get("--servers") != want:
                self.problem(cwhere, f"--servers {fl.get('--servers')} but the StatefulSet calls for {want}")
            _, coord_port = port_of(fl.get("--bind"), cwhere, "--bind")
            svc = services.get("coordinator")
            if not svc:
                self.problem(cwhere, "no Service coordinator")
            elif coord_port not in [p.get("targetPort", p["port"]) for p in svc[1]["spec"]["ports"]]:
                self.problem(cwhere, f"--bind port {coord_port} is not a targetPort of Service coordinator")
            if fl.get("--pools") != "registered":
                self.problem(cwhere, "--pools must be registered: the worker Deployments size the pools")
            if c.get("ports") and coord_port not in [p["containerPort"] for p in c["ports"]]:
                self.problem(cwhere, f"--bind port {coord_port} is not a containerPort")
        svc_port = None
        if "coordinator" in services:
            ps = services["coordinator"][1]["spec"]["ports"]
            svc_port = ps[0]["port"] if ps else None

        # Workers: Deployment worker-<scene>, talking to the coordinator's Service.
        workers = per_exe.get("worker", [])
        if not workers:
            self.problem("workers", "no worker Deployment")
        for cwhere, d, c, fl in workers:
            if d["kind"] != "Deployment" or d["metadata"]["name"] != f"worker-{fl.get('--scene')}":
                self.problem(cwhere, f"a worker of scene {fl.get('--scene')} must be the Deployment worker-{fl.get('--scene')} "
                             "(kubectl scale deployment/worker-<scene>)")
            if fl.get("--coordinator") != f"tcp://coordinator:{svc_port}":
                self.problem(cwhere, f"--coordinator {fl.get('--coordinator')} but the Service is tcp://coordinator:{svc_port}")
        for cwhere, d, c, fl in per_exe.get("probe", []):
            host, port = port_of(fl.get("--endpoint"), cwhere, "psctl probe --endpoint")
            exe = (c.get("command") or [""])[0]
            want = {"ps-server": ("127.0.0.1", server_port), "coordinator": ("127.0.0.1", coord_port),
                    "worker": ("coordinator", svc_port)}.get(exe)
            if want and (host, port) != want:
                self.problem(cwhere, f"probe --endpoint {fl.get('--endpoint')} but the {exe} is at tcp://{want[0]}:{want[1]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=os.path.join(ROOT, "cluster", "k8s"))
    ap.add_argument("--bin", default=os.environ.get("SCENEPS_BIN") or os.path.join(ROOT, ".build", "release"))
    ap.add_argument("--kubernetes-version", default="1.30")
    ap.add_argument("--config-out")
    a = ap.parse_args()
    for exe in sorted(EXECUTABLES):
        if not os.access(os.path.join(a.bin, exe), os.X_OK):
            sys.exit(f"check-k8s-manifests: missing executable {a.bin}/{exe} (swift build -c release, or --bin DIR)")
    ensure_venv()
    ch = Checker(a.dir, a.bin, a.kubernetes_version)
    ch.load()
    ch.validate_schemas()
    ch.run_checks(a.config_out)
    if ch.problems:
        for p in ch.problems:
            print(p)
        print(f"FAILED: {len(ch.problems)} problems in {a.dir}")
        sys.exit(1)
    print(f"ok {len(ch.docs)} manifests, {ch.commands} commands (Kubernetes {a.kubernetes_version})")


if __name__ == "__main__":
    main()
