// Runs training-step graphs with the parameters, AdamW's moments and the gradient sums kept where the step runs (CUDA
// memory on a GPU) between steps, through the resident-state addon (runtime/resident.ts): each step sends the batch
// and a few scalars and gets back the loss and the gradient norm. The parameters cross to the host only when asked
// for (evaluation, checkpoints, the saved delta).
import { Graph, type HostTensor } from '../onnx/graph.js';
import { serialize } from '../onnx/serialize.js';
import { ResidentContext, residentSupport } from '../runtime/resident.js';
import type { SessionOptions } from '../runtime/session.js';
import {
  ScaledSteps,
  StepRunner,
  zerosLike,
  type Runner,
  type RunnerOptions,
  type RunnerState,
  type StepResult,
} from './runner.js';
import { names, type TrainStepGraphs } from './step.js';

/** State names: parameters by their own name, moments and gradient sums by their graph inputs' names. */
const M = names.m,
  V = names.v,
  G = names.grad;

export class ResidentStepRunner extends ScaledSteps implements Runner {
  readonly fallbackReason = undefined;
  private constructor(
    graphs: TrainStepGraphs,
    private readonly ctx: ResidentContext,
    private readonly sessions: { step?: number; accumulate?: number; apply?: number; zeros?: number },
    /** Each parameter's shape. */
    private readonly shapes: Record<string, number[]>,
  ) {
    super(graphs);
  }

  static open(
    graphs: TrainStepGraphs,
    initial: Record<string, HostTensor>,
    device: 'cpu' | 'cuda',
    session: SessionOptions = {},
  ): ResidentStepRunner {
    const ctx = ResidentContext.create(device, session);
    try {
      const sessions: { step?: number; accumulate?: number; apply?: number; zeros?: number } = {};
      if (graphs.step) sessions.step = ctx.open(serialize(graphs.step));
      if (graphs.accumulate) sessions.accumulate = ctx.open(serialize(graphs.accumulate));
      if (graphs.apply) sessions.apply = ctx.open(serialize(graphs.apply));
      if (graphs.accumulate) sessions.zeros = ctx.open(serialize(zerosGraph(graphs.trainable, initial)));
      for (const p of graphs.trainable) {
        const t = initial[p];
        if (!t) throw new Error(`no initial value for trainable parameter "${p}"`);
        ctx.set(p, { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(t.data as Float32Array) });
        ctx.set(M(p), zerosLike(t));
        ctx.set(V(p), zerosLike(t));
      }
      const shapes = Object.fromEntries(graphs.trainable.map((p) => [p, [...initial[p].shape]]));
      return new ResidentStepRunner(graphs, ctx, sessions, shapes);
    } catch (e) {
      ctx.release();
      throw e;
    }
  }

  get device(): 'cpu' | 'cuda' {
    return this.ctx.device;
  }

  private read(name: (p: string) => string): Record<string, HostTensor> {
    return Object.fromEntries(this.graphs.trainable.map((p) => [p, this.ctx.get(name(p))]));
  }

  get params(): Record<string, HostTensor> {
    return this.read((p) => p);
  }
  get m(): Record<string, HostTensor> {
    return this.read(M);
  }
  get v(): Record<string, HostTensor> {
    return this.read(V);
  }

  /** Where each tensor of the state is, and its bytes (tests and diagnostics). */
  state(): { name: string; onDevice: boolean; bytes: number }[] {
    return this.ctx.list();
  }

  async step(microBatches: Record<string, HostTensor>[], lr: number, dropoutSeed = 0): Promise<StepResult> {
    const t = this.t + 1;
    const want = this.graphs.trainable;
    const bind = (name: (p: string) => string, to: (p: string) => string = name) =>
      Object.fromEntries(want.map((p) => [name(p), to(p)]));
    // Parameters and moments are read from the state and replaced by the graph's outputs (a skipped step's outputs
    // are its inputs: the graph keeps them when the gradients are not finite).
    const fromState = { ...bind((p) => p), ...bind(M), ...bind(V) };
    const toState = { ...bind(names.out, (p) => p), ...bind(names.mOut, M), ...bind(names.vOut, V) };
    let loss: number, out: Record<string, HostTensor>;
    if (this.sessions.step !== undefined) {
      if (microBatches.length !== 1) throw new Error(`this step graph takes 1 micro-batch, got ${microBatches.length}`);
      const feeds = { ...microBatches[0], ...this.stepInputs(t, lr), ...this.dropoutInput(dropoutSeed) };
      out = await this.ctx.run(this.sessions.step, feeds, fromState, toState, [names.loss, names.gradNorm]);
      loss = Number(out[names.loss].data[0]);
    } else {
      // The sums start at zero, made where they are kept (only their shapes cross), and stay in the state from one
      // micro-batch to the next.
      const shapes = Object.fromEntries(
        want.map((p) => [
          ZERO_SHAPE(p),
          { dtype: 'int64' as const, shape: [this.shapes[p].length], data: BigInt64Array.from(this.shapes[p], BigInt) },
        ]),
      );
      await this.ctx.run(this.sessions.zeros!, shapes, {}, bind(ZERO, G), []);
      let total = 0;
      for (const [i, mb] of microBatches.entries()) {
        const r = await this.ctx.run(
          this.sessions.accumulate!,
          { ...mb, ...this.microInputs(dropoutSeed, i) },
          { ...bind((p) => p), ...bind(G) },
          bind(names.gradOut, G),
          [names.loss],
        );
        total += Number(r[names.loss].data[0]);
      }
      loss = total / microBatches.length;
      out = await this.ctx.run(this.sessions.apply!, this.stepInputs(t, lr), { ...fromState, ...bind(G) }, toState, [
        names.gradNorm,
      ]);
    }
    const gradNorm = Number(out[names.gradNorm].data[0]);
    return this.settle(t, gradNorm) ? { loss, gradNorm, skipped: true } : { loss, gradNorm };
  }

  restore(state: RunnerState): void {
    for (const p of this.graphs.trainable)
      for (const [what, src, name] of [
        ['parameter', state.params, p],
        ['first moment', state.m, M(p)],
        ['second moment', state.v, V(p)],
      ] as const) {
        const t = src[p];
        if (!t) throw new Error(`checkpoint has no ${what} for "${p}"`);
        if (t.data.length !== this.shapes[p].reduce((a, b) => a * b, 1))
          throw new Error(`checkpoint ${what} of "${p}" has shape [${t.shape}], the model's is [${this.shapes[p]}]`);
        this.ctx.set(name, { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(t.data as Float32Array) });
      }
    this.t = state.step;
  }

  async release(): Promise<void> {
    this.ctx.release();
  }
}

const ZERO_SHAPE = (p: string): string => `${p}::zeros_shape`,
  ZERO = (p: string): string => `${p}::zeros`;

/**
 * A graph of a zero tensor per parameter, shaped by an int64 input: run on the device, it starts the gradient sums
 * there (a shape fed at run time cannot be folded into a stored tensor of zeros by onnxruntime, which would hold one).
 */
function zerosGraph(trainable: string[], initial: Record<string, HostTensor>): Graph {
  const g = new Graph();
  for (const p of trainable) {
    const shape = initial[p].shape;
    const zeros = g.op1(
      'ConstantOfShape',
      [g.input(ZERO_SHAPE(p), 'int64', [shape.length])],
      { value: { dtype: 'float32', shape: [1], data: new Float32Array(1) } },
      { infos: [{ dtype: 'float32', shape }] },
    );
    g.output(zeros, ZERO(p));
  }
  return g;
}

/** Where a run keeps its state: on the device (the resident runner), on the host, or on the device where it can. */
export type Residency = 'auto' | 'on' | 'off';

/**
 * The runner for `graphs`: resident on CUDA when the addon is built (`auto`), or as asked; otherwise StepRunner, which
 * feeds the state from the host every step. `device` is the device already chosen ('auto' resolves to the CPU there).
 */
export async function openRunner(
  graphs: TrainStepGraphs,
  initial: Record<string, HostTensor>,
  device: 'cpu' | 'cuda' | 'auto',
  opts: RunnerOptions & { resident?: Residency } = {},
): Promise<Runner> {
  const want = opts.resident ?? 'auto';
  const support = residentSupport();
  if (want === 'on' && !support.available) throw new Error(`resident state was asked for: ${support.reason}`);
  if (want === 'on') return ResidentStepRunner.open(graphs, initial, device === 'cuda' ? 'cuda' : 'cpu', opts.session);
  if (want === 'auto' && device === 'cuda' && support.available) {
    try {
      return ResidentStepRunner.open(graphs, initial, 'cuda', opts.session);
    } catch (e) {
      // The host path trains as well, only slower: say why once, and go on.
      process.stderr.write(
        `state on the device could not start (${(e as Error).message.trim()}); it is fed from the host\n`,
      );
    }
  }
  return StepRunner.open(graphs, initial, { ...opts, session: { ...opts.session, device } });
}
