"""PyTorch reference of the multi-scene interest-fusion model in docs/ARCHITECTURE.md §3.

It wrote the fixtures in Tests/ScenePSModelTests/Fixtures/msif-*.json, and it is the peer that a
user would pick instead of ScenePS on one machine: train_torch.py trains it
with SparseAdam for the tables and Adam for the dense part.

Batch layout (most recent behaviour first):
  user[B], item[B], cat[B], scene[B]            int64 keys / scene index
  hist_item[B,L], hist_cat[B,L], hist_scene[B,L] int64, padded with 0
  hist_len[B]                                    number of valid behaviours
"""
import math
import torch
import torch.nn as nn
import torch.nn.functional as F


class Config:
    def __init__(self, d=32, l_long=50, l_short=10, heads=2, ffn=64, experts=4,
                 expert_widths=(128, 64), head_width=32, scenes=3,
                 use_long=True, use_short=True, scene_gates=True):
        self.d, self.l_long, self.l_short = d, l_long, l_short
        self.heads, self.ffn, self.experts = heads, ffn, experts
        self.expert_widths, self.head_width, self.scenes = tuple(expert_widths), head_width, scenes
        self.use_long, self.use_short, self.scene_gates = use_long, use_short, scene_gates


SPARSE_TABLES = {"item": None, "category": None, "user": None, "scene": None,
                 "behaviour_scene": None, "item_bias": 1}


class _Params(dict):
    """Name -> parameter, with dotted names; each is also registered on the module."""

    def __init__(self, module):
        super().__init__()
        self._m = module

    def __setitem__(self, name, param):
        self._m.register_parameter(name.replace(".", "__"), param)
        super().__setitem__(name, param)


class MSIF(nn.Module):
    """Dense part of the model. Sparse rows arrive as tensors gathered by the caller."""

    def __init__(self, cfg: Config):
        super().__init__()
        c = cfg
        d = c.d
        self.cfg = c
        P = lambda *s: nn.Parameter(torch.empty(*s))
        self.p = _Params(self)
        self.p["attn_long.W_q"] = P(d, 2 * d); self.p["attn_long.b_q"] = P(d)
        self.p["attn_long.W_k"] = P(d, d); self.p["attn_long.W_v"] = P(d, d)
        self.p["short.pos"] = P(c.l_short, d)
        for n in ("ln1", "ln2"):
            self.p[f"short.{n}.gamma"] = P(d); self.p[f"short.{n}.beta"] = P(d)
        for n in ("q", "k", "v", "o"):
            self.p[f"short.W_{n}"] = P(d, d); self.p[f"short.b_{n}"] = P(d)
        self.p["short.ffn.W1"] = P(c.ffn, d); self.p["short.ffn.b1"] = P(c.ffn)
        self.p["short.ffn.W2"] = P(d, c.ffn); self.p["short.ffn.b2"] = P(d)
        self.p["gate.W"] = P(d, 4 * d); self.p["gate.b"] = P(d)
        w1, w2 = c.expert_widths
        for k in range(c.experts):
            self.p[f"experts.{k}.W1"] = P(w1, 5 * d); self.p[f"experts.{k}.b1"] = P(w1)
            self.p[f"experts.{k}.W2"] = P(w2, w1); self.p[f"experts.{k}.b2"] = P(w2)
        for s in range(c.scenes):
            self.p[f"scene_gate.{s}.G"] = P(c.experts, 5 * d); self.p[f"scene_gate.{s}.c"] = P(c.experts)
            self.p[f"head.{s}.U"] = P(c.head_width, w2); self.p[f"head.{s}.u"] = P(c.head_width)
            self.p[f"head.{s}.w"] = P(c.head_width); self.p[f"head.{s}.beta"] = P(1)
        self.reset_parameters()

    def reset_parameters(self, gen=None):
        for name, t in self.p.items():
            with torch.no_grad():
                if name.endswith("gamma"):
                    t.fill_(1.0)
                elif t.dim() == 1:
                    t.zero_()
                else:
                    fan_in = t.shape[1]
                    bound = math.sqrt(6.0 / (fan_in + t.shape[0]))
                    t.uniform_(-bound, bound, generator=gen)

    def forward(self, e):
        """e: dict of gathered embeddings:
        t_item, t_cat, user, scene_emb [B,d]; item_bias [B,1];
        h_item, h_cat, h_scene [B,L,d]; hist_len [B]; scene [B] (index)."""
        c, p = self.cfg, self.p
        d = c.d
        B = e["t_item"].shape[0]
        t = e["t_item"] + e["t_cat"]
        e_s, e_u = e["scene_emb"], e["user"]
        b = e["h_item"] + e["h_cat"] + e["h_scene"]            # [B,L,d]
        L = b.shape[1]
        idx = torch.arange(L, device=b.device)
        hist_len = e["hist_len"]

        # long-term: scene-aware target attention over the first l_long tokens
        if c.use_long:
            n_long = min(L, c.l_long)
            bl = b[:, :n_long]
            valid = idx[:n_long][None, :] < hist_len[:, None]           # [B,n]
            q = F.linear(torch.cat([t, e_s], 1), p["attn_long.W_q"], p["attn_long.b_q"])
            k = F.linear(bl, p["attn_long.W_k"])
            v = F.linear(bl, p["attn_long.W_v"])
            scores = (k @ q[:, :, None]).squeeze(2) / math.sqrt(d)
            scores = scores.masked_fill(~valid, float("-inf"))
            any_valid = valid.any(1, keepdim=True)
            a = torch.softmax(torch.where(any_valid, scores, torch.zeros_like(scores)), 1)
            a = torch.where(valid, a, torch.zeros_like(a))
            long = (a[:, :, None] * v).sum(1)
        else:
            long = torch.zeros(B, d, dtype=t.dtype)

        # short-term: one pre-LN Transformer block over the first l_short tokens
        if c.use_short:
            n_short = min(L, c.l_short)
            x = b[:, :n_short] + p["short.pos"][:n_short][None]
            valid = idx[:n_short][None, :] < hist_len[:, None]              # [B,n]
            H, dh = c.heads, d // c.heads
            u = F.layer_norm(x, (d,), p["short.ln1.gamma"], p["short.ln1.beta"], 1e-5)
            q = F.linear(u, p["short.W_q"], p["short.b_q"]).view(B, n_short, H, dh).transpose(1, 2)
            k = F.linear(u, p["short.W_k"], p["short.b_k"]).view(B, n_short, H, dh).transpose(1, 2)
            v = F.linear(u, p["short.W_v"], p["short.b_v"]).view(B, n_short, H, dh).transpose(1, 2)
            s = q @ k.transpose(2, 3) / math.sqrt(dh)                        # [B,H,n,n]
            kmask = valid[:, None, None, :]
            s = s.masked_fill(~kmask, float("-inf"))
            anyk = valid.any(1)[:, None, None, None]
            a = torch.softmax(torch.where(anyk, s, torch.zeros_like(s)), -1)
            a = torch.where(kmask, a, torch.zeros_like(a))
            o = (a @ v).transpose(1, 2).reshape(B, n_short, d)
            y = x + F.linear(o, p["short.W_o"], p["short.b_o"])
            u2 = F.layer_norm(y, (d,), p["short.ln2.gamma"], p["short.ln2.beta"], 1e-5)
            z = y + F.linear(F.relu(F.linear(u2, p["short.ffn.W1"], p["short.ffn.b1"])),
                             p["short.ffn.W2"], p["short.ffn.b2"])
            vm = valid[:, :, None].to(z.dtype)
            cnt = vm.sum(1).clamp(min=1.0)
            short = (z * vm).sum(1) / cnt
        else:
            short = torch.zeros(B, d, dtype=t.dtype)

        if c.use_long and c.use_short:
            g = torch.sigmoid(F.linear(torch.cat([long, short, e_s, t], 1), p["gate.W"], p["gate.b"]))
            interest = g * long + (1 - g) * short
        else:
            interest = long if c.use_long else short

        xin = torch.cat([t, e_u, e_s, interest, interest * t], 1)          # [B,5d]
        ex = []
        for k in range(c.experts):
            hk = F.relu(F.linear(xin, p[f"experts.{k}.W1"], p[f"experts.{k}.b1"]))
            ex.append(F.relu(F.linear(hk, p[f"experts.{k}.W2"], p[f"experts.{k}.b2"])))
        ex = torch.stack(ex, 1)                                              # [B,K,w2]
        scene = e["scene"]
        logits = torch.empty(B, dtype=t.dtype)
        for s in range(c.scenes):
            m = scene == s
            if not m.any():
                continue
            gs = s if c.scene_gates else 0
            gam = torch.softmax(F.linear(xin[m], p[f"scene_gate.{gs}.G"], p[f"scene_gate.{gs}.c"]), 1)
            h = (gam[:, :, None] * ex[m]).sum(1)
            hs = F.relu(F.linear(h, p[f"head.{gs}.U"], p[f"head.{gs}.u"]))
            logits[m] = hs @ p[f"head.{gs}.w"] + p[f"head.{gs}.beta"] + e["item_bias"][m, 0]
        return logits
