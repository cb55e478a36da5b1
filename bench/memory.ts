// `npm run bench:memory`: where a training step's memory goes. Builds the real training-step graph (buildTrainStep)
// for a model folder or one of bench:gpu's Llama shapes, a delta config, batch × seq and precision, and computes by
// liveness, in the order onnxruntime runs the nodes, the peak of the values the step makes and what is alive at it:
// by kind (attention probabilities, feed-forward intermediates, logits, gradients, …) and by layer. Prints one JSON
// document (a short table on stderr).
//
//   --model DIR | --shape 316m|1b|tiny|small (bench/gpu-model.ts; weights are sparse zeros, never read) [--layers N]
//   --batch 32 --seq 512 --precision fp32|fp16 (fp16: float16 weights and activations; --activations float32|float16)
//   --delta '<json>' --task causal-lm --recompute none|attention,… --attention explicit|fused
//   --cuda: count the memory-bound bytes with what onnxruntime's CUDA provider fuses by itself (BiasSoftmax)
//   --gpu: both of bench:gpu's LoRA configs (316M × 32 × 512, 1.03B × 8 × 512), with and without recomputation, and
//     in mixed precision with CUDA's settings (every kind recomputed) with attention explicit and fused.
// Each case also reports the bytes its memory-bound kernels read and write per step (memoryTraffic): on a GPU what
// the elementwise part of a step's time follows.
//   --measure: also run the step with onnxruntime on the CPU (each setting in its own process) and compare the static
//     peak with the arena's bytes in use (from onnxruntime's profile) and with the growth of the resident set.
//   --speed: CPU step time (fastest warm step) without recomputation, with the default kinds and with every kind
//     (--runs, default 7).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { memoryPlan, memoryTraffic, type MemoryPlan } from '../native/autodiff/memory.js';
import { RECOMPUTE_KINDS, type RecomputeKind } from '../native/autodiff/recompute.js';
import { loadWithDeltas } from '../native/delta/index.js';
import type { HostTensor } from '../native/onnx/graph.js';
import { Rng } from '../native/rng.js';
import { attentionFor, buildTrainStep, DEFAULT_RECOMPUTE, names, recomputeFor } from '../native/train/step.js';
import { paramCount, SHAPES, writeLlamaFolder, type LlamaShape } from './gpu-model.js';

const MIB = 2 ** 20;
const mib = (b: number): number => Math.round((b / MIB) * 10) / 10;
const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const flag = (name: string): boolean => argv.includes(`--${name}`);

// A shape small enough to run on two cores, with a long enough sequence for attention to matter.
const SMALL: LlamaShape = { hidden: 256, layers: 4, heads: 8, kvHeads: 2, intermediate: 688, vocab: 8000 };

export interface Case {
  /** A model folder, or a shape of bench/gpu-model.ts written as sparse zeros. */
  model?: string;
  shape?: string;
  layers?: number;
  task?: string;
  delta: unknown;
  batch: number;
  seq: number;
  precision: 'fp32' | 'fp16';
  /** Float16 activations (default with fp16 precision). */
  activations?: 'float32' | 'float16';
  recompute: RecomputeKind[];
  /** Self-attention built fused or explicit (ModelOptions.attention; default explicit). */
  attention?: 'fused' | 'explicit';
  /** Count memory-bound bytes with what onnxruntime's CUDA provider fuses by itself (memoryTraffic's `cuda`). */
  cuda?: boolean;
}

const activationsOf = (c: Case): 'float32' | 'float16' =>
  c.activations ?? (c.precision === 'fp16' ? 'float16' : 'float32');

const DEFAULT_DELTA = [{ method: 'lora', r: 8, alpha: 16, target_modules: ['q_proj', 'v_proj'] }];
const folders = new Map<string, string>();
let scratch: string | undefined;

function modelDir(c: Case): string {
  if (c.model) return c.model;
  const base = c.shape === 'small' ? SMALL : SHAPES[c.shape ?? 'tiny'];
  if (!base) throw new Error(`unknown --shape ${c.shape} (316m, 1b, tiny, small)`);
  const s = { ...base, layers: c.layers ?? base.layers };
  const key = JSON.stringify(s);
  if (!folders.has(key)) {
    scratch ??= mkdtempSync(join(tmpdir(), 'ds-bench-memory-'));
    const dir = join(scratch, `llama-${folders.size}`);
    writeLlamaFolder(dir, s, 4, { zeros: true });
    folders.set(key, dir);
  }
  return folders.get(key)!;
}

function build(c: Case) {
  const dir = modelDir(c);
  const { model, applied } = loadWithDeltas(
    dir,
    {
      ...(c.task ? { task: c.task as never } : {}),
      precision: c.precision === 'fp16' ? 'float16' : 'float32',
      attention: c.attention ?? 'explicit',
    },
    (Array.isArray(c.delta) ? c.delta : [c.delta]) as never,
    1,
  );
  const graphs = buildTrainStep({
    forward: model.graph,
    loss: model.loss,
    trainable: applied.trainable,
    optimizer: { weightDecay: 0.01, maxGradNorm: 1 },
    recompute: c.recompute,
    activations: activationsOf(c),
  });
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, number>;
  const intermediate = cfg.intermediate_size ?? cfg.d_ff ?? cfg.n_inner ?? (cfg.n_embd ? 4 * cfg.n_embd : undefined);
  return { model, applied, graphs, hints: { vocab: model.dims.vocab, intermediate }, dir };
}

function summary(plan: MemoryPlan) {
  const sorted = (r: Record<string, number>) =>
    Object.fromEntries(
      Object.entries(r)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => [k, mib(v)]),
    );
  return {
    weights_mib: mib(plan.weightBytes),
    inputs_mib: mib(plan.inputBytes),
    peak_activations_mib: mib(plan.peakBytes),
    total_mib: mib(plan.weightBytes + plan.inputBytes + plan.peakBytes),
    peak_at: plan.peakAt,
    by_kind_mib: sorted(plan.byKind),
    by_layer_mib: sorted(plan.byLayer),
    largest: plan.live.slice(0, 12).map((v) => ({ name: v.name, kind: v.kind, mib: mib(v.bytes), shape: v.shape })),
  };
}

function analyse(c: Case) {
  const t0 = performance.now();
  const { model, graphs, hints } = build(c);
  const g = graphs.step!;
  const plan = memoryPlan(g, { batch: c.batch, seq: c.seq }, { hints });
  const serial = memoryPlan(g, { batch: c.batch, seq: c.seq }, { hints, order: 'serialized' });
  const traffic = memoryTraffic(g, { batch: c.batch, seq: c.seq }, { cuda: c.cuda });
  const gb = (b: number): number => Math.round(b / 1e8) / 10;
  return {
    case: describe(c, model.dims),
    nodes: g.nodes.length,
    memory_bound: {
      gb_per_step: gb(traffic.bytes),
      kernels: traffic.kernels,
      by_op_gb: Object.fromEntries(
        Object.entries(traffic.byOp)
          .sort((a, b) => b[1] - a[1])
          .slice(0, 10)
          .map(([k, v]) => [k, gb(v)]),
      ),
    },
    onnxruntime_order: summary(plan),
    serialized_order_peak_mib: mib(serial.peakBytes),
    build_ms: Math.round(performance.now() - t0),
  };
}

function describe(c: Case, dims?: { layers: number; hidden: number; vocab: number }) {
  const s = c.shape ? (c.shape === 'small' ? SMALL : SHAPES[c.shape]) : undefined;
  return {
    model: c.model ?? `llama ${c.shape}${c.layers ? ` (${c.layers} layers)` : ''}`,
    ...(s ? { params: paramCount({ ...s, layers: c.layers ?? s.layers }) } : {}),
    ...(dims ? { layers: dims.layers, hidden: dims.hidden, vocab: dims.vocab } : {}),
    delta: c.delta,
    batch: c.batch,
    seq: c.seq,
    precision: c.precision,
    activations: activationsOf(c),
    recompute: c.recompute,
    attention: c.attention ?? 'explicit',
    ...(c.cuda ? { traffic_counts: "onnxruntime's CUDA fusions" } : {}),
  };
}

// --- measuring on the CPU: one process per setting, so that each resident set is its own -----------------------------

interface Setting {
  arena: boolean;
  memPattern: boolean;
  profile?: boolean;
}

const statusKiB = (field: string): number =>
  Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0);

/** The child: opens the step, runs it `runs` times, reports the resident set's growth and the arena's bytes in use. */
async function child(c: Case, s: Setting, runs: number) {
  const { openSession, runSession } = await import('../native/runtime/session.js');
  const { graphs, applied } = build(c);
  const prof = s.profile ? mkdtempSync(join(tmpdir(), 'ds-prof-')) : undefined;
  const session = await openSession(graphs.step!, {
    device: 'cpu',
    cpuArena: s.arena,
    memPattern: s.memPattern,
    ...(prof ? { profileFilePrefix: join(prof, 'step') } : {}),
  });
  const rng = new Rng(3);
  const n = c.batch * c.seq;
  const vocab = (JSON.parse(readFileSync(join(modelDir(c), 'config.json'), 'utf8')) as { vocab_size: number })
    .vocab_size;
  const ids = BigInt64Array.from({ length: n }, () => BigInt(rng.int(vocab)));
  const shape = [c.batch, c.seq];
  const feeds: Record<string, HostTensor> = {
    input_ids: { dtype: 'int64', shape, data: ids },
    attention_mask: { dtype: 'int64', shape, data: new BigInt64Array(n).fill(1n) },
    labels: { dtype: 'int64', shape, data: ids },
    [names.lr]: { dtype: 'float32', shape: [], data: Float32Array.of(1e-4) },
    [names.step]: { dtype: 'int64', shape: [], data: BigInt64Array.of(1n) },
    [names.lossScale]: { dtype: 'float32', shape: [], data: Float32Array.of(1024) },
  };
  for (const p of applied.trainable) {
    const t = applied.initial[p];
    feeds[p] = t;
    feeds[names.m(p)] = { dtype: 'float32', shape: t.shape, data: new Float32Array(t.data.length) };
    feeds[names.v(p)] = { dtype: 'float32', shape: t.shape, data: new Float32Array(t.data.length) };
  }
  const growth: number[] = [];
  const ms: number[] = [];
  let loss = NaN;
  const before = statusKiB('VmRSS');
  for (let r = 0; r < runs; r++) {
    writeFileSync('/proc/self/clear_refs', '5'); // resets VmHWM to the current resident set
    const t0 = performance.now();
    const fed = Object.fromEntries(Object.entries(feeds).filter(([k]) => session.inputNames.includes(k)));
    const out = await runSession(session, fed, [names.loss]);
    ms.push(performance.now() - t0);
    growth.push((statusKiB('VmHWM') - before) * 1024);
    loss = Number(out[names.loss].data[0]);
  }
  let arena: { requested: number; inUse: number } | undefined;
  if (prof) {
    session.session.endProfiling();
    const file = readdirSync(prof).find((f) => f.endsWith('.json'))!;
    arena = arenaOfFirstRun(JSON.parse(readFileSync(join(prof, file), 'utf8')));
    rmSync(prof, { recursive: true, force: true });
  }
  await session.session.release();
  return { loss, rss_growth: growth, arena, ms };
}

type ProfileEvent = { cat: string; name: string; args?: Record<string, string> };

/**
 * The CPU arena during the first run, from onnxruntime's profile (bytes above what it held before the run's first
 * node): `requested`, the peak of the bytes its tensors asked for (what the static plan computes); `inUse`, the peak of
 * the chunks it handed out, with the kernels' scratch buffers and the arena's rounding and unsplit chunks.
 */
function arenaOfFirstRun(events: ProfileEvent[]): { requested: number; inUse: number } | undefined {
  const nodes = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.args?.mem_bytes_in_use);
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
  const first = runs.length > 1 ? nodes.slice(0, nodes.length / runs.length) : nodes;
  if (!first.length) return undefined;
  const arg = (e: ProfileEvent, k: string): number => Number(e.args![k] ?? 0);
  const start = arg(first[0], 'mem_bytes_in_use') - arg(first[0], 'mem_in_use_delta');
  const asked = arg(first[0], 'mem_bytes_requested_in_use') - arg(first[0], 'mem_requested_in_use_delta');
  return {
    requested: Math.max(...first.map((e) => arg(e, 'mem_bytes_requested_in_use'))) - asked,
    inUse: Math.max(...first.map((e) => arg(e, 'mem_in_use_peak'))) - start,
  };
}

function measure(c0: Case) {
  const here = fileURLToPath(import.meta.url);
  // The children read the folder this process wrote.
  const c: Case = { ...c0, model: modelDir(c0) };
  const settings: (Setting & { name: string })[] = [
    { name: 'arena, memory pattern (default)', arena: true, memPattern: true },
    { name: 'arena, no memory pattern', arena: true, memPattern: false, profile: true },
    { name: 'no arena, no memory pattern', arena: false, memPattern: false },
  ];
  const results = [];
  for (const s of settings) {
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', here, '--child', JSON.stringify({ c, s, runs: Number(opt('runs') ?? 3) })],
      {
        encoding: 'utf8',
        maxBuffer: 64 * MIB,
      },
    );
    const last = r.stdout.trim().split('\n').pop() ?? '';
    let parsed: Awaited<ReturnType<typeof child>> | { error: string };
    try {
      parsed = JSON.parse(last);
    } catch {
      parsed = { error: `exit ${r.status}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}` };
    }
    results.push({ setting: s.name, ...parsed });
  }
  const plan = memoryPlan(build(c).graphs.step!, { batch: c.batch, seq: c.seq });
  const out = results.map((r) => {
    if ('error' in r) return r;
    return {
      setting: r.setting,
      loss: r.loss,
      step_ms: r.ms.map((x) => Math.round(x)),
      rss_growth_mib: r.rss_growth.map(mib),
      ...(r.arena
        ? { arena_requested_peak_mib: mib(r.arena.requested), arena_in_use_peak_mib: mib(r.arena.inUse) }
        : {}),
      static_over_rss: Math.round((plan.peakBytes / Math.max(...r.rss_growth)) * 100) / 100,
    };
  });
  return { case: describe(c0), static_peak_mib: mib(plan.peakBytes), measured: out };
}

/** Step time on the CPU (onnxruntime's defaults) without recomputation, with the default kinds and with every kind. */
function speed(c0: Case) {
  const here = fileURLToPath(import.meta.url);
  const runs = Number(opt('runs') ?? 7);
  const out = [];
  for (const recompute of [[], DEFAULT_RECOMPUTE, [...RECOMPUTE_KINDS]]) {
    const c: Case = { ...c0, model: modelDir(c0), recompute };
    const s: Setting = { arena: true, memPattern: true };
    const r = spawnSync(process.execPath, ['--import', 'tsx', here, '--child', JSON.stringify({ c, s, runs })], {
      encoding: 'utf8',
      maxBuffer: 64 * MIB,
    });
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as Awaited<ReturnType<typeof child>>;
    // The fastest warm step: other work on a shared machine only ever adds time.
    out.push({
      recompute,
      min_step_ms: Math.round(Math.min(...res.ms.slice(2))),
      static_peak_mib: mib(memoryPlan(build(c).graphs.step!, { batch: c.batch, seq: c.seq }).peakBytes),
      loss: res.loss,
    });
  }
  return { case: describe(c0), runs, speed: out };
}

// --- entry ---------------------------------------------------------------------------------------------------------

function caseFromArgs(): Case {
  const rc = opt('recompute');
  const recompute = rc === undefined ? DEFAULT_RECOMPUTE : rc === 'none' ? [] : (rc.split(',') as RecomputeKind[]);
  for (const k of recompute)
    if (!RECOMPUTE_KINDS.includes(k)) throw new Error(`--recompute ${k}: one of none, ${RECOMPUTE_KINDS.join(', ')}`);
  const model = opt('model');
  return {
    ...(model ? { model } : { shape: opt('shape') ?? 'small' }),
    ...(opt('layers') ? { layers: Number(opt('layers')) } : {}),
    ...(opt('task') ? { task: opt('task') } : {}),
    delta: opt('delta') ? JSON.parse(opt('delta')!) : DEFAULT_DELTA,
    batch: Number(opt('batch') ?? 4),
    seq: Number(opt('seq') ?? 256),
    precision: opt('precision') === 'fp16' ? 'fp16' : 'fp32',
    ...(opt('activations') ? { activations: opt('activations') as 'float32' | 'float16' } : {}),
    ...(opt('attention') ? { attention: opt('attention') as 'fused' | 'explicit' } : {}),
    ...(flag('cuda') ? { cuda: true } : {}),
    recompute,
  };
}

function table(rows: ReturnType<typeof analyse>[]): string {
  const lines = rows.map((r) => {
    const s = r.onnxruntime_order;
    const top = Object.entries(s.by_kind_mib)
      .slice(0, 3)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    const c = r.case;
    return `${c.model} ${c.batch}×${c.seq} ${c.precision} (${c.activations} activations) recompute=[${c.recompute}] attention ${c.attention}: weights ${s.weights_mib} MiB, activations peak ${s.peak_activations_mib} MiB (${top}); memory-bound kernels move ${r.memory_bound.gb_per_step} GB`;
  });
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<void> {
  const at = argv.indexOf('--child');
  if (at >= 0) {
    const { c, s, runs } = JSON.parse(argv[at + 1]) as { c: Case; s: Setting; runs: number };
    process.stdout.write(`${JSON.stringify(await child(c, s, runs))}\n`);
    return;
  }
  try {
    if (flag('gpu')) {
      const rows = [];
      for (const [shape, batch] of [
        ['316m', 32],
        ['1b', 8],
      ] as const)
        for (const precision of ['fp32', 'fp16'] as const)
          for (const recompute of [[], DEFAULT_RECOMPUTE, [...RECOMPUTE_KINDS]])
            rows.push(analyse({ shape, delta: DEFAULT_DELTA, batch, seq: 512, precision, recompute }));
      // What the trainer builds on CUDA: float16 activations, every kind recomputed, attention fused.
      for (const [shape, batch] of [
        ['316m', 32],
        ['1b', 8],
      ] as const)
        rows.push(
          analyse({
            shape,
            delta: DEFAULT_DELTA,
            batch,
            seq: 512,
            precision: 'fp16',
            recompute: recomputeFor('cuda'),
            attention: attentionFor('cuda'),
            cuda: true,
          }),
        );
      process.stderr.write(table(rows));
      process.stdout.write(`${JSON.stringify({ gpu_configs: rows }, null, 2)}\n`);
      return;
    }
    const c = caseFromArgs();
    if (flag('speed')) {
      const r = speed(c);
      process.stderr.write(`${JSON.stringify(r.speed)}\n`);
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return;
    }
    if (flag('measure')) {
      const r = measure(c);
      process.stderr.write(`${JSON.stringify(r.measured)}\n`);
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return;
    }
    const r = analyse(c);
    process.stderr.write(table([r]));
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  } finally {
    if (scratch && !existsSync(join(scratch, 'keep'))) rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
