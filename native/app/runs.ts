// Runs: recording a new run (its folder, run.json, then its row) and queueing it; estimating one before it starts;
// reading runs back; pausing, resuming and cancelling. The CLI, the demo and the UI all create runs here.
import { mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import {
  badParams,
  conflict,
  RESUMABLE_STATUSES,
  type CompareResult,
  type RunConfig,
  type RunControl,
  type RunDetail,
  type RunEstimate,
  type RunMetrics,
  type RunStarted,
  type RunSummary,
  type RunStatus,
} from '../contract/index.js';
import { missingValidation, readDatasetVersion, readSplitSync, tokenLengthStats, SPLITS } from '../data/index.js';
import { loadWithDeltas, parseDeltaConfig, type DeltaConfig } from '../delta/index.js';
import { deltaReport } from '../delta/report.js';
import { safeName } from '../files/paths.js';
import { chatTemplateFor, ChatTemplateError, type ChatTemplate } from '../models/chat-template.js';
import { TextTokenizer } from '../models/tokenizer.js';
import { cudaStatus } from '../runtime/providers.js';
import type { TrainConfig } from '../train/trainer.js';
import { Workspace } from '../store/workspace.js';
import { toDeltaReport, toRun } from './dto.js';
import type { EventBus } from './events.js';
import { readRunFile, writeRunFile, type RunFile } from './run-file.js';
import { readRunLog } from './run-log.js';
import type { RunQueue } from './run-queue.js';
import { headTask } from './tasks.js';

/** A run config's deltas as the engine reads them; a bad one is a bad parameter naming the key. */
export function runDeltas(raw: unknown[], where = 'deltas'): DeltaConfig[] {
  try {
    return parseDeltaConfig(raw, where);
  } catch (e) {
    throw badParams((e as Error).message, 'deltas');
  }
}

/**
 * Versions of one plugin are one delta over time: the same task on the same base. A name that holds versions of
 * another task or base is refused, saying which, before anything is recorded.
 */
export function checkPluginLineage(ws: Workspace, name: string, task: string, fingerprint: string, base: string): void {
  let latest;
  try {
    latest = ws.resolvePlugin(name);
  } catch {
    return; // a new plugin
  }
  const why =
    latest.task !== task
      ? `its versions are ${latest.task} plugins and this one is ${task}`
      : latest.base_fingerprint !== fingerprint
        ? `its versions were trained on another base model (fingerprint ${latest.base_fingerprint.slice(0, 12)}…), this one on ${base} (${fingerprint.slice(0, 12)}…)`
        : null;
  if (why) throw conflict(`plugin "${name}" cannot take this as its next version: ${why}; choose another plugin name`);
}

/** Rows per split whose conversations are rendered before a chat run is recorded (the trainer renders them all). */
const CHAT_CHECK_ROWS = 20_000;

/**
 * The chat template a chat run writes its conversations with, checked before anything is recorded: the model has
 * one (or one is named), and it takes the dataset's conversations (Gemma's refuses a system message, Mistral's
 * turns that do not alternate). A template given for another task is a mistake said as one.
 */
export function chatTemplateOfRun(
  modelDir: string,
  datasetDir: string,
  task: string,
  choice: string | undefined,
  dataset = 'the dataset',
): ChatTemplate | undefined {
  if (task !== 'chat') {
    if (choice !== undefined)
      throw badParams(`a chat template is for chat datasets; ${dataset} is a ${task} dataset`, 'chatTemplate');
    return undefined;
  }
  let t: ChatTemplate;
  try {
    t = chatTemplateFor(modelDir, TextTokenizer.fromFolder(modelDir), choice);
  } catch (e) {
    if (e instanceof ChatTemplateError) throw badParams(e.message, 'chatTemplate');
    throw e;
  }
  for (const split of SPLITS) {
    let n = 0;
    for (const row of readSplitSync(datasetDir, split)) {
      if (++n > CHAT_CHECK_ROWS) break;
      try {
        t.render(row.messages ?? []);
      } catch (e) {
        if (!(e instanceof ChatTemplateError)) throw e;
        throw badParams(
          `${dataset}: ${split} conversation ${n} cannot be written with the chat template (${t.source}): ${e.message}`,
          'chatTemplate',
        );
      }
    }
  }
  return t;
}

/** Default training speeds (tokens/s) for time estimates, until a finished run on the device measured one. */
export interface DefaultSpeeds {
  cpu: number;
  cuda: number;
}

export class Runs {
  constructor(
    private readonly need: () => Workspace,
    private readonly queue: RunQueue,
    private readonly bus: EventBus,
    private readonly speeds: DefaultSpeeds = { cpu: 2_000, cuda: 40_000 },
  ) {}

  /**
   * What would fail a run before its first step, refused before anything is recorded: modules its deltas do not find,
   * a CUDA that cannot be used, a plugin name whose versions are of another task or base.
   */
  async preflight(cfg: RunConfig): Promise<{ pluginName: string }> {
    const ws = this.need();
    const model = ws.getModel(cfg.modelId);
    const dv = ws.datasetVersion(cfg.datasetVersionId);
    const version = readDatasetVersion(ws.path(dv.dir));
    const deltas = runDeltas(cfg.deltas);
    const pluginName = cfg.plugin ?? safeName(`${dv.dataset}-${deltas.map((d) => d.method).join('+')}`);
    try {
      loadWithDeltas(ws.modelPath(model), { task: headTask(version.task), numLabels: version.labels?.length }, deltas);
    } catch (e) {
      throw badParams(`${model.name}: ${(e as Error).message}`, 'deltas');
    }
    chatTemplateOfRun(ws.modelPath(model), ws.path(dv.dir), version.task, cfg.chatTemplate, `dataset ${dv.dataset}`);
    if (cfg.device === 'cuda') {
      const cuda = await cudaStatus();
      if (!cuda.usable)
        throw badParams(
          `device "cuda" cannot be used here: ${cuda.reason}; choose "auto" to train on the CPU`,
          'device',
        );
    }
    checkPluginLineage(ws, pluginName, headTask(version.task), model.fingerprint, model.name);
    return { pluginName };
  }

  /** Records a run (folder and run.json first, then the row) and queues it, once preflight has passed. */
  async start(cfg: RunConfig, opts: { sweep?: string } = {}): Promise<RunStarted> {
    const { pluginName } = await this.preflight(cfg);
    return this.record(cfg, pluginName, opts.sweep);
  }

  private record(cfg: RunConfig, pluginName: string, sweep?: string): RunStarted {
    const ws = this.need();
    const model = ws.getModel(cfg.modelId);
    const dv = ws.datasetVersion(cfg.datasetVersionId);
    const dsDir = ws.path(dv.dir);
    const version = readDatasetVersion(dsDir);
    // Said before anything is recorded: a run with nothing to evaluate on ends with no metrics, easily missed.
    const noValidation = missingValidation({ ...version, split: ws.datasetVersionSplit(dv.id) ?? version.split });
    if (noValidation) throw badParams(`dataset ${dv.dataset}: ${noValidation}`, 'datasetVersionId');
    const deltas = runDeltas(cfg.deltas);
    const methodName = deltas.map((d) => d.method).join('+');
    const id = Workspace.newRunId();
    const runDir = join(ws.dir, 'runs', id);
    mkdirSync(runDir, { recursive: true });
    const config: TrainConfig = {
      model: ws.modelPath(model),
      task: headTask(version.task),
      labels: version.labels,
      deltas,
      epochs: cfg.epochs,
      maxSteps: cfg.maxSteps,
      maxTime: cfg.maxTime,
      batchSize: cfg.batchSize,
      accumulation: cfg.accumulation,
      lr: cfg.lr,
      schedule: cfg.schedule,
      warmup: cfg.warmup,
      weightDecay: cfg.weightDecay,
      maxLength: cfg.maxLength,
      seed: cfg.seed,
      device: cfg.device,
      precision: cfg.precision,
      evalEvery: cfg.evalEvery,
      earlyStopping: cfg.earlyStopping,
      checkpointEvery: cfg.checkpointEvery,
      runDir,
      ...(cfg.chatTemplate !== undefined ? { chatTemplate: cfg.chatTemplate } : {}),
    };
    const run: RunFile = {
      id,
      dataset: { dir: dsDir, digest: version.digest, task: version.task },
      config,
      plugin: pluginName,
    };
    writeRunFile(runDir, run);
    ws.createRun({
      id,
      name: cfg.name ?? (sweep ? `${sweep}: ${methodName}` : undefined),
      config,
      method: methodName,
      modelId: model.id,
      datasetVersionId: dv.id,
      dir: relative(ws.dir, runDir),
      totalParams: model.params ?? undefined,
    });
    const position = this.queue.enqueue(id);
    return { runId: id, status: this.queue.current === id ? 'running' : 'queued', position };
  }

  /** Queues one run per variant of a base config; every variant is checked before any is queued. */
  async sweep(base: RunConfig, variants: Partial<RunConfig>[], name?: string): Promise<{ runIds: string[] }> {
    const label = name ?? `sweep ${new Date().toISOString().slice(0, 16)}`;
    const configs = variants.map(
      (v) => ({ ...base, ...Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined)) }) as RunConfig,
    );
    const names: string[] = [];
    for (const c of configs) names.push((await this.preflight(c)).pluginName);
    return { runIds: configs.map((c, i) => this.record(c, names[i], label).runId) };
  }

  estimate(cfg: RunConfig): RunEstimate {
    const ws = this.need();
    const model = ws.getModel(cfg.modelId);
    const dsDir = ws.path(ws.datasetVersion(cfg.datasetVersionId).dir);
    const version = readDatasetVersion(dsDir);
    const dir = ws.modelPath(model);
    const { model: built, applied } = loadWithDeltas(
      dir,
      { task: headTask(version.task), numLabels: version.labels?.length },
      runDeltas(cfg.deltas),
      cfg.seed,
    );
    const rep = toDeltaReport(deltaReport(built, applied, { batch: cfg.batchSize, seq: cfg.maxLength }));
    const rows = version.rows.train;
    // Mean token length: measured on the train split under the model's tokenizer when it is small enough to read
    // quickly, else about 4 characters per token.
    let meanLength: number;
    let lengthBasis: string;
    if (rows <= 50_000) {
      const chat = chatTemplateOfRun(dir, dsDir, version.task, cfg.chatTemplate);
      meanLength = tokenLengthStats(dsDir, TextTokenizer.fromFolder(dir), chat).mean;
      lengthBasis = 'mean token length measured on the train split';
    } else {
      const f = version.stats.fields;
      meanLength = Object.values(f).reduce((a, s) => a + (s?.meanChars ?? 0), 0) / 4;
      lengthBasis = 'mean length guessed at 4 characters per token';
    }
    const acc = cfg.accumulation;
    const stepsPerEpoch = Math.ceil(Math.ceil(rows / cfg.batchSize) / acc);
    const steps = Math.min(cfg.maxSteps ?? Infinity, cfg.epochs * stepsPerEpoch);
    const tokens = Math.round(
      Math.min(steps * cfg.batchSize * acc, rows * cfg.epochs) * Math.min(cfg.maxLength, meanLength),
    );
    const device: 'cpu' | 'cuda' = cfg.device === 'cuda' ? 'cuda' : 'cpu';
    // Speed: the fastest finished run of this model and method on this device, else the default for the device.
    const measured = ws
      .listRuns({ status: 'finished' })
      .filter(
        (r) =>
          r.model_id === model.id &&
          r.device === device &&
          (r.tokens_per_sec ?? 0) > 0 &&
          r.method === applied.methods.map((m) => m.config.method).join('+'),
      );
    const speed = measured.length ? Math.max(...measured.map((r) => r.tokens_per_sec!)) : this.speeds[device];
    const seconds = tokens / speed;
    const basis =
      `${tokens.toLocaleString('en-US')} tokens (${steps} steps × batch ${cfg.batchSize * acc}, ${lengthBasis}: ${meanLength.toFixed(1)}, capped at maxLength ${cfg.maxLength}) ` +
      `at ${Math.round(speed).toLocaleString('en-US')} tokens/s ${measured.length ? `measured by run ${measured[0].id} on ${device}` : `(an assumed default for ${device}; a finished run of this model and method replaces it with a measured speed)`}` +
      `${cfg.device === 'auto' ? '; device "auto" is estimated as the CPU' : ''}; evaluation and start-up not included`;
    return {
      trainableParams: rep.trainableParams,
      trainablePercent: rep.trainablePercent,
      backboneParams: rep.backboneParams,
      pluginBytes: rep.pluginBytes,
      memoryBytes: rep.estimatedTrainMemoryBytes,
      memory: rep.estimate,
      byMethod: rep.byMethod,
      device,
      steps,
      tokens,
      tokensPerSec: speed,
      secondsEstimate: seconds,
      basis,
    };
  }

  list(status?: RunStatus): RunSummary[] {
    return this.need()
      .listRuns({ status })
      .map((r) => ({ ...toRun(r), metrics: r.metrics }));
  }

  get(runId: string): RunDetail {
    const ws = this.need();
    const run = ws.getRun(runId);
    const plugin = ws.pluginOfRun(run.id);
    return {
      run: toRun(run),
      config: JSON.parse(run.config) as Record<string, unknown>,
      metricKeys: ws.metricKeys(run.id),
      latest: ws.latestMetrics(run.id),
      plugin: plugin ? { name: plugin.plugin, version: plugin.version } : null,
      queuePosition: this.queue.position(run.id),
    };
  }

  /** The run's recorded folder and its run.json. */
  file(runId: string): { dir: string; run: RunFile } {
    const ws = this.need();
    const dir = ws.path(ws.getRun(runId).dir);
    return { dir, run: readRunFile(dir) };
  }

  log(runId: string, tail: number): { lines: string[] } {
    return { lines: readRunLog(this.need(), runId, tail) };
  }

  metrics(runId: string, keys?: string[], afterStep?: number): RunMetrics {
    const ws = this.need();
    const id = ws.getRun(runId).id;
    const after = afterStep ?? -1;
    return {
      runId: id,
      series: Object.fromEntries(
        (keys ?? ws.metricKeys(id)).map((k) => [k, ws.metricSeries(id, k).filter((x) => x.step > after)]),
      ),
    };
  }

  pause(runId: string): RunControl {
    const ws = this.need();
    this.queue.pause(runId, ws.getRun(runId).status);
    return { runId, status: 'paused' };
  }

  /** Continues a paused run, or queues an interrupted or cancelled one to continue from its last checkpoint. */
  resume(runId: string): RunControl {
    const ws = this.need();
    const row = ws.getRun(runId);
    if (this.queue.resumeCurrent(row.id)) return { runId: row.id, status: 'running' };
    if (this.queue.position(row.id) !== null) return { runId: row.id, status: 'queued' };
    if (row.status === 'finished') {
      const plugin = ws.pluginOfRun(row.id);
      throw conflict(
        `run ${row.id} has already finished${plugin ? ` (plugin ${plugin.plugin})` : ''}; start a new run to train again`,
      );
    }
    if (!RESUMABLE_STATUSES.includes(row.status) && row.status !== 'queued')
      throw conflict(
        `run ${row.id} is ${row.status}: only a paused, interrupted, cancelled or failed run can be resumed`,
      );
    readRunFile(ws.path(row.dir)); // its folder must still hold what the trainer continues from
    ws.setRunStatus(row.id, 'queued');
    this.queue.enqueue(row.id);
    return { runId: row.id, status: this.queue.current === row.id ? 'running' : 'queued' };
  }

  cancel(runId: string): RunControl {
    const ws = this.need();
    const row = ws.getRun(runId);
    if (this.queue.cancel(row.id, row.status)) {
      const reason = 'cancelled before it started';
      ws.setRunStatus(row.id, 'cancelled', reason);
      this.bus.emit('run.status', { runId: row.id, status: 'cancelled', reason });
      return { runId: row.id, status: 'cancelled' };
    }
    return { runId: row.id, status: 'running' };
  }

  compare(runIds: string[]): CompareResult {
    const ws = this.need();
    const runs = runIds.map((id) => {
      const r = ws.getRun(id);
      const m = ws.latestMetrics(r.id);
      return {
        id: r.id,
        name: r.name,
        method: r.method,
        status: r.status,
        trainableParams: r.trainable_params,
        trainablePercent: r.trainable_params && r.total_params ? (100 * r.trainable_params) / r.total_params : null,
        steps: r.steps,
        trainSeconds: r.train_seconds,
        tokensPerSec: r.tokens_per_sec,
        metrics: Object.fromEntries(
          Object.entries(m)
            .filter(([k]) => k.startsWith('eval/'))
            .map(([k, x]) => [k.slice(5), x]),
        ),
      };
    });
    return { runs, metricKeys: [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))].sort() };
  }
}
