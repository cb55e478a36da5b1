// Runs training-step graphs: keeps trainable parameters and AdamW moments on the host, feeds them every step (the
// resident runner, resident-runner.ts, keeps them on the device instead). What both share is here: the step's own
// inputs and dynamic loss scaling.
import type { HostTensor } from '../onnx/graph.js';
import type { SessionOptions } from '../runtime/session.js';
import { openInline, openInWorker, type SessionHandle } from '../runtime/host.js';
import { names, type TrainStepGraphs } from './step.js';

export interface StepResult {
  /** Mean loss over the micro-batches of this step. */
  loss: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Float16 activations: the gradients overflowed, nothing was updated and the loss scale was halved. */
  skipped?: boolean;
}

/** Dynamic loss scaling (as torch.amp.GradScaler): start high, halve on overflow, double after a run of good steps. */
export const LOSS_SCALE = { initial: 2 ** 16, growthInterval: 2000, min: 1 };

export interface RunnerOptions {
  session?: SessionOptions;
  /** Run sessions in a worker thread (default) or in this thread. */
  inWorker?: boolean;
}

export const zerosLike = (t: HostTensor): HostTensor => ({
  dtype: 'float32',
  shape: t.shape,
  data: new Float32Array(t.data.length),
});
const scalarF = (v: number): HostTensor => ({ dtype: 'float32', shape: [], data: Float32Array.of(v) });
const scalarI = (v: number): HostTensor => ({ dtype: 'int64', shape: [], data: BigInt64Array.of(BigInt(v)) });

/** A runner's state as a checkpoint holds it: the step count, parameters and AdamW's moments. */
export interface RunnerState {
  step: number;
  params: Record<string, HostTensor>;
  m: Record<string, HostTensor>;
  v: Record<string, HostTensor>;
}

/** What the trainer asks of a runner, wherever it keeps the state. */
export interface Runner {
  t: number;
  lossScale: number;
  readonly device: 'cpu' | 'cuda';
  readonly fallbackReason?: string;
  /** The trainable parameters and AdamW's moments, on the host (a resident runner copies them out). */
  readonly params: Record<string, HostTensor>;
  readonly m: Record<string, HostTensor>;
  readonly v: Record<string, HostTensor>;
  step(microBatches: Record<string, HostTensor>[], lr: number, dropoutSeed?: number): Promise<StepResult>;
  restore(state: RunnerState): void;
  release(): Promise<void>;
}

/** The step count, and dynamic loss scaling for graphs with float16 activations. */
export abstract class ScaledSteps {
  /** Optimizer steps taken. */
  t = 0;
  /** The loss scale fed to graphs with float16 activations. */
  lossScale = LOSS_SCALE.initial;
  private goodSteps = 0;
  constructor(protected readonly graphs: TrainStepGraphs) {}

  /** The inputs of the step (or apply) graph besides parameters, moments and the batch, for step `t`. */
  protected stepInputs(t: number, lr: number): Record<string, HostTensor> {
    return {
      [names.lr]: scalarF(lr),
      [names.step]: scalarI(t),
      ...(this.graphs.lossScaled ? { [names.lossScale]: scalarF(this.lossScale) } : {}),
    };
  }

  /** The inputs of an accumulate graph besides parameters, gradient sums and the batch. */
  protected microInputs(dropoutSeed: number, index: number): Record<string, HostTensor> {
    return {
      ...(this.graphs.lossScaled ? { [names.lossScale]: scalarF(this.lossScale) } : {}),
      // Each micro-batch draws its own masks, still a pure function of (seed, step, index).
      ...(this.graphs.dropoutNodes ? { [names.seed]: scalarI(dropoutSeed * 1009 + index) } : {}),
    };
  }

  protected dropoutInput(dropoutSeed: number): Record<string, HostTensor> {
    return this.graphs.dropoutNodes ? { [names.seed]: scalarI(dropoutSeed) } : {};
  }

  /**
   * After a step: under loss scaling, gradients that are not finite mean the graph kept parameters and moments, and
   * the step does not count (Adam's bias correction sees t unchanged) — the scale halves; a run of good steps doubles
   * it. Returns whether the step was skipped.
   */
  protected settle(t: number, gradNorm: number): boolean {
    if (this.graphs.lossScaled && !Number.isFinite(gradNorm)) {
      this.lossScale = Math.max(LOSS_SCALE.min, this.lossScale / 2);
      this.goodSteps = 0;
      return true;
    }
    this.t = t;
    if (this.graphs.lossScaled && ++this.goodSteps % LOSS_SCALE.growthInterval === 0) this.lossScale *= 2;
    return false;
  }
}

export class StepRunner extends ScaledSteps implements Runner {
  private constructor(
    graphs: TrainStepGraphs,
    private readonly sessions: { step?: SessionHandle; accumulate?: SessionHandle; apply?: SessionHandle },
    readonly params: Record<string, HostTensor>,
    readonly m: Record<string, HostTensor>,
    readonly v: Record<string, HostTensor>,
  ) {
    super(graphs);
  }

  static async open(
    graphs: TrainStepGraphs,
    initial: Record<string, HostTensor>,
    opts: RunnerOptions = {},
  ): Promise<StepRunner> {
    const open = opts.inWorker === false ? openInline : openInWorker;
    const sessions: { step?: SessionHandle; accumulate?: SessionHandle; apply?: SessionHandle } = {};
    if (graphs.step) sessions.step = await open(graphs.step, opts.session);
    if (graphs.accumulate) sessions.accumulate = await open(graphs.accumulate, opts.session);
    if (graphs.apply) sessions.apply = await open(graphs.apply, opts.session);
    const params: Record<string, HostTensor> = {},
      m: Record<string, HostTensor> = {},
      v: Record<string, HostTensor> = {};
    for (const p of graphs.trainable) {
      const t = initial[p];
      if (!t) throw new Error(`no initial value for trainable parameter "${p}"`);
      params[p] = { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(t.data as Float32Array) };
      m[p] = zerosLike(t);
      v[p] = zerosLike(t);
    }
    return new StepRunner(graphs, sessions, params, m, v);
  }

  get device(): 'cpu' | 'cuda' {
    return (this.sessions.step ?? this.sessions.accumulate)!.device;
  }

  /** Why CUDA was not used, when the device was `auto`. */
  get fallbackReason(): string | undefined {
    return (this.sessions.step ?? this.sessions.accumulate)!.fallbackReason;
  }

  /** One optimizer step over `microBatches` (one per accumulation step), with learning rate `lr`. */
  async step(microBatches: Record<string, HostTensor>[], lr: number, dropoutSeed = 0): Promise<StepResult> {
    const t = this.t + 1;
    const want = this.graphs.trainable;
    let loss: number, out: Record<string, HostTensor>;
    if (this.sessions.step) {
      if (microBatches.length !== 1) throw new Error(`this step graph takes 1 micro-batch, got ${microBatches.length}`);
      const feeds: Record<string, HostTensor> = {
        ...microBatches[0],
        ...this.stepInputs(t, lr),
        ...this.params,
        ...this.dropoutInput(dropoutSeed),
      };
      for (const p of want) {
        feeds[names.m(p)] = this.m[p];
        feeds[names.v(p)] = this.v[p];
      }
      out = await this.sessions.step.run(feeds);
      loss = Number(out[names.loss].data[0]);
    } else {
      let sums: Record<string, HostTensor> = Object.fromEntries(want.map((p) => [p, zerosLike(this.params[p])]));
      let total = 0;
      for (const [i, mb] of microBatches.entries()) {
        const feeds: Record<string, HostTensor> = { ...mb, ...this.params, ...this.microInputs(dropoutSeed, i) };
        for (const p of want) feeds[names.grad(p)] = sums[p];
        const r = await this.sessions.accumulate!.run(feeds);
        total += Number(r[names.loss].data[0]);
        sums = Object.fromEntries(want.map((p) => [p, r[names.gradOut(p)]]));
      }
      loss = total / microBatches.length;
      const feeds: Record<string, HostTensor> = { ...this.stepInputs(t, lr), ...this.params };
      for (const p of want) {
        feeds[names.m(p)] = this.m[p];
        feeds[names.v(p)] = this.v[p];
        feeds[names.grad(p)] = sums[p];
      }
      out = await this.sessions.apply!.run(feeds);
    }
    const gradNorm = Number(out[names.gradNorm].data[0]);
    if (this.settle(t, gradNorm)) return { loss, gradNorm, skipped: true };
    for (const p of want) {
      this.params[p] = out[names.out(p)];
      this.m[p] = out[names.mOut(p)];
      this.v[p] = out[names.vOut(p)];
    }
    return { loss, gradNorm };
  }

  /** Continues from a checkpoint: parameters, moments and the step count (the schedule and bias correction). */
  restore(state: RunnerState): void {
    for (const p of this.graphs.trainable) {
      for (const [what, src, dst] of [
        ['parameter', state.params, this.params],
        ['first moment', state.m, this.m],
        ['second moment', state.v, this.v],
      ] as const) {
        const t = src[p];
        if (!t) throw new Error(`checkpoint has no ${what} for "${p}"`);
        if (t.data.length !== dst[p].data.length)
          throw new Error(`checkpoint ${what} of "${p}" has shape [${t.shape}], the model's is [${dst[p].shape}]`);
        dst[p] = { dtype: 'float32', shape: [...dst[p].shape], data: Float32Array.from(t.data as Float32Array) };
      }
    }
    this.t = state.step;
  }

  async release(): Promise<void> {
    for (const s of Object.values(this.sessions)) await s?.release();
  }
}
