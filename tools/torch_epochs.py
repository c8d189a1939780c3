#!/usr/bin/env python3
"""The PyTorch reference trainer, scored on the test split after every epoch.

    .venv-torch/bin/python tools/torch_epochs.py DATA_DIR --epochs N [--patience 1] [--threads 2] [--out FILE.json]

Runs the reference (tools/reference/train_torch.py: the same model, the
same time split, SparseAdam + Adam, batch 256) exactly as
`train_torch.py --epochs k` would for every k <= N in one run: the training
loop and its seeds are the reference's, and scoring between epochs changes
nothing of the training (the model has no dropout or batch statistics).
Prints and writes per-epoch per-scene test AUC and the best epoch by overall
test AUC: the reference's *best epoch*, chosen on the test set, which is
the most favourable reading of the peer. It stops early once the test AUC has not risen for
--patience epochs (later epochs only overfit further), and rewrites the
output after every epoch, so an interrupted run keeps the epochs it did.
"""
import argparse, json, os, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF = os.path.join(ROOT, "tools", "reference")
sys.path.insert(0, REF)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from msif import Config  # noqa: E402
from train_torch import Trainer, auc, load  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--test-frac", type=float, default=0.1)
    ap.add_argument("--patience", type=int, default=1, help="stop after this many epochs without a better test AUC")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    path = a.out or os.path.join(a.data, "torch-epochs.json")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = Config()
    ids, D, truth = load(a.data, cfg.l_long)
    cfg2 = Config(scenes=len(ids["scene"]))
    cut = np.quantile(D["TS"], 1 - a.test_frac)
    train = np.flatnonzero(D["TS"] < cut); test = np.flatnonzero(D["TS"] >= cut)
    T = {k: torch.from_numpy(v) for k, v in D.items()}
    model = Trainer(cfg2, ids)
    sparse = [p for n_, p in model.named_parameters() if not n_.startswith("net.")]
    dense = [p for n_, p in model.named_parameters() if n_.startswith("net.")]
    opt_s = torch.optim.SparseAdam(sparse, lr=1e-2)
    opt_d = torch.optim.Adam(dense, lr=1e-3)
    inv = {v: k for k, v in ids["scene"].items()}
    keys = ("U", "I", "C", "S", "HI", "HC", "HS", "HL")
    y = D["Y"][test]; s = D["S"][test]
    epochs = []
    seen, train_s = 0, 0.0
    for ep in range(a.epochs):
        t1 = time.time()
        model.train()
        perm = np.random.default_rng(ep).permutation(train)
        for k in range(0, len(perm), a.batch):
            ix = torch.from_numpy(perm[k:k + a.batch])
            b = {key: T[key][ix] for key in keys}
            loss = F.binary_cross_entropy_with_logits(model(b), T["Y"][ix])
            opt_s.zero_grad(); opt_d.zero_grad()
            loss.backward()
            opt_s.step(); opt_d.step()
            seen += len(ix)
        train_s += time.time() - t1
        model.eval()
        preds = np.zeros(len(test))
        with torch.no_grad():
            for k in range(0, len(test), 4096):
                ix = torch.from_numpy(test[k:k + 4096])
                preds[k:k + len(ix)] = torch.sigmoid(model({key: T[key][ix] for key in keys})).numpy()
        r = {"epoch": ep + 1, "overall": {"auc": auc(y, preds)}, "scenes": {}}
        if truth is not None:
            r["overall"]["oracle_auc"] = auc(y, truth[test])
        for sc in sorted(inv):
            m = s == sc
            r["scenes"][inv[sc]] = {"auc": auc(y[m], preds[m]), "examples": int(m.sum())}
            if truth is not None:
                r["scenes"][inv[sc]]["oracle_auc"] = auc(y[m], truth[test][m])
        epochs.append(r)
        print(f"epoch {ep + 1}: overall {r['overall']['auc']:.4f}  "
              + "  ".join(f"{n} {v['auc']:.4f}" for n, v in sorted(r["scenes"].items())), flush=True)
        best = max(epochs, key=lambda e: e["overall"]["auc"])
        out = {"epochs": epochs, "best_epoch": best["epoch"], "best": best,
               "examples_per_sec": seen / train_s if train_s > 0 else 0, "threads": a.threads, "batch": a.batch}
        done = ep + 1 - best["epoch"] >= a.patience or ep + 1 == a.epochs
        out["complete"] = done
        json.dump(out, open(path + ".tmp", "w"), indent=1)
        os.replace(path + ".tmp", path)
        if done:
            if ep + 1 < a.epochs:
                print(f"no better test AUC for {a.patience} epoch(s): stopping", flush=True)
            break
    print(f"best epoch {best['epoch']}: overall {best['overall']['auc']:.4f}; wrote {path}")


if __name__ == "__main__":
    main()
