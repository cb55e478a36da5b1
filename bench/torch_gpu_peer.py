"""PyTorch + PEFT peer for `npm run bench:gpu` (bench/gpu.ts runs it, one configuration per process).

The same model folder (Llama-shaped, random bf16 weights, Hugging Face format), batch, length and optimizer as
Delta Studio's run: LoRA r=8, alpha 16 on q_proj/v_proj with AdamW (weight decay 0.01) and clipping at 1.0, or full
fine-tuning. Precisions:
  bf16: the forward under torch.autocast(bfloat16). LoRA: the frozen weights loaded in bfloat16, PEFT keeping the
        LoRA weights in float32 (its default), as PEFT users run LoRA on a GPU. Full fine-tuning: float32 weights
        and optimizer (automatic mixed precision), since AdamW on bfloat16 weights would lose small updates.
  fp32: everything in float32.
Random token ids, attention mask of ones, labels = ids (the model shifts them), as the Delta Studio side.

With transformers and peft importable, the model is transformers' LlamaForCausalLM with PEFT's LoRA. Only with
--smoke (a tiny model on the CPU, for the tests) and only when they are missing, a hand-written Llama and LoRA stand
in, and the output says so in "implementation".

Prints exactly one JSON line on stdout: tokens_per_sec, step_ms, final_loss, versions, implementation.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--method", choices=["lora", "full"], default="lora")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--device", default="cuda")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--smoke", action="store_true")
    return p.parse_args()


# --- the stand-in, for --smoke without transformers/peft: Llama as transformers computes it ---------------------------


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class LoraLinear(nn.Module):
    """nn.Linear without bias plus PEFT's LoRA branch: B·A·x·alpha/r, A kaiming-uniform, B zero."""

    def __init__(self, din, dout, rank=0, alpha=16.0):
        super().__init__()
        self.base = nn.Linear(din, dout, bias=False)
        self.rank = rank
        if rank:
            bound = 1.0 / math.sqrt(din)
            self.lora_A = nn.Parameter(torch.empty(rank, din).uniform_(-bound, bound))
            self.lora_B = nn.Parameter(torch.zeros(dout, rank))
            self.scale = alpha / rank

    def forward(self, x):
        y = self.base(x)
        if self.rank:
            y = y + F.linear(F.linear(x.to(self.lora_A.dtype), self.lora_A), self.lora_B).to(y.dtype) * self.scale
        return y


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def attention(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    # torch < 2.0 (Debian's 1.13): the same computation spelled out.
    s = q.shape[-2]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    causal = torch.ones(s, s, dtype=torch.bool, device=q.device).triu(1)
    return torch.softmax(scores.float().masked_fill(causal, float("-inf")), dim=-1).to(v.dtype) @ v


class Block(nn.Module):
    def __init__(self, c, rank):
        super().__init__()
        d, h, kv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        self.h, self.kv, self.hd = h, kv, c.get("head_dim", d // h)
        self.q_proj = LoraLinear(d, h * self.hd, rank)
        self.k_proj = LoraLinear(d, kv * self.hd)
        self.v_proj = LoraLinear(d, kv * self.hd, rank)
        self.o_proj = LoraLinear(h * self.hd, d)
        self.gate_proj = LoraLinear(d, c["intermediate_size"])
        self.up_proj = LoraLinear(d, c["intermediate_size"])
        self.down_proj = LoraLinear(c["intermediate_size"], d)
        self.input_layernorm = RMSNorm(d, c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(d, c["rms_norm_eps"])

    def forward(self, x, cos, sin):
        b, s, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(b, s, self.h, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(b, s, self.kv, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(b, s, self.kv, self.hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(self.h // self.kv, dim=1)
        v = v.repeat_interleave(self.h // self.kv, dim=1)
        a = attention(q, k, v)
        x = x + self.o_proj(a.transpose(1, 2).reshape(b, s, -1))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class TinyLlama(nn.Module):
    def __init__(self, c, rank):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Block(c, rank) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)

    def forward(self, input_ids, attention_mask, labels):
        s = input_ids.shape[1]
        hd = self.c.get("head_dim", self.c["hidden_size"] // self.c["num_attention_heads"])
        inv = 1.0 / (self.c.get("rope_theta", 10000.0) ** (torch.arange(0, hd, 2, device=input_ids.device).float() / hd))
        ang = torch.outer(torch.arange(s, device=input_ids.device).float(), inv)
        emb = torch.cat((ang, ang), dim=-1)
        x = self.embed_tokens(input_ids)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin)
        logits = self.lm_head(self.norm(x)).float()
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
        return loss


def stand_in(args, dtype):
    with open(os.path.join(args.model, "config.json")) as f:
        c = json.load(f)
    m = TinyLlama(c, 8 if args.method == "lora" else 0)
    for p in m.parameters():
        p.requires_grad_(args.method == "full")
    for name, p in m.named_parameters():
        if "lora_" in name:
            p.requires_grad_(True)
        elif dtype != torch.float32:
            p.data = p.data.to(dtype)
    what = "Llama + LoRA" if args.method == "lora" else "Llama"
    return m, f"hand-written {what} in plain torch (smoke run: transformers/peft are not installed)"


# --- the real thing -------------------------------------------------------------------------------------------------


def with_peft(args, dtype):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(args.model, torch_dtype=dtype, attn_implementation="sdpa")
    if args.method == "lora":
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
        model = get_peft_model(model, cfg)
    return model, "transformers LlamaForCausalLM" + (" + PEFT LoRA" if args.method == "lora" else "")


def main():
    args = parse()
    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.precision == "bf16" and args.method == "lora" else torch.float32
    try:
        import transformers  # noqa: F401

        if args.method == "lora":
            import peft  # noqa: F401
        have = True
    except ImportError:
        have = False
    if not have and not args.smoke:
        print(json.dumps({"error": "transformers and peft are needed (pip install transformers peft)"}))
        sys.exit(1)
    model, impl = with_peft(args, dtype) if have else stand_in(args, dtype)
    dev = torch.device(args.device)
    model.to(dev)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    with open(os.path.join(args.model, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, vocab, (args.batch, args.seq), generator=g).to(dev)
    mask = torch.ones_like(ids)

    def step():
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            out = model(input_ids=ids, attention_mask=mask, labels=ids)
            loss = out if torch.is_tensor(out) else out.loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    loss = None
    for _ in range(args.warmup):
        loss = step()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync()
    ms = (time.perf_counter() - t0) * 1000 / args.steps
    versions = {"torch": torch.__version__}
    for m in ("transformers", "peft"):
        try:
            versions[m] = __import__(m).__version__
        except ImportError:
            versions[m] = None
    out = {
        "tokens_per_sec": args.batch * args.seq * 1000 / ms,
        "step_ms": ms,
        "steps": args.steps,
        "final_loss": float(loss),
        "device": dev.type,
        "trainable_params": sum(p.numel() for p in params),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "implementation": impl,
        "versions": versions,
    }
    if dev.type == "cuda":
        out["torch_max_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
        out["cuda"] = torch.version.cuda
    print(json.dumps(out))


if __name__ == "__main__":
    main()
