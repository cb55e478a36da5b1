// `npm run bench:gpu`: LoRA and full fine-tuning of Llama-shaped models on an NVIDIA GPU, Delta Studio against
// PyTorch + PEFT on the same model folders, batches and lengths, in the same run. Prints one JSON document.
//
//   LoRA r=8 on q_proj/v_proj, AdamW: 316M at batch 32 × 512, 1.03B at 8 × 512; full fine-tuning: 316M at 8 × 256.
//   Delta Studio in float32 and in mixed precision (float16 weights and activations); --recompute none|attention,… sets
//   what its backward pass recomputes (default: buildTrainStep's), --mem-pattern turns onnxruntime's memory pattern on
//   (off by default on CUDA), --profile DIR adds onnxruntime's kernel time per op type, --resident on|off keeps
//   parameters and AdamW state on the device or feeds them from the host (default: on the device on CUDA where the
//   resident-state addon is built), --attention fused|explicit builds self-attention as one fused node (flash
//   attention on CUDA) or as nodes (default: fused on CUDA); PyTorch + PEFT with bf16 autocast and in fp32,
//   where a Python with torch and peft is found ($DELTA_STUDIO_PYTHON, else python3).
//   tokens/s after warm-up steps; peak GPU memory of each run's process, polled from nvidia-smi.
//
// Every run is its own process, so that its peak memory is its own. Without a GPU: `{ "gpu": null, … }`, exit 0.
// --smoke: a tiny model on the CPU, end to end (tests run it); the peer may use a hand-written LoRA there.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cudaProcessEnv } from '../native/runtime/cuda-libs.js';
import { ortVersion } from '../native/runtime/providers.js';
import { paramCount, SHAPES, writeLlamaFolder } from './gpu-model.js';

type Side = 'delta-studio' | 'pytorch-peft';
interface RunSpec {
  config: string;
  model: string;
  method: 'lora' | 'full';
  batch: number;
  seq: number;
  side: Side;
  precision: string;
  /** What the backward pass recomputes (Delta Studio; default: buildTrainStep's). */
  recompute?: string[];
  /** onnxruntime's memory pattern on (Delta Studio; off by default on CUDA, see native/runtime/session.ts). */
  memPattern?: boolean;
  /** A folder for onnxruntime's per-node profile (Delta Studio; --profile DIR). */
  profile?: string;
  /** Parameters and optimizer state on the device (--resident on|off; default auto: on CUDA where the addon is built). */
  resident?: 'auto' | 'on' | 'off';
  /** Self-attention fused or explicit (--attention fused|explicit; default auto: fused on CUDA). */
  attention?: 'auto' | 'fused' | 'explicit';
}
interface RunResult extends RunSpec {
  tokens_per_sec?: number;
  step_ms?: number;
  steps?: number;
  final_loss?: number;
  skipped_steps?: number;
  device?: string;
  /** Peak GPU memory of the process (nvidia-smi), MiB; null on the CPU. */
  peak_gpu_mib?: number | null;
  /** 'process': nvidia-smi's per-process figure; 'device': rise of the GPU's used memory over the run. */
  gpu_memory_source?: 'process' | 'device';
  peak_rss_mib?: number;
  implementation?: string;
  note?: string;
  error?: string;
}

const here = fileURLToPath(new URL('.', import.meta.url));
const argv = process.argv.slice(2);
const flag = (name: string): boolean => argv.includes(`--${name}`);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};

/**
 * onnxruntime's profile of a run (written when its sessions are released), as kernel milliseconds per step by op
 * type, and by node with the layer number taken out (the same node of every layer adds up), with its output's type
 * and shape, largest first: where a step's time goes, to decide what to make faster.
 */
function profileSummary(
  dir: string,
  prefix: string,
  steps: number,
): { byOp: Record<string, number>; topNodes: { node: string; op: string; output: string; ms: number }[] } {
  const byOp: Record<string, number> = {};
  const byNode = new Map<string, { node: string; op: string; output: string; ms: number }>();
  for (const f of readdirSync(dir).filter((x) => x.startsWith(prefix) && x.endsWith('.json'))) {
    const events = JSON.parse(readFileSync(join(dir, f), 'utf8')) as {
      cat: string;
      name: string;
      dur: number;
      args?: { op_name?: string; output_type_shape?: Record<string, number[]>[] };
    }[];
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || !e.args?.op_name) continue;
      const ms = e.dur / 1000 / steps;
      byOp[e.args.op_name] = (byOp[e.args.op_name] ?? 0) + ms;
      const node = e.name
        .replace(/_kernel_time$/, '')
        .replace(/\.(layers|h|layer|block)\.\d+/g, '.$1.N')
        .replace(/_\d+$/, '');
      const out = Object.entries(e.args.output_type_shape?.[0] ?? {})[0];
      const output = out ? `${out[0]}[${out[1].join(',')}]` : '';
      const key = `${node}|${e.args.op_name}|${output}`;
      const hit = byNode.get(key) ?? { node, op: e.args.op_name, output, ms: 0 };
      hit.ms += ms;
      byNode.set(key, hit);
    }
  }
  const sorted = Object.entries(byOp).sort((a, b) => b[1] - a[1]);
  return {
    byOp: Object.fromEntries([
      ['(all)', Number(sorted.reduce((a, [, v]) => a + v, 0).toFixed(2))],
      ...sorted.slice(0, 24).map(([k, v]) => [k, Number(v.toFixed(2))]),
    ]),
    topNodes: [...byNode.values()]
      .sort((a, b) => b.ms - a.ms)
      .slice(0, 40)
      .map((n) => ({ ...n, ms: Number(n.ms.toFixed(2)) })),
  };
}

// --- the worker: one Delta Studio run in this process ------------------------------------------------------------

async function worker(spec: RunSpec & { dir: string; device: 'cpu' | 'cuda'; warmup: number; steps: number }) {
  const { loadWithDeltas } = await import('../native/delta/index.js');
  const { buildTrainStep, recomputeFor } = await import('../native/train/step.js');
  const { chooseAttention } = await import('../native/train/fused-attention-check.js');
  const { openRunner, ResidentStepRunner } = await import('../native/train/resident-runner.js');
  const { Rng } = await import('../native/rng.js');
  const deltas =
    spec.method === 'lora'
      ? [{ method: 'lora', r: 8, alpha: 16, target_modules: ['q_proj', 'v_proj'] }]
      : [{ method: 'full' }];
  // As the trainer chooses: fused where its kernels run on the device (checked), unless --attention says.
  const { attention, fallback } = await chooseAttention(spec.device, spec.attention);
  const { model, applied } = loadWithDeltas(
    spec.dir,
    {
      task: 'causal-lm',
      precision: spec.precision === 'fp16' ? 'float16' : 'float32',
      attention,
    },
    deltas as never,
    1,
  );
  // Mixed precision is float16 weights and activations, float32 loss, deltas and optimizer, with loss scaling.
  const graphs = buildTrainStep({
    forward: model.graph,
    loss: model.loss,
    trainable: applied.trainable,
    optimizer: { weightDecay: 0.01, maxGradNorm: 1 },
    activations: spec.precision === 'fp16' ? 'float16' : 'float32',
    recompute: (spec.recompute ?? recomputeFor(spec.device)) as never,
  });
  const runner = await openRunner(graphs, applied.initial, spec.device, {
    inWorker: false,
    resident: spec.resident ?? 'auto',
    session: {
      ...(spec.memPattern ? { memPattern: true } : {}),
      ...(spec.profile ? { profileFilePrefix: join(spec.profile, `${spec.config}-${spec.precision}`) } : {}),
    },
  });
  const resident = runner instanceof ResidentStepRunner;
  const rng = new Rng(5);
  const n = spec.batch * spec.seq;
  const ids = BigInt64Array.from({ length: n }, () => BigInt(rng.int(SHAPES[spec.model].vocab)));
  const shape = [spec.batch, spec.seq];
  const batch = {
    input_ids: { dtype: 'int64' as const, shape, data: ids },
    attention_mask: { dtype: 'int64' as const, shape, data: new BigInt64Array(n).fill(1n) },
    labels: { dtype: 'int64' as const, shape, data: ids },
  };
  let loss = NaN,
    skipped = 0;
  for (let i = 0; i < spec.warmup; i++) loss = (await runner.step([batch], 1e-4, i)).loss;
  const t0 = performance.now();
  for (let i = 0; i < spec.steps; i++) {
    const r = await runner.step([batch], 1e-4, spec.warmup + i);
    loss = r.loss;
    if (r.skipped) skipped++;
  }
  const ms = (performance.now() - t0) / spec.steps;
  const device = runner.device;
  await runner.release();
  const profile = spec.profile
    ? profileSummary(spec.profile, `${spec.config}-${spec.precision}`, spec.warmup + spec.steps)
    : undefined;
  return {
    ...(profile ? { profile_ms_per_step_by_op: profile.byOp, profile_top_nodes: profile.topNodes } : {}),
    tokens_per_sec: (n * 1000) / ms,
    step_ms: ms,
    steps: spec.steps,
    final_loss: loss,
    ...(skipped ? { skipped_steps: skipped } : {}),
    device,
    // Parameters and AdamW state kept on the device between steps (the resident-state addon), or fed from the host.
    state: resident ? 'on the device' : 'from the host',
    attention: model.fusedAttention ? 'fused' : 'explicit',
    ...(fallback ? { attention_fallback: fallback } : {}),
    peak_rss_mib: (process.resourceUsage().maxRSS * 1024) / 2 ** 20,
    implementation: `Delta Studio (onnxruntime ${ortVersion()})`,
  };
}

// --- the parent: GPU, Python, model folders, one process per run -------------------------------------------------

function gpuInfo(): { name: string; driver: string; memory_total_mib: number } | { error: string } {
  try {
    const line = execFileSync(
      'nvidia-smi',
      ['--query-gpu=name,driver_version,memory.total', '--format=csv,noheader,nounits'],
      { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] },
    ).split('\n')[0];
    const [name, driver, mem] = line.split(',').map((s) => s.trim());
    return name ? { name, driver, memory_total_mib: Number(mem) } : { error: 'nvidia-smi listed no GPU' };
  } catch (e) {
    return {
      error:
        (e as NodeJS.ErrnoException).code === 'ENOENT'
          ? 'nvidia-smi is not installed: no NVIDIA GPU or driver on this machine'
          : `nvidia-smi failed: ${(e as Error).message.split('\n')[0]}`,
    };
  }
}

const smi = (args: string[]): Promise<string> =>
  new Promise((res) =>
    execFile('nvidia-smi', args, { encoding: 'utf8', timeout: 5000 }, (err, out) => res(err ? '' : out)),
  );

/** Polls nvidia-smi while `pid` runs: its own peak if nvidia-smi shows it, else the rise of the GPU's used memory. */
function memoryWatch(
  pid: number,
  baseline: number,
): { stop: () => Promise<{ mib: number; source: 'process' | 'device' }> } {
  let own = 0,
    device = 0,
    stopped = false;
  const poll = async (): Promise<void> => {
    while (!stopped) {
      const [apps, used] = await Promise.all([
        smi(['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits']),
        smi(['--query-gpu=memory.used', '--format=csv,noheader,nounits']),
      ]);
      for (const line of apps.split('\n')) {
        const [p, m] = line.split(',').map((s) => Number(s.trim()));
        if (p === pid && m > own) own = m;
      }
      device = Math.max(device, Number(used.split('\n')[0]) - baseline || 0);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const running = poll();
  return {
    stop: async () => {
      stopped = true;
      await running;
      return own > 0 ? { mib: own, source: 'process' } : { mib: device, source: 'device' };
    },
  };
}

/** Runs a command, watching its GPU memory; its result is the last JSON line of its stdout. */
async function measure(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  gpu: boolean,
): Promise<Record<string, unknown> & { peak_gpu_mib?: number | null; gpu_memory_source?: 'process' | 'device' }> {
  const baseline = gpu
    ? Number((await smi(['--query-gpu=memory.used', '--format=csv,noheader,nounits'])).split('\n')[0]) || 0
    : 0;
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const watch = gpu && child.pid ? memoryWatch(child.pid, baseline) : undefined;
  let out = '',
    err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((res) => {
    child.on('close', res);
    child.on('error', (e) => {
      err += e.message;
      res(-1);
    });
  });
  const mem = watch ? await watch.stop() : undefined;
  const last = out.trim().split('\n').pop() ?? '';
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(last) as Record<string, unknown>;
  } catch {
    parsed = { error: `exit ${code}: ${(err.trim().split('\n').slice(-3).join(' | ') || last).slice(0, 600)}` };
  }
  if (code !== 0 && !parsed.error) parsed.error = `exit ${code}: ${err.trim().split('\n').slice(-2).join(' | ')}`;
  return { ...parsed, peak_gpu_mib: mem ? mem.mib : null, ...(mem ? { gpu_memory_source: mem.source } : {}) };
}

function pythonInfo(
  python: string,
): { torch: string; peft: string | null; transformers: string | null; cuda: boolean } | null {
  try {
    const out = execFileSync(
      python,
      [
        '-c',
        [
          'import json, importlib',
          'import torch',
          'def v(m):',
          '    try: return importlib.import_module(m).__version__',
          '    except Exception: return None',
          'print(json.dumps({"torch": torch.__version__, "peft": v("peft"), "transformers": v("transformers"), "cuda": torch.cuda.is_available()}))',
        ].join('\n'),
      ],
      { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'ignore'] },
    );
    return JSON.parse(out.trim().split('\n').pop()!);
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const smoke = flag('smoke');
  const gpu = smoke ? null : gpuInfo();
  if (gpu && 'error' in gpu) {
    process.stdout.write(
      `${JSON.stringify({ gpu: null, reason: gpu.error, smoke: false, runs: [], ratios: [] }, null, 2)}\n`,
    );
    return;
  }
  const device: 'cpu' | 'cuda' = smoke ? 'cpu' : 'cuda';
  const warmup = Number(opt('warmup') ?? (smoke ? 1 : 3));
  const steps = Number(opt('steps') ?? (smoke ? 2 : 10));
  const python = opt('python') ?? process.env.DELTA_STUDIO_PYTHON ?? 'python3';
  const py = flag('no-torch') ? null : pythonInfo(python);
  const torchDevice = py && (smoke || py.cuda);

  const configs: Omit<RunSpec, 'side' | 'precision'>[] = smoke
    ? [
        { config: 'lora-tiny', model: 'tiny', method: 'lora', batch: 2, seq: 32 },
        { config: 'full-tiny', model: 'tiny', method: 'full', batch: 2, seq: 16 },
      ]
    : [
        { config: 'lora-316m', model: '316m', method: 'lora', batch: 32, seq: 512 },
        { config: 'lora-1b', model: '1b', method: 'lora', batch: 8, seq: 512 },
        { config: 'full-316m', model: '316m', method: 'full', batch: 8, seq: 256 },
      ];
  const only = opt('only')?.split(',');
  const chosen = configs.filter((c) => !only || only.includes(c.config));

  const root = opt('dir') ?? mkdtempSync(join(tmpdir(), 'ds-bench-gpu-'));
  const models: Record<string, { dir: string; params: number; shape: (typeof SHAPES)[string] }> = {};
  for (const name of new Set(chosen.map((c) => c.model))) {
    const dir = join(root, `llama-${name}`);
    // --dir keeps folders between runs: 2 GB of weights for the 1.03B model is worth making once.
    const made = existsSync(join(dir, 'config.json'))
      ? { params: paramCount(SHAPES[name]) }
      : writeLlamaFolder(dir, SHAPES[name]);
    models[name] = { dir, params: made.params, shape: SHAPES[name] };
    process.stderr.write(`model ${name}: ${made.params} parameters in ${dir}\n`);
  }

  const env = device === 'cuda' ? cudaProcessEnv(process.env) : { ...process.env };
  const runs: RunResult[] = [];
  // --pick lora-316m/delta-studio/fp16,lora-316m/pytorch-peft/bf16,…: only these runs (a GPU visit is short).
  const pick = opt('pick')?.split(',');
  const picked = (s: RunSpec): boolean =>
    !pick || pick.includes(`${s.config}/${s.side}/${s.precision.replace('-autocast', '')}`);
  // --log FILE: each run's result as one JSON line the moment it ends, so a visit cut short keeps what it measured.
  const log = (r: RunResult): void => {
    const file = opt('log');
    if (file) appendFileSync(file, `${JSON.stringify(r)}\n`);
  };
  for (const c of chosen) {
    const ds = smoke && c.method === 'full' ? ['fp32'] : ['fp32', 'fp16'];
    for (const precision of ds) {
      const recompute = opt('recompute');
      const spec: RunSpec = {
        ...c,
        side: 'delta-studio',
        precision,
        ...(recompute ? { recompute: recompute === 'none' ? [] : recompute.split(',') } : {}),
        ...(flag('mem-pattern') ? { memPattern: true } : {}),
        ...(opt('resident') ? { resident: opt('resident') as 'auto' | 'on' | 'off' } : {}),
        ...(opt('attention') ? { attention: opt('attention') as 'auto' | 'fused' | 'explicit' } : {}),
        ...(opt('profile') ? { profile: opt('profile') } : {}),
      };
      if (!picked(spec)) continue;
      process.stderr.write(`${c.config} delta-studio ${precision}…\n`);
      const job = { ...spec, dir: models[c.model].dir, device, warmup, steps };
      const r = await measure(
        process.execPath,
        ['--import', 'tsx', join(here, 'gpu.ts'), '--worker', JSON.stringify(job)],
        env,
        device === 'cuda',
      );
      runs.push({ ...spec, ...(r as Partial<RunResult>) });
      log(runs[runs.length - 1]);
    }
    if (!py || !torchDevice) continue;
    const tp = smoke && c.method === 'full' ? ['fp32'] : c.method === 'full' ? ['fp32', 'bf16'] : ['bf16', 'fp32'];
    for (const precision of tp) {
      const spec: RunSpec = { ...c, side: 'pytorch-peft', precision: precision === 'bf16' ? 'bf16-autocast' : 'fp32' };
      if (!picked(spec)) continue;
      process.stderr.write(`${c.config} pytorch ${precision}…\n`);
      const args = [
        join(here, 'torch_gpu_peer.py'),
        ...['--model', models[c.model].dir, '--method', c.method, '--precision', precision],
        ...['--batch', String(c.batch), '--seq', String(c.seq), '--device', device],
        ...['--warmup', String(warmup), '--steps', String(steps), ...(smoke ? ['--smoke'] : [])],
      ];
      const r = await measure(python, args, env, device === 'cuda');
      runs.push({ ...spec, ...(r as Partial<RunResult>) });
      log(runs[runs.length - 1]);
    }
  }
  if (!opt('dir') && !flag('keep')) rmSync(root, { recursive: true, force: true });

  // Delta Studio over PyTorch: speed > 1 is faster, memory < 1 is leaner (GPU memory; RSS on the CPU).
  const mem = (r: RunResult): number | undefined => (r.peak_gpu_mib ?? r.peak_rss_mib) || undefined;
  const ratios = [];
  for (const c of chosen)
    for (const d of runs.filter((r) => r.config === c.config && r.side === 'delta-studio' && r.tokens_per_sec))
      for (const p of runs.filter((r) => r.config === c.config && r.side === 'pytorch-peft' && r.tokens_per_sec)) {
        const [md, mp] = [mem(d), mem(p)];
        ratios.push({
          config: c.config,
          delta_studio: d.precision,
          pytorch: p.precision,
          speed: d.tokens_per_sec! / p.tokens_per_sec!,
          memory: md && mp ? md / mp : null,
        });
      }
  process.stdout.write(
    `${JSON.stringify(
      {
        gpu: gpu ?? null,
        smoke,
        device,
        ...(smoke ? { reason: 'smoke run: a tiny model on the CPU' } : {}),
        versions: {
          onnxruntime: ortVersion(),
          node: process.versions.node,
          python: py ? { path: python, ...py } : null,
        },
        ...(py ? {} : { pytorch_missing: `no torch in ${python} (set DELTA_STUDIO_PYTHON)` }),
        models: Object.fromEntries(Object.entries(models).map(([k, m]) => [k, { params: m.params, ...m.shape }])),
        warmup_steps: warmup,
        timed_steps: steps,
        runs,
        ratios,
      },
      null,
      2,
    )}\n`,
  );
}

const at = argv.indexOf('--worker');
if (at >= 0) {
  worker(JSON.parse(argv[at + 1]))
    .then((r) => process.stdout.write(`${JSON.stringify(r)}\n`))
    .catch((e: Error) => {
      process.stdout.write(`${JSON.stringify({ error: e.message.split('\n')[0] })}\n`);
      process.exitCode = 1;
    });
} else {
  await main();
}
