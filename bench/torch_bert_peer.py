#!/usr/bin/python3
"""PyTorch performance peer for the Delta Studio BERT benchmark.

Mirrors transformers' `BertForSequenceClassification` (modeling_bert, eager attention) layer for layer: a post-LN
encoder with word + position + token-type embeddings, a tanh pooler on token 0 and a Linear(hidden, labels) head.
As with PEFT's `get_peft_model(model, LoraConfig(target_modules=["query", "value"], modules_to_save=["classifier"]))`,
every layer's attention.self.query / attention.self.value carries a LoRA branch, the backbone is frozen and the
classifier trains too. Trained with AdamW plus gradient clipping, fp32, eval mode (no dropout).
Only speed and memory are compared, so the weights are drawn from torch's RNG (normal std 0.02, seeded), not from our Rng.

Run with Debian's interpreter (python3-torch from apt; no transformers needed):
    /usr/bin/python3 bench/torch_bert_peer.py --threads 2 --warmup 2 --iters 5
Prints exactly one JSON line on stdout.
"""
import argparse
import contextlib
import json
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


@contextlib.contextmanager
def no_init_weights():
    """Skip torch's default parameter init while the model is built, as `from_pretrained` does for weights it is
    about to overwrite from the checkpoint (transformers' `no_init_weights` patches these same torch.nn.init calls)."""
    names = ["uniform_", "normal_", "trunc_normal_", "constant_", "xavier_uniform_", "xavier_normal_",
             "kaiming_uniform_", "kaiming_normal_", "uniform", "normal", "xavier_uniform", "xavier_normal",
             "kaiming_uniform", "kaiming_normal"]
    saved = {n: getattr(nn.init, n) for n in names if hasattr(nn.init, n)}

    def skip(tensor, *args, **kwargs):
        return tensor

    try:
        for n in saved:
            setattr(nn.init, n, skip)
        yield
    finally:
        for n, fn in saved.items():
            setattr(nn.init, n, fn)


class LoraLinear(nn.Module):
    """PEFT's lora.Linear: the frozen base nn.Linear plus lora_B(lora_A(x)) * (alpha / r)."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base_layer = base
        din, dout = base.in_features, base.out_features
        # PEFT's init: lora_A kaiming_uniform_(a=sqrt(5)) on [r, in] == U(-1/sqrt(in), 1/sqrt(in)); lora_B zeros.
        bound = 1.0 / math.sqrt(din)
        self.lora_A = nn.Parameter(torch.empty(rank, din).uniform_(-bound, bound))  # nn.Linear(in, r).weight
        self.lora_B = nn.Parameter(torch.zeros(dout, rank))  # nn.Linear(r, out).weight
        self.scaling = alpha / rank

    def forward(self, x):
        return self.base_layer(x) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling


class BertEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden"]
        self.word_embeddings = nn.Embedding(cfg["vocab"], d, padding_idx=0)
        self.position_embeddings = nn.Embedding(cfg["max_pos"], d)
        self.token_type_embeddings = nn.Embedding(cfg["type_vocab"], d)
        self.LayerNorm = nn.LayerNorm(d, eps=cfg["ln_eps"])
        self.register_buffer("position_ids", torch.arange(cfg["max_pos"]).expand((1, -1)), persistent=False)

    def forward(self, input_ids, token_type_ids):
        s = input_ids.size(1)
        # Same order of additions as modeling_bert: (word + token_type) + absolute position, then LayerNorm.
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(self.position_ids[:, :s])
        return self.LayerNorm(x)


class BertSelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden"]
        self.h = cfg["heads"]
        self.dh = d // self.h
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)

    def _split_heads(self, t):
        b, s, _ = t.shape
        return t.view(b, s, self.h, self.dh).permute(0, 2, 1, 3)  # [B, H, S, dh]

    def forward(self, x, ext_mask):
        q, k, v = self._split_heads(self.query(x)), self._split_heads(self.key(x)), self._split_heads(self.value(x))
        # Eager BertSelfAttention: (q @ k^T) / sqrt(dh) + additive mask, softmax, @ v.
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.dh) + ext_mask
        probs = F.softmax(scores, dim=-1)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        b, s = ctx.shape[:2]
        return ctx.view(b, s, -1)


class BertSelfOutput(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden"]
        self.dense = nn.Linear(d, d)
        self.LayerNorm = nn.LayerNorm(d, eps=cfg["ln_eps"])

    def forward(self, h, residual):
        return self.LayerNorm(self.dense(h) + residual)  # post-LN


class BertAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertSelfOutput(cfg)

    def forward(self, x, ext_mask):
        return self.output(self.self(x, ext_mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg["hidden"], cfg["intermediate"])

    def forward(self, x):
        return F.gelu(self.dense(x))  # hidden_act="gelu": exact erf GELU


class BertOutput(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg["intermediate"], cfg["hidden"])
        self.LayerNorm = nn.LayerNorm(cfg["hidden"], eps=cfg["ln_eps"])

    def forward(self, h, residual):
        return self.LayerNorm(self.dense(h) + residual)  # post-LN


class BertLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg)

    def forward(self, x, ext_mask):
        a = self.attention(x, ext_mask)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg["layers"]))

    def forward(self, x, ext_mask):
        for layer in self.layer:
            x = layer(x, ext_mask)
        return x


class BertPooler(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg["hidden"], cfg["hidden"])

    def forward(self, x):
        return torch.tanh(self.dense(x[:, 0]))


class BertModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg)

    def forward(self, input_ids, attention_mask, token_type_ids):
        x = self.embeddings(input_ids, token_type_ids)
        # get_extended_attention_mask: [B, 1, 1, S], (1 - mask) * finfo(float32).min.
        ext = attention_mask[:, None, None, :].to(x.dtype)
        ext = (1.0 - ext) * torch.finfo(x.dtype).min
        return self.pooler(self.encoder(x, ext))


class BertForSequenceClassification(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.num_labels = cfg["labels"]
        self.bert = BertModel(cfg)
        self.classifier = nn.Linear(cfg["hidden"], cfg["labels"])

    def forward(self, input_ids, attention_mask, token_type_ids, labels):
        logits = self.classifier(self.bert(input_ids, attention_mask, token_type_ids))
        # problem_type "single_label_classification" (num_labels > 1, integer labels): mean CrossEntropyLoss.
        return F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))


def make_state_dict(cfg):
    """Random weights following BertPreTrainedModel._init_weights: Linear/Embedding N(0, 0.02), biases zero,
    LayerNorm weight 1 / bias 0, the padding row of word_embeddings zeroed. Keys match BertForSequenceClassification."""
    std, d, di = cfg["init_std"], cfg["hidden"], cfg["intermediate"]
    sd = {}

    def linear(prefix, din, dout):
        sd[prefix + ".weight"] = torch.randn(dout, din) * std
        sd[prefix + ".bias"] = torch.zeros(dout)

    def layer_norm(prefix):
        sd[prefix + ".weight"] = torch.ones(d)
        sd[prefix + ".bias"] = torch.zeros(d)

    word = torch.randn(cfg["vocab"], d) * std
    word[0].zero_()  # padding_idx=0
    sd["bert.embeddings.word_embeddings.weight"] = word
    sd["bert.embeddings.position_embeddings.weight"] = torch.randn(cfg["max_pos"], d) * std
    sd["bert.embeddings.token_type_embeddings.weight"] = torch.randn(cfg["type_vocab"], d) * std
    layer_norm("bert.embeddings.LayerNorm")
    for i in range(cfg["layers"]):
        p = f"bert.encoder.layer.{i}"
        for name in ("query", "key", "value"):
            linear(f"{p}.attention.self.{name}", d, d)
        linear(f"{p}.attention.output.dense", d, d)
        layer_norm(f"{p}.attention.output.LayerNorm")
        linear(f"{p}.intermediate.dense", d, di)
        linear(f"{p}.output.dense", di, d)
        layer_norm(f"{p}.output.LayerNorm")
    linear("bert.pooler.dense", d, d)
    linear("classifier", d, cfg["labels"])
    return sd


def add_lora_and_freeze(model, rank, alpha):
    """Wrap every attention.self.query/value in LoRA, freeze everything but LoRA A/B and the classifier head."""
    for layer in model.bert.encoder.layer:
        attn = layer.attention.self
        attn.query = LoraLinear(attn.query, rank, alpha)
        attn.value = LoraLinear(attn.value, rank, alpha)
    trainable = []
    for name, p in model.named_parameters():
        train = name.endswith("lora_A") or name.endswith("lora_B") or name.startswith("classifier.")
        p.requires_grad_(train)
        if train:
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
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--intermediate", type=int, default=3072)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--max-pos", type=int, default=512)
    ap.add_argument("--labels", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--pad", type=int, default=16, help="trailing padded positions in half of the rows")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--init-std", type=float, default=0.02)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args()
    if args.hidden % args.heads:
        ap.error(f"--hidden ({args.hidden}) must be divisible by --heads ({args.heads})")
    if args.seq > args.max_pos:
        ap.error(f"--seq ({args.seq}) must not exceed --max-pos ({args.max_pos})")
    if not 0 <= args.pad < args.seq:
        ap.error(f"--pad ({args.pad}) must be in [0, --seq)")
    if args.iters < 1:
        ap.error("--iters must be at least 1")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = {
        "layers": args.layers, "hidden": args.hidden, "heads": args.heads, "intermediate": args.intermediate,
        "vocab": args.vocab, "max_pos": args.max_pos, "type_vocab": 2, "labels": args.labels,
        "batch": args.batch, "seq": args.seq, "pad": args.pad, "rank": args.rank, "alpha": args.alpha,
        "targets": ["query", "value"], "modules_to_save": ["classifier"], "dropout": 0.0, "ln_eps": 1e-12,
        "init_std": args.init_std, "lr": 1e-4, "weight_decay": 0.01, "max_grad_norm": 1.0,
        "warmup": args.warmup, "iters": args.iters,
    }

    # The "checkpoint" lives in memory before the clock starts, like weights already read from disk.
    state_dict = make_state_dict(cfg)

    b, s = args.batch, args.seq
    input_ids = torch.randint(0, args.vocab, (b, s), dtype=torch.int64)
    attention_mask = torch.ones(b, s, dtype=torch.int64)
    if args.pad:
        attention_mask[: b // 2, s - args.pad:] = 0  # first half of the rows end in padding
    token_type_ids = torch.zeros(b, s, dtype=torch.int64)
    labels = torch.randint(0, args.labels, (b,), dtype=torch.int64)

    t_setup = time.perf_counter()
    with no_init_weights():
        model = BertForSequenceClassification(cfg)  # fp32 throughout
    model.load_state_dict(state_dict)
    del state_dict  # from_pretrained drops the loaded state dict too
    params = add_lora_and_freeze(model, args.rank, args.alpha)
    model.eval()  # no dropout (PEFT training of a dropout-0 config would behave the same)
    opt = torch.optim.AdamW(params, lr=cfg["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg["weight_decay"])

    def forward():
        with torch.no_grad():
            return model(input_ids, attention_mask, token_type_ids, labels)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids, attention_mask, token_type_ids, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg["max_grad_norm"])
        opt.step()
        return loss

    train_step()
    setup_to_first_step_ms = (time.perf_counter() - t_setup) * 1e3

    cfg["total_params"] = sum(p.numel() for p in model.parameters())
    cfg["trainable_params"] = sum(p.numel() for p in params)

    forward_ms = median_ms(forward, args.warmup, args.iters)
    train_step_ms = median_ms(train_step, args.warmup, args.iters)
    # ru_maxrss is in KiB on Linux.
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    print(json.dumps({
        "peer": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "forward_ms": round(forward_ms, 3), "train_step_ms": round(train_step_ms, 3),
        "setup_to_first_step_ms": round(setup_to_first_step_ms, 3),
        "peak_rss_bytes": peak_rss, "config": cfg,
    }))


if __name__ == "__main__":
    main()
