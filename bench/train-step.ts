// `npm run bench`: the training step of a fixed model (d=256, 4 layers, seq 128, batch 16, vocab 4096, LoRA r=8
// on q and v) in Delta Studio's engine and, when Debian's python3-torch is installed, the same model in PyTorch,
// measured in the same run. Prints one JSON object.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH } from '../native/demo/tiny-lm.js';
import { ortVersion } from '../native/runtime/providers.js';

const BATCH = 16;
const THREADS = cpus().length;
const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));

interface Shape {
  d: number;
  layers: number;
  seq: number;
  ffn: number;
  rank: number;
  head: number;
}

/**
 * Multiply-adds counted as 2 FLOPs. Forward per token: per layer q,k,v,o (8D²), MLP (4DF), LoRA on q and v (8Dr),
 * attention scores and context over all S positions (4SD); plus an LM head (2DV, none for a classifier). Backward:
 * input gradients of every product between the loss and the lowest trainable parameter (all layers above layer 0
 * and the head; in layer 0 the MLP, the output projection and the q/v side of attention), plus LoRA weight
 * gradients.
 */
function flopsPerToken(m: Shape): { forward: number; train: number } {
  const { d: D, layers: L, seq: S, ffn: F, rank: r, head } = m;
  const layer = 8 * D * D + 4 * D * F + 8 * D * r + 4 * S * D;
  const forward = L * layer + 2 * D * head;
  const backward = (L - 1) * layer + 2 * D * head + (2 * D * D + 4 * D * F + 6 * S * D) + L * 2 * 6 * D * r;
  return { forward, train: forward + backward };
}

/**
 * This CPU's float32 peak, measured: bench/fma-peak.c runs independent FMA chains on the widest vectors on every
 * core (cores × clock × FMA units × lanes × 2, with the clock the CPU really runs at). Without a C compiler, an
 * estimate from /proc/cpuinfo's nominal clock (lower than a boosting CPU's real one).
 */
function cpuPeak(): { gflops: number; how: string } {
  const exe = join(tmpdir(), `delta-studio-fma-peak-${process.pid}`);
  const cc = spawnSync('cc', ['-O3', '-funroll-loops', '-pthread', '-o', exe, here('./fma-peak.c')], {
    encoding: 'utf8',
  });
  if (cc.status === 0) {
    const r = JSON.parse(execFileSync(exe, [String(THREADS)], { encoding: 'utf8' }));
    rmSync(exe, { force: true });
    return {
      gflops: r.gflops,
      how: `measured by bench/fma-peak.c: ${r.threads} threads of independent ${r.vector_bits}-bit FMA chains`,
    };
  }
  const info = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const mhz = Number(/cpu MHz\s*:\s*([\d.]+)/.exec(info)?.[1] ?? cpus()[0].speed);
  const flags = /flags\s*:\s*(.*)/.exec(info)?.[1].split(' ') ?? [];
  const perCycle = flags.includes('avx512f') ? 64 : flags.includes('avx2') ? 32 : 16;
  return {
    gflops: (THREADS * mhz * perCycle) / 1000,
    how: `estimated (no C compiler): ${THREADS} cores × ${mhz} MHz nominal × ${perCycle} FLOP/cycle`,
  };
}

function torchAvailable(): boolean {
  return spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
}

const tokens = BATCH * BENCH.seq;
const fl = flopsPerToken({
  d: BENCH.d,
  layers: BENCH.layers,
  seq: BENCH.seq,
  ffn: 4 * BENCH.d,
  rank: BENCH.rank,
  head: BENCH.vocab,
});
const peak = cpuPeak();
const runOrt = (...extra: string[]) =>
  JSON.parse(
    execFileSync(
      process.execPath,
      ['--import', 'tsx', here('./ort-run.ts'), '--batch', String(BATCH), '--threads', String(THREADS), ...extra],
      { encoding: 'utf8' },
    )
      .trim()
      .split('\n')
      .pop()!,
  );
const ort = { ...runOrt(), ...runOrt('--gemm') };
const describe = (forwardMs: number, trainMs: number) => ({
  forward_ms: forwardMs,
  train_step_ms: trainMs,
  train_over_forward: trainMs / forwardMs,
  tokens_per_sec: tokens / (trainMs / 1000),
  train_gflops: (fl.train * tokens) / (trainMs * 1e6),
  forward_gflops: (fl.forward * tokens) / (forwardMs * 1e6),
});
const ours = {
  ...describe(ort.forward_ms, ort.train_step_ms),
  peak_rss_bytes: ort.peak_rss_bytes,
  graph_nodes: ort.nodes,
  onnxruntime: ortVersion(),
};
/** The machine the numbers are from: figures from another CPU are not these. */
function machine(): { cpu: string; cores: number; flags: string; node: string; platform: string } {
  const info = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const flags = /flags\s*:\s*(.*)/.exec(info)?.[1].split(' ') ?? [];
  return {
    cpu: /model name\s*:\s*(.*)/.exec(info)?.[1].trim() ?? cpus()[0]?.model ?? 'unknown',
    cores: THREADS,
    flags: ['avx512f', 'avx512_bf16', 'avx2', 'fma'].filter((f) => flags.includes(f)).join(' '),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
}

const result: Record<string, unknown> = {
  machine: machine(),
  config: { ...BENCH, batch: BATCH, threads: THREADS, tokens_per_step: tokens, flops_per_token: fl },
  cpu_peak: { gflops: peak.gflops, how: peak.how, gemm_gflops_measured: ort.gemm_gflops },
  delta_studio: {
    ...ours,
    fraction_of_peak: ours.train_gflops / peak.gflops,
    fraction_of_gemm: ours.train_gflops / ort.gemm_gflops,
  },
};
if (torchAvailable()) {
  const py = JSON.parse(
    execFileSync(
      '/usr/bin/python3',
      [
        here('./torch_peer.py'),
        '--vocab',
        String(BENCH.vocab),
        '--d',
        String(BENCH.d),
        '--layers',
        String(BENCH.layers),
        '--heads',
        String(BENCH.heads),
        '--seq',
        String(BENCH.seq),
        '--batch',
        String(BATCH),
        '--rank',
        String(BENCH.rank),
        '--alpha',
        String(BENCH.alpha),
        '--threads',
        String(THREADS),
      ],
      { encoding: 'utf8' },
    )
      .trim()
      .split('\n')
      .pop()!,
  );
  result.pytorch = { ...describe(py.forward_ms, py.train_step_ms), peak_rss_bytes: py.peak_rss_bytes, torch: py.torch };
  result.ratio = {
    train_step_speedup: py.train_step_ms / ort.train_step_ms,
    forward_speedup: py.forward_ms / ort.forward_ms,
    peak_rss: ort.peak_rss_bytes / py.peak_rss_bytes,
  };
} else {
  result.pytorch = null;
  result.note =
    'PyTorch peer skipped: /usr/bin/python3 cannot import torch (apt-get install -y python3-torch libopenblas0-pthread)';
}
// BERT-base-shaped classifier read from a model folder, LoRA r=8 on query/value plus the new head.
const BERT = { layers: 12, hidden: 768, heads: 12, batch: 8, seq: 128, rank: 8 };
const bertFl = flopsPerToken({
  d: BERT.hidden,
  layers: BERT.layers,
  seq: BERT.seq,
  ffn: 4 * BERT.hidden,
  rank: BERT.rank,
  head: 0,
});
const bertTokens = BERT.batch * BERT.seq;
const lastLine = (out: string) => JSON.parse(out.trim().split('\n').pop()!);
const bertDir = lastLine(
  execFileSync(process.execPath, ['--import', 'tsx', here('./bert-ort.ts'), '--make'], { encoding: 'utf8' }),
).dir;
const bertOrt = lastLine(
  execFileSync(
    process.execPath,
    ['--import', 'tsx', here('./bert-ort.ts'), '--dir', bertDir, '--threads', String(THREADS)],
    { encoding: 'utf8' },
  ),
);
const describeBert = (r: {
  forward_ms: number;
  train_step_ms: number;
  setup_to_first_step_ms: number;
  peak_rss_bytes: number;
}) => ({
  forward_ms: r.forward_ms,
  train_step_ms: r.train_step_ms,
  train_over_forward: r.train_step_ms / r.forward_ms,
  tokens_per_sec: bertTokens / (r.train_step_ms / 1000),
  train_gflops: (bertFl.train * bertTokens) / (r.train_step_ms * 1e6),
  setup_to_first_step_ms: r.setup_to_first_step_ms,
  peak_rss_bytes: r.peak_rss_bytes,
});
const bert: Record<string, unknown> = {
  config: { ...BERT, vocab: 30522, flops_per_token: bertFl },
  delta_studio: { ...describeBert(bertOrt), trainable_params: bertOrt.trainable_params },
};
if (torchAvailable()) {
  const py = JSON.parse(
    execFileSync('/usr/bin/python3', [here('./torch_bert_peer.py'), '--threads', String(THREADS)], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .pop()!,
  );
  bert.pytorch = { ...describeBert(py), torch: py.torch };
  bert.ratio = {
    train_step_speedup: py.train_step_ms / bertOrt.train_step_ms,
    forward_speedup: py.forward_ms / bertOrt.forward_ms,
    setup_to_first_step_speedup: py.setup_to_first_step_ms / bertOrt.setup_to_first_step_ms,
    peak_rss: bertOrt.peak_rss_bytes / py.peak_rss_bytes,
  };
}
result.bert_base = bert;

// End to end: `train` as the demo runs it (LoRA on the embedded backbone) vs the same loop in PyTorch.
const e2eOrt = lastLine(
  execFileSync(process.execPath, ['--import', 'tsx', here('./e2e-ort.ts')], { encoding: 'utf8' }),
);
const e2e: Record<string, unknown> = {
  config: {
    model: 'native/demo/backbone',
    method: 'lora r=8 q,v + head',
    examples: 800,
    epochs: 15,
    batch: 32,
    max_length: 32,
  },
  delta_studio: e2eOrt,
};
if (torchAvailable()) {
  // PyTorch's small-batch loop can be faster on one thread than on two here: the peer is the better of both.
  const runs = [1, THREADS]
    .filter((t, i, a) => a.indexOf(t) === i)
    .map((t) =>
      lastLine(
        execFileSync('/usr/bin/python3', [here('./torch_train_peer.py'), '--threads', String(t)], { encoding: 'utf8' }),
      ),
    );
  const py = runs.reduce((a, b) => (b.tokens_per_sec > a.tokens_per_sec ? b : a));
  e2e.pytorch = {
    ...py,
    all_thread_counts: runs.map((x) => ({ threads: x.threads, tokens_per_sec: x.tokens_per_sec })),
  };
  e2e.ratio = {
    tokens_per_sec: e2eOrt.tokens_per_sec / py.tokens_per_sec,
    peak_rss: e2eOrt.peak_rss_bytes / py.peak_rss_bytes,
  };
}
result.end_to_end = e2e;
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
