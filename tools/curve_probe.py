#!/usr/bin/env python3
"""An independent ScenePS client (pyzmq + the .proto compiled for Python by
protoc) that tries what a CURVE-protected job must refuse (docs/SECURITY.md).

    curve_probe.py --pb2 DIR --keys KEYDIR --server tcp://H:P [--coordinator tcp://H:P] [--table ID --keys-to-pull 1,2,3]

DIR holds scene_ps_pb2.py (protoc --python_out=DIR protos/scene_ps.proto).
Prints one JSON object: per probe what came back. Exit status 0 when every
probe got what a protected job must answer: no reply at all without a key or
with a key the job does not list, PERMISSION_DENIED for admin requests sent
with the worker key, and rows for a pull with the worker key; 1 otherwise,
naming the probe.
"""
import argparse, json, os, sys, time

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--pb2", required=True)
ap.add_argument("--keys", required=True, help="job key directory (psctl keys --out)")
ap.add_argument("--server", required=True)
ap.add_argument("--coordinator")
ap.add_argument("--table", type=int, default=1)
ap.add_argument("--keys-to-pull", default="", help="comma-separated existing keys the worker key pulls")
ap.add_argument("--scale-scene", default="feed", help="the scene the worker key tries to resize (to 5 workers)")
ap.add_argument("--wait", type=float, default=2.0, help="seconds to wait for each reply")
a = ap.parse_args()
sys.path.insert(0, a.pb2)
import zmq  # noqa: E402
import scene_ps_pb2 as pb  # noqa: E402

def key(name):
    with open(os.path.join(a.keys, name)) as f:
        return f.read().strip().encode()

ctx = zmq.Context()
server_public = key("server.pub")
worker_secret = key("worker.key")
worker_public = zmq.curve_public(worker_secret)

def socket(endpoint, who):
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    if who == "worker":
        s.curve_serverkey, s.curve_publickey, s.curve_secretkey = server_public, worker_public, worker_secret
    elif who == "stranger":
        pub, sec = zmq.curve_keypair()
        s.curve_serverkey, s.curve_publickey, s.curve_secretkey = server_public, pub, sec
    s.connect(endpoint)
    return s

next_id = [int(time.time() * 1e6)]
def ask(endpoint, who, fill):
    s = socket(endpoint, who)
    env = pb.Envelope(version=pb.PROTOCOL_VERSION_CURRENT, request_id=next_id[0], sender="curve-probe-%s" % who)
    next_id[0] += 1
    fill(env)
    s.send(env.SerializeToString())
    out = None
    if s.poll(int(a.wait * 1000)):
        r = pb.Envelope()
        r.ParseFromString(s.recv_multipart()[-1])
        body = r.WhichOneof("body")
        if body == "error":
            out = {"reply": "error", "status": pb.Status.Name(r.error.status), "message": r.error.message}
        elif body == "pull_reply":
            out = {"reply": "pull_reply", "values": [v for b in r.pull_reply.sparse for v in b.values]}
        else:
            out = {"reply": body}
    s.close()
    return out

def shutdown(e): e.shutdown.reason = "curve probe"
def snapshot_restore(e): e.snapshot.action = pb.SNAPSHOT_ACTION_RESTORE; e.snapshot.name = "best"
def snapshot_save(e): e.snapshot.action = pb.SNAPSHOT_ACTION_SAVE; e.snapshot.name = "probe"
def checkpoint(e): e.checkpoint.action = pb.CHECKPOINT_ACTION_PREPARE; e.checkpoint.name = "probe"
def scale(e): e.scale.scene = a.scale_scene; e.scale.workers = 5
def recovery(e): e.recovery.action = pb.RECOVERY_ACTION_BEGIN; e.recovery.reason = "curve probe"
def coord_checkpoint(e): e.coordinator_checkpoint.ticket = 0
def pull(keys):
    def f(e):
        b = e.pull.sparse.add()
        b.table_id = a.table
        b.keys.extend(keys)
    return f

results, failures = {}, []
def probe(name, endpoint, who, fill, want):
    got = ask(endpoint, who, fill)
    results[name] = got
    ok = (got is None) if want == "silence" else (
        got is not None and (got.get("status") == "STATUS_PERMISSION_DENIED" if want == "denied" else got["reply"] == want))
    if not ok:
        failures.append("%s: wanted %s, got %s" % (name, want, json.dumps(got)))

probe("server/no-key/shutdown", a.server, "none", shutdown, "silence")
probe("server/stranger/shutdown", a.server, "stranger", shutdown, "silence")
probe("server/worker/shutdown", a.server, "worker", shutdown, "denied")
probe("server/worker/snapshot-restore", a.server, "worker", snapshot_restore, "denied")
probe("server/worker/snapshot-save", a.server, "worker", snapshot_save, "denied")
probe("server/worker/checkpoint", a.server, "worker", checkpoint, "denied")
if a.keys_to_pull:
    probe("server/worker/pull", a.server, "worker", pull([int(k) for k in a.keys_to_pull.split(",")]), "pull_reply")
if a.coordinator:
    probe("coordinator/no-key/scale", a.coordinator, "none", scale, "silence")
    probe("coordinator/worker/scale", a.coordinator, "worker", scale, "denied")
    probe("coordinator/worker/recovery", a.coordinator, "worker", recovery, "denied")
    probe("coordinator/worker/checkpoint", a.coordinator, "worker", coord_checkpoint, "denied")
print(json.dumps({"results": results, "failures": failures}))
sys.exit(1 if failures else 0)
