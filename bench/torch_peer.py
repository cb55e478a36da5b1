#!/usr/bin/python3
"""PyTorch performance peer for the Delta Studio benchmark.

Mirrors `buildTinyLm` / `BENCH` in native/demo/tiny-lm.ts layer for layer: a GPT-2 style pre-LN causal LM whose
backbone is frozen and whose q/v projections carry a LoRA branch, trained with AdamW plus gradient clipping.
Only speed and memory are compared, so the weights are drawn from torch's RNG, not from our Rng.

Run with Debian's interpreter (python3-torch from apt):
    /usr/bin/python3 bench/torch_peer.py --threads 2 --warmup 3 --iters 10
Prints exactly one JSON line on stdout.
"""
import argparse
import json
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class LoraConv1D(nn.Module):
    """GPT-2's Conv1D (weight stored [in, out], y = x @ W + b, as in our TS graph) plus an optional LoRA branch."""

    def __init__(self, din, dout, init_std, rank=0, alpha=0.0):
        super().__init__()
        self.dout = dout
        # Frozen backbone: N(0, init_std) weight, zero bias, like `normal`/`zeros` in tiny-lm.ts.
        self.weight = nn.Parameter(torch.randn(din, dout) * init_std, requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(dout), requires_grad=False)
        self.rank = rank
        if rank > 0:
            # PEFT's init: lora_A kaiming-uniform(a=sqrt(5)) == U(-1/sqrt(din), 1/sqrt(din)); lora_B zeros.
            bound = 1.0 / math.sqrt(din)
            self.lora_A = nn.Parameter(torch.empty(din, rank).uniform_(-bound, bound))
            self.lora_B = nn.Parameter(torch.zeros(rank, dout))
            self.scaling = alpha / rank

    def forward(self, x):
        # addmm on the flattened input, exactly as transformers' Conv1D does.
        shape = x.size()[:-1] + (self.dout,)
        y = torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight).view(shape)
        if self.rank > 0:
            y = y + (x @ self.lora_A) @ self.lora_B * self.scaling
        return y


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, std = cfg["d"], cfg["init_std"]
        self.h = cfg["heads"]
        self.dh = d // self.h

        def proj(name):
            r = cfg["rank"] if name in cfg["targets"] else 0
            return LoraConv1D(d, d, std, r, cfg["alpha"])

        # Separate q, k, v (not GPT-2's fused c_attn) because our graph keeps them separate with their own LoRA.
        self.q, self.k, self.v, self.o = proj("q"), proj("k"), proj("v"), proj("o")
        s = cfg["seq"]
        # Additive causal mask: 0 on and below the diagonal, -1e9 above (the same constant our graph adds).
        mask = torch.triu(torch.full((s, s), -1e9), diagonal=1)
        self.register_buffer("mask", mask, persistent=False)

    def _split_heads(self, t):
        b, s, _ = t.shape
        return t.view(b, s, self.h, self.dh).permute(0, 2, 1, 3)  # [B, H, S, dh]

    def forward(self, x):
        q, k, v = self._split_heads(self.q(x)), self._split_heads(self.k(x)), self._split_heads(self.v(x))
        # Explicit scores/softmax/matmul, as GPT-2's eager `_attn` (our graph has no fused attention either).
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.dh) + self.mask
        probs = F.softmax(scores, dim=-1)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        b, s = ctx.shape[:2]
        return self.o(ctx.view(b, s, -1))


class Mlp(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, std = cfg["d"], cfg["init_std"]
        self.fc_in = LoraConv1D(d, 4 * d, std)
        self.fc_out = LoraConv1D(4 * d, d, std)

    def forward(self, x):
        # Exact (erf) GELU, matching ONNX Gelu's default approximate="none" in our graph.
        return self.fc_out(F.gelu(self.fc_in(x)))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["d"]
        self.ln_1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = Mlp(cfg)

    def forward(self, x):
        # Pre-LN residual block, as GPT2Block.
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TinyLm(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        v, d, s, std = cfg["vocab"], cfg["d"], cfg["seq"], cfg["init_std"]
        self.vocab = v
        self.wte = nn.Parameter(torch.randn(v, d) * std)
        self.wpe = nn.Parameter(torch.randn(s, d) * std)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg["layers"]))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)
        # lm_head stored [D, V] without bias, as in our graph (GPT-2 ties it to wte; we do not).
        self.lm_head = nn.Parameter(torch.randn(d, v) * std)

    def forward(self, input_ids, labels):
        x = F.embedding(input_ids, self.wte) + self.wpe
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.lm_head
        # labels are already the next tokens (no shift), mean over all B*S positions like SoftmaxCrossEntropyLoss.
        return F.cross_entropy(logits.view(-1, self.vocab), labels.view(-1))


def freeze_backbone(model):
    """Only LoRA A/B train; everything else (embeddings, projections, LayerNorms, lm_head) is frozen."""
    trainable = []
    for name, p in model.named_parameters():
        is_lora = name.endswith("lora_A") or name.endswith("lora_B")
        p.requires_grad_(is_lora)
        if is_lora:
            trainable.append(p)
    return trainable


def median_ms(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--targets", default="q,v", help="comma-separated projections with LoRA, out of q,k,v,o")
    ap.add_argument("--init-std", type=float, default=0.02)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    if args.d % args.heads:
        ap.error(f"--d ({args.d}) must be divisible by --heads ({args.heads})")
    if args.iters < 1:
        ap.error("--iters must be at least 1")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = {
        "vocab": args.vocab, "d": args.d, "layers": args.layers, "heads": args.heads, "seq": args.seq,
        "batch": args.batch, "rank": args.rank, "alpha": args.alpha,
        "targets": [t for t in args.targets.split(",") if t], "dropout": 0.0, "init_std": args.init_std,
        "warmup": args.warmup, "iters": args.iters,
    }

    model = TinyLm(cfg)  # fp32 throughout; dropout 0, so there are no dropout layers at all
    model.train()
    params = freeze_backbone(model)
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)

    input_ids = torch.randint(0, args.vocab, (args.batch, args.seq), dtype=torch.int64)
    labels = torch.randint(0, args.vocab, (args.batch, args.seq), dtype=torch.int64)

    def forward():
        with torch.no_grad():
            return model(input_ids, labels)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss

    forward_ms = median_ms(forward, args.warmup, args.iters)
    train_step_ms = median_ms(train_step, args.warmup, args.iters)
    # ru_maxrss is in KiB on Linux.
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    print(json.dumps({
        "peer": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "forward_ms": round(forward_ms, 3), "train_step_ms": round(train_step_ms, 3),
        "peak_rss_bytes": peak_rss, "config": cfg,
    }))


if __name__ == "__main__":
    main()
