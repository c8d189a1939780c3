#!/usr/bin/env python3
"""The traits of a behaviour log that decide how model selection behaves on it.

    tools/log_traits.py LOG.csv [--test-fraction 0.1] [--valid-fraction 0.05] [--json]

Prints, for a log in the DESIGN.md §4 format:
- same-timestamp share: rows that share their user's timestamp with at least
  one other row of that user (ratings entered in one sitting; MovieLens-100K: 76%);
- the time split as `psctl prepare` cuts it (test = timestamp at or after the
  (1 - f) quantile, validation cut the same way from the rest), with the rows,
  users and positive rate of each part;
- history: earlier events (rows of the same user strictly earlier in time) per
  test row, median and quartiles, and the share of test rows whose user has no
  training row;
- scene shares.
--json prints the same as one JSON object.
"""
import argparse, csv, json, sys
from collections import Counter, defaultdict


def quantile_cut(ts_sorted, f):
    # The same cut as Preparation.swift and train_torch.py: numpy's linear quantile at 1 - f.
    n = len(ts_sorted)
    pos = (1 - f) * (n - 1)
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    return ts_sorted[lo] + (ts_sorted[hi] - ts_sorted[lo]) * (pos - lo)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else 0


def traits(path, test_f, valid_f):
    users, ts, labels, scenes = [], [], [], []
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        for line, row in enumerate(r, start=2):
            try:
                users.append(row["user_id"]); ts.append(int(row["timestamp"]))
                labels.append(int(row["label"])); scenes.append(row["scene"])
            except (KeyError, TypeError, ValueError) as e:
                sys.exit(f"{path}:{line}: {e}")
    n = len(ts)
    per_user_ts = Counter(zip(users, ts))
    same = sum(1 for k in zip(users, ts) if per_user_ts[k] > 1)
    s = sorted(ts)
    test_cut = quantile_cut(s, test_f)
    train_ts = sorted(t for t in ts if t < test_cut)
    valid_cut = quantile_cut(train_ts, valid_f) if train_ts and valid_f > 0 else float("inf")
    part = ["test" if t >= test_cut else "valid" if t >= valid_cut else "train" for t in ts]
    # Earlier events per row: rows of the same user strictly earlier in time.
    order = sorted(range(n), key=lambda k: ts[k])
    seen = defaultdict(int)
    earlier = [0] * n
    k = 0
    while k < n:
        j = k
        while j < n and ts[order[j]] == ts[order[k]]:
            j += 1
        for m in order[k:j]:
            earlier[m] = seen[users[m]]
        for m in order[k:j]:
            seen[users[m]] += 1
        k = j
    train_users = {users[k] for k in range(n) if part[k] == "train"}
    out = {"rows": n, "users": len(set(users)), "same_timestamp_share": same / n if n else 0,
           "distinct_timestamps": len(set(ts)), "test_cut": test_cut, "valid_cut": valid_cut, "parts": {}}
    for p in ("train", "valid", "test"):
        idx = [k for k in range(n) if part[k] == p]
        hist = sorted(earlier[k] for k in idx)
        out["parts"][p] = {
            "rows": len(idx), "users": len({users[k] for k in idx}),
            "positive_rate": sum(labels[k] for k in idx) / len(idx) if idx else 0,
            "earlier_events_median": median(hist),
            "earlier_events_q1": hist[len(hist) // 4] if hist else 0,
            "earlier_events_q3": hist[3 * len(hist) // 4] if hist else 0,
            "rows_of_users_without_training_rows": sum(1 for k in idx if users[k] not in train_users) / len(idx) if idx else 0,
        }
    sc = Counter(scenes)
    out["scenes"] = {k: v / n for k, v in sorted(sc.items())}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log")
    ap.add_argument("--test-fraction", type=float, default=0.1)
    ap.add_argument("--valid-fraction", type=float, default=0.05)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    t = traits(a.log, a.test_fraction, a.valid_fraction)
    if a.json:
        print(json.dumps(t, indent=1))
        return
    print(f"{a.log}: {t['rows']:,} rows, {t['users']:,} users, {t['distinct_timestamps']:,} distinct timestamps")
    print(f"rows sharing their user's timestamp with another row: {100 * t['same_timestamp_share']:.1f}%")
    print("scenes: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in t["scenes"].items()))
    for p, v in t["parts"].items():
        print(f"{p:5s}: {v['rows']:7,} rows, {v['users']:5,} users, positive rate {v['positive_rate']:.3f}, "
              f"earlier events per row median {v['earlier_events_median']} (quartiles {v['earlier_events_q1']}-"
              f"{v['earlier_events_q3']}), rows of users with no training row {100 * v['rows_of_users_without_training_rows']:.1f}%")


if __name__ == "__main__":
    main()
