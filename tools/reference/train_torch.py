"""Train the reference model (msif.py) on a behaviour log with PyTorch, single process.

The peer a user would pick instead of ScenePS on one machine: the same model
(docs/ARCHITECTURE.md §3), SparseAdam for embedding tables, Adam for dense weights, the
same time split (test = rows at or after the 0.9 quantile of timestamps).
Setup: python3 -m venv .venv && .venv/bin/pip install torch numpy

  python train_torch.py DATA_DIR [--threads 2] [--batch 256] [--epochs 1] [--max-steps N] [--ablation A]

DATA_DIR holds log.csv (and truth.csv, when known). Prints per-scene test AUC
(and the oracle AUC when truth.csv is there) and the training throughput in
examples/s (data preparation excluded), and writes DATA_DIR/torch-summary-A.json.
"""
import argparse, csv, json, os, time
from collections import deque
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from msif import Config, MSIF


def auc(y, p):
    y = np.asarray(y); p = np.asarray(p)
    if y.min() == y.max():
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p)); ranks[order] = np.arange(1, len(p) + 1)
    # average ranks for ties
    ps = p[order]; i = 0
    while i < len(ps):
        j = i
        while j + 1 < len(ps) and ps[j + 1] == ps[i]:
            j += 1
        if j > i:
            ranks[order[i:j + 1]] = (i + j + 2) / 2.0
        i = j + 1
    npos = y.sum(); nneg = len(y) - npos
    return float((ranks[y == 1].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def load(data_dir, l_long):
    ids = {"user": {}, "item": {"<pad>": 0}, "category": {"<pad>": 0}, "scene": {}}
    def idx(t, k):
        m = ids[t]
        if k not in m:
            m[k] = len(m)
        return m[k]
    rows = list(csv.DictReader(open(os.path.join(data_dir, "log.csv"))))
    n = len(rows)
    U = np.zeros(n, np.int64); I = np.zeros(n, np.int64); C = np.zeros(n, np.int64)
    S = np.zeros(n, np.int64); TS = np.zeros(n, np.int64); Y = np.zeros(n, np.float32)
    HI = np.zeros((n, l_long), np.int64); HC = np.zeros((n, l_long), np.int64)
    HS = np.zeros((n, l_long), np.int64); HL = np.zeros(n, np.int64)
    hist, pending = {}, {}   # pending: a user's positives at the latest timestamp, not yet visible
    order = sorted(range(n), key=lambda r: int(rows[r]["timestamp"]))   # stable: file order within a timestamp
    for r in order:
        row = rows[r]
        u = idx("user", row["user_id"]); i = idx("item", row["item_id"])
        c = idx("category", row["category_id"]); s = idx("scene", row["scene"])
        U[r], I[r], C[r], S[r], TS[r], Y[r] = u, i, c, s, int(row["timestamp"]), float(row["label"])
        h = hist.setdefault(u, deque(maxlen=l_long))
        ts, items = pending.get(u, (None, []))
        if ts is not None and ts < TS[r]:   # behaviour strictly earlier becomes history
            h.extend(items); pending[u] = (None, [])
        k = len(h)
        HL[r] = k
        for j, (hi, hc, hs) in enumerate(reversed(h)):   # most recent first
            HI[r, j], HC[r, j], HS[r, j] = hi, hc, hs
        if Y[r] == 1:
            ts, items = pending.get(u, (None, []))
            pending[u] = (TS[r], items + [(i, c, s)])
    truth = None
    tp = os.path.join(data_dir, "truth.csv")
    if os.path.exists(tp):
        truth = np.loadtxt(tp, delimiter=",", skiprows=1)[:, 1]
    return ids, dict(U=U, I=I, C=C, S=S, TS=TS, Y=Y, HI=HI, HC=HC, HS=HS, HL=HL), truth


class Trainer(nn.Module):
    def __init__(self, cfg, ids):
        super().__init__()
        d = cfg.d
        self.net = MSIF(cfg)
        mk = lambda n, dim=d: nn.Embedding(n, dim, sparse=True)
        self.item = mk(len(ids["item"])); self.category = mk(len(ids["category"]))
        self.user = mk(len(ids["user"])); self.scene = mk(len(ids["scene"]))
        self.bscene = mk(len(ids["scene"])); self.item_bias = mk(len(ids["item"]), 1)
        for e in (self.item, self.category, self.user, self.scene, self.bscene):
            nn.init.uniform_(e.weight, -0.05, 0.05)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, b):
        e = {"t_item": self.item(b["I"]), "t_cat": self.category(b["C"]), "user": self.user(b["U"]),
             "scene_emb": self.scene(b["S"]), "item_bias": self.item_bias(b["I"]),
             "h_item": self.item(b["HI"]), "h_cat": self.category(b["HC"]), "h_scene": self.bscene(b["HS"]),
             "hist_len": b["HL"], "scene": b["S"]}
        return self.net(e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--emb-lr", type=float, default=1e-2)
    ap.add_argument("--test-frac", type=float, default=0.1)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--ablation", default="full", choices=["full", "long-only", "short-only", "no-scene-gates"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    t0 = time.time()
    cfg = Config(use_long=a.ablation != "short-only", use_short=a.ablation != "long-only",
                 scene_gates=a.ablation != "no-scene-gates")
    ids, D, truth = load(a.data, cfg.l_long)
    cfg.scenes = len(ids["scene"])
    cfg2 = Config(scenes=cfg.scenes, use_long=cfg.use_long, use_short=cfg.use_short, scene_gates=cfg.scene_gates)
    prep_s = time.time() - t0
    n = len(D["Y"])
    cut = np.quantile(D["TS"], 1 - a.test_frac)
    train = np.flatnonzero(D["TS"] < cut); test = np.flatnonzero(D["TS"] >= cut)
    T = {k: torch.from_numpy(v) for k, v in D.items()}
    model = Trainer(cfg2, ids)
    sparse = [p for n_, p in model.named_parameters() if not n_.startswith("net.")]
    dense = [p for n_, p in model.named_parameters() if n_.startswith("net.")]
    opt_s = torch.optim.SparseAdam(sparse, lr=a.emb_lr)
    opt_d = torch.optim.Adam(dense, lr=a.lr)
    steps = 0; seen = 0
    t1 = time.time()
    for ep in range(a.epochs):
        perm = np.random.default_rng(ep).permutation(train)   # shuffled, as workers read shuffled chunks
        for k in range(0, len(perm), a.batch):
            ix = torch.from_numpy(perm[k:k + a.batch])
            b = {key: T[key][ix] for key in ("U", "I", "C", "S", "HI", "HC", "HS", "HL")}
            y = T["Y"][ix]
            logits = model(b)
            loss = F.binary_cross_entropy_with_logits(logits, y)
            opt_s.zero_grad(); opt_d.zero_grad()
            loss.backward()
            opt_s.step(); opt_d.step()
            steps += 1; seen += len(ix)
            if a.max_steps and steps >= a.max_steps:
                break
    train_s = time.time() - t1
    model.eval()
    preds = np.zeros(len(test))
    with torch.no_grad():
        for k in range(0, len(test), 4096):
            ix = torch.from_numpy(test[k:k + 4096])
            b = {key: T[key][ix] for key in ("U", "I", "C", "S", "HI", "HC", "HS", "HL")}
            preds[k:k + len(ix)] = torch.sigmoid(model(b)).numpy()
    y = D["Y"][test]; s = D["S"][test]
    inv = {v: k for k, v in ids["scene"].items()}
    out = {"scenes": {}, "examples_per_sec": seen / train_s, "train_seconds": train_s,
           "prep_seconds": prep_s, "examples": seen, "threads": a.threads, "batch": a.batch,
           "ablation": a.ablation}
    for sc in sorted(inv):
        m = s == sc
        r = {"auc": auc(y[m], preds[m]), "examples": int(m.sum()),
             "logloss": float(-np.mean(y[m] * np.log(preds[m] + 1e-7) + (1 - y[m]) * np.log(1 - preds[m] + 1e-7)))}
        if truth is not None:
            r["oracle_auc"] = auc(y[m], truth[test][m])
        out["scenes"][inv[sc]] = r
    out["overall"] = {"auc": auc(y, preds)}
    if truth is not None:
        out["overall"]["oracle_auc"] = auc(y, truth[test])
    print(json.dumps(out, indent=1))
    json.dump(out, open(os.path.join(a.data, f"torch-summary-{a.ablation}.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
