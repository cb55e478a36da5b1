#!/usr/bin/python3
"""PyTorch training peer for the Delta Studio benchmark: the demo's LoRA run, end to end.

Trains, in PyTorch, what `delta-studio demo` / `npm run demo` trains in its first run ("LoRA r=8, pretrained
backbone"): the Llama-style backbone in native/demo/backbone/ as transformers' LlamaForSequenceClassification
(a new `score` Linear(hidden, 2, bias=False), N(0, 0.02), applied to the hidden state of each row's last real
token, cross-entropy loss), with LoRA r=8 alpha=16 on every layer's self_attn.q_proj and v_proj, the backbone
frozen, on native/demo/reviews-train.csv (800 rows), 15 epochs of batches of 32 (375 steps), AdamW(lr 5e-3,
weight decay 0.01) with gradient clipping at 1.0 and a linear schedule with 10% warmup, then evaluates accuracy
on native/demo/reviews-test.csv.

Nothing here needs transformers, tokenizers or safetensors: the forward pass is a functional Llama (RMSNorm,
rotate_half rotary embeddings, grouped-query attention, SwiGLU, tied embeddings), the tokenizer is the folder's
word-level WordPiece (BertNormalizer lowercase + BertPreTokenizer + [SEP]), and the weights are read with a small
safetensors reader.

Batching mirrors native/train/batching.ts (shuffle, sort by length within windows of 50 batches, shuffle the
batches, pad each batch to its longest row), with torch.Generator(seed 1) in place of our Rng, so the order
differs but the padding work is comparable. `--bucket-window 1` gives a plain shuffle.

Run with Debian's interpreter (python3-torch from apt):
    /usr/bin/python3 bench/torch_train_peer.py --threads 2
Prints exactly one JSON line on stdout.
"""
import argparse
import csv
import json
import math
import os
import resource
import statistics
import struct
import time
import unicodedata

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "native", "demo")
BACKBONE = os.path.join(DEMO, "backbone")
LABELS = ["negative", "positive"]  # the dataset's label vocabulary, sorted: negative -> 0, positive -> 1
FMIN = torch.finfo(torch.float32).min


# ---------------------------------------------------------------------------------------------
# safetensors reader
# ---------------------------------------------------------------------------------------------
_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32}


def read_safetensors(path):
    """8-byte little-endian header length, JSON header, then raw little-endian tensor data."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        buf = bytearray(data[start:end])
        t = torch.frombuffer(buf, dtype=dtype) if end > start else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).to(torch.float32 if dtype.is_floating_point else dtype).clone()
    return out


# ---------------------------------------------------------------------------------------------
# Tokenizer: BertNormalizer(lowercase) + BertPreTokenizer + word-level WordPiece + [SEP]
# ---------------------------------------------------------------------------------------------
def _is_control(ch):
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch).startswith("C")


def _is_whitespace(ch):
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_punct(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_chinese(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class Tokenizer:
    def __init__(self, folder):
        with open(os.path.join(folder, "tokenizer.json"), encoding="utf-8") as f:
            t = json.load(f)
        model = t["model"]
        if model["type"] != "WordPiece":
            raise ValueError(f"expected a WordPiece tokenizer, got {model['type']}")
        self.vocab = model["vocab"]
        self.unk = self.vocab[model.get("unk_token", "[UNK]")]
        self.prefix = model.get("continuing_subword_prefix", "##")
        self.max_chars = model.get("max_input_chars_per_word", 100)
        self.sep = self.vocab["[SEP]"]
        self.pad = self.vocab["[PAD]"]
        norm = t.get("normalizer") or {}
        self.lowercase = norm.get("lowercase", True)
        strip = norm.get("strip_accents")
        self.strip_accents = self.lowercase if strip is None else strip

    def normalize(self, text):
        out = []
        for ch in text:  # clean_text
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or _is_control(ch):
                continue
            out.append(" " if _is_whitespace(ch) else ch)
        out2 = []
        for ch in out:  # handle_chinese_chars
            out2.append(f" {ch} " if _is_chinese(ord(ch)) else ch)
        s = "".join(out2)
        if self.strip_accents:
            s = "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")
        if self.lowercase:
            s = s.lower()
        return s

    @staticmethod
    def pre_tokenize(s):
        words, cur = [], []
        for ch in s:
            if _is_whitespace(ch):
                if cur:
                    words.append("".join(cur))
                    cur = []
            elif _is_punct(ch):
                if cur:
                    words.append("".join(cur))
                    cur = []
                words.append(ch)
            else:
                cur.append(ch)
        if cur:
            words.append("".join(cur))
        return words

    def wordpiece(self, word):
        if len(word) > self.max_chars:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return [self.unk]
            ids.append(found)
            start = end
        return ids

    def encode(self, text, max_length):
        ids = [i for w in self.pre_tokenize(self.normalize(text)) for i in self.wordpiece(w)]
        # Truncation keeps room for the post-processor's [SEP], as tokenizers does.
        return ids[: max(0, max_length - 1)] + [self.sep]


def load_rows(path, tok, max_length):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    index = {l: i for i, l in enumerate(LABELS)}
    return [(tok.encode(r["text"], max_length), index[r["label"]]) for r in rows]


def collate(rows, pad_id):
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(rows), width), dtype=torch.int64)
    for r, (x, _) in enumerate(rows):
        ids[r, : len(x)] = torch.tensor(x, dtype=torch.int64)
        mask[r, : len(x)] = 1
    labels = torch.tensor([y for _, y in rows], dtype=torch.int64)
    return ids, mask, labels


def plan_epoch(lengths, batch_size, gen, window):
    """batching.ts's planEpoch with torch.Generator: shuffle, sort by length within windows, shuffle batches."""
    order = torch.randperm(len(lengths), generator=gen).tolist()
    span = batch_size * max(1, window)
    batches = []
    for w in range(0, len(order), span):
        chunk = order[w:w + span]
        if window > 1:
            chunk = sorted(chunk, key=lambda i: (lengths[i], i))
        batches.extend(chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size))
    perm = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in perm]


# ---------------------------------------------------------------------------------------------
# Model: LlamaForSequenceClassification with LoRA on q_proj / v_proj
# ---------------------------------------------------------------------------------------------
class LlamaClassifier:
    def __init__(self, cfg, weights, num_labels, rank, alpha):
        self.cfg = cfg
        self.W = weights  # frozen backbone (requires_grad False)
        self.d = cfg["hidden_size"]
        self.h = cfg["num_attention_heads"]
        self.kv = cfg.get("num_key_value_heads", self.h)
        self.dh = cfg.get("head_dim", self.d // self.h)
        self.layers = cfg["num_hidden_layers"]
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        self.scaling = alpha / rank
        theta = float(cfg.get("rope_theta", 10000.0))
        inv_freq = 1.0 / (theta ** (torch.arange(0, self.dh, 2, dtype=torch.float32) / self.dh))
        pos = torch.arange(cfg.get("max_position_embeddings", 2048), dtype=torch.float32)
        freqs = torch.outer(pos, inv_freq)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.cos, self.sin = emb.cos(), emb.sin()
        self.embed = weights["model.embed_tokens.weight"]  # tied lm_head: unused for classification

        # Trainable: LoRA A [r, in] ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming-uniform a=sqrt(5)), B [out, r] zeros;
        # score [num_labels, hidden] ~ N(0, initializer_range).
        self.lora = {}
        for i in range(self.layers):
            for proj in ("q_proj", "v_proj"):
                w = weights[f"model.layers.{i}.self_attn.{proj}.weight"]
                out_f, in_f = w.shape
                bound = 1.0 / math.sqrt(in_f)
                a = torch.empty(rank, in_f).uniform_(-bound, bound).requires_grad_(True)
                b = torch.zeros(out_f, rank).requires_grad_(True)
                self.lora[(i, proj)] = (a, b)
        std = float(cfg.get("initializer_range", 0.02))
        self.score = (torch.randn(num_labels, self.d) * std).requires_grad_(True)

    def trainable(self):
        return [t for ab in self.lora.values() for t in ab] + [self.score]

    def rms(self, x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    @staticmethod
    def rotate_half(x):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([-x2, x1], dim=-1)

    def proj(self, x, i, name):
        y = F.linear(x, self.W[f"model.layers.{i}.self_attn.{name}.weight"])
        ab = self.lora.get((i, name))
        if ab is not None:
            a, b = ab
            y = y + F.linear(F.linear(x, a), b) * self.scaling
        return y

    def forward(self, ids, mask):
        B, L = ids.shape
        x = F.embedding(ids, self.embed)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cos, sin = self.cos[pos].unsqueeze(1), self.sin[pos].unsqueeze(1)  # [B, 1, L, dh]
        causal = torch.ones(L, L, dtype=torch.bool).tril()
        allowed = causal[None, None] & mask[:, None, None, :].bool()
        bias = torch.zeros(B, 1, L, L).masked_fill(~allowed, FMIN)
        rep = self.h // self.kv
        for i in range(self.layers):
            p = f"model.layers.{i}."
            hs = self.rms(x, self.W[p + "input_layernorm.weight"])
            q = self.proj(hs, i, "q_proj").view(B, L, self.h, self.dh).transpose(1, 2)
            k = self.proj(hs, i, "k_proj").view(B, L, self.kv, self.dh).transpose(1, 2)
            v = self.proj(hs, i, "v_proj").view(B, L, self.kv, self.dh).transpose(1, 2)
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            if rep > 1:  # repeat_kv: query head h reads kv head h // rep
                k = k.repeat_interleave(rep, dim=1)
                v = v.repeat_interleave(rep, dim=1)
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.dh) + bias
            probs = F.softmax(scores, dim=-1)
            ctx = (probs @ v).transpose(1, 2).reshape(B, L, self.h * self.dh)
            x = x + F.linear(ctx, self.W[p + "self_attn.o_proj.weight"])
            hs = self.rms(x, self.W[p + "post_attention_layernorm.weight"])
            gate = F.linear(hs, self.W[p + "mlp.gate_proj.weight"])
            up = F.linear(hs, self.W[p + "mlp.up_proj.weight"])
            x = x + F.linear(F.silu(gate) * up, self.W[p + "mlp.down_proj.weight"])
        x = self.rms(x, self.W["model.norm.weight"])
        last = mask.sum(-1) - 1  # each row's last real token
        pooled = x[torch.arange(B), last]
        return F.linear(pooled, self.score)


def linear_schedule(step, lr, warmup, total):
    """transformers' get_linear_schedule_with_warmup at `step` optimizer steps already taken."""
    if step < warmup:
        return lr * step / max(1, warmup)
    return lr * max(0.0, (total - step) / max(1, total - warmup))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--warmup", type=float, default=0.1, help="warmup fraction of the total steps")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bucket-window", type=int, default=50,
                    help="sort by length within windows of this many batches, as batching.ts; 1 = plain shuffle")
    args = ap.parse_args()
    if args.epochs < 1 or args.batch_size < 1:
        ap.error("--epochs and --batch-size must be at least 1")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    with open(os.path.join(BACKBONE, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    weights = read_safetensors(os.path.join(BACKBONE, "model.safetensors"))
    tok = Tokenizer(BACKBONE)
    train_rows = load_rows(os.path.join(DEMO, "reviews-train.csv"), tok, args.max_length)
    test_rows = load_rows(os.path.join(DEMO, "reviews-test.csv"), tok, args.max_length)
    lengths = [len(ids) for ids, _ in train_rows]

    model = LlamaClassifier(cfg, weights, len(LABELS), rank=8, alpha=16)
    params = model.trainable()
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(train_rows) / args.batch_size)
    total = args.epochs * steps_per_epoch
    warmup = round(args.warmup * total) if args.warmup < 1 else int(args.warmup)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: linear_schedule(s, 1.0, warmup, total))
    gen = torch.Generator().manual_seed(args.seed)

    step_ms, tokens, steps = [], 0, 0
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        for batch in plan_epoch(lengths, args.batch_size, gen, args.bucket_window):
            ts = time.perf_counter()
            ids, mask, labels = collate([train_rows[i] for i in batch], tok.pad)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model.forward(ids, mask), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            if not math.isfinite(loss.item()):
                raise SystemExit(f"diverged at step {steps + 1}: loss {loss.item()}")
            tokens += sum(lengths[i] for i in batch)
            steps += 1
            step_ms.append((time.perf_counter() - ts) * 1e3)
    seconds = time.perf_counter() - t0

    correct = 0
    with torch.no_grad():
        for i in range(0, len(test_rows), args.batch_size):
            ids, mask, labels = collate(test_rows[i:i + args.batch_size], tok.pad)
            correct += int((model.forward(ids, mask).argmax(-1) == labels).sum())
    accuracy = correct / len(test_rows)
    # ru_maxrss is in KiB on Linux.
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    print(json.dumps({
        "peer": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "steps": steps, "seconds": round(seconds, 3), "tokens_per_sec": round(tokens / seconds, 1),
        "step_ms_median": round(statistics.median(step_ms), 3), "peak_rss_bytes": peak_rss,
        "accuracy": round(accuracy, 4),
    }))


if __name__ == "__main__":
    main()
