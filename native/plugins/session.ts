// Using plugins: one base model opened once, any set of .delta plugins attached to it at a time (several at once =
// combination, applied in the given order), predictions with that set or with the bare base, and merged weights
// (mergeDeltas: the methods' own merge rules, folded as the merged export folds them).
//
// Plugin parameters are graph *inputs*, so the compiled onnxruntime session belongs to a *structure* (task, label
// count, and each plugin's methods and tensor names), not to a plugin: swapping to another plugin of the same
// structure only changes the feeds. Sessions are cached per structure signature in a small LRU; the base folder is
// read once and every structure is built from it.
//
// Combination rules (checked on attach, which changes nothing when it throws):
//  - every plugin has the same task; classification plugins have the same labels, in the same order;
//  - a backbone weight (a task head, BitFit on an existing bias, head-only, full) is trained by at most one plugin:
//    so at most one plugin carries a task head, and a head the base lacks must come from exactly one plugin;
//  - at most one plugin changes the inputs (soft prompt) and at most one the attention (prefix): the model has one
//    prompt and one prefix.
import { basename } from 'node:path';
import {
  applyDeltas,
  deltaBuildOptions,
  METHODS,
  parseDeltaConfig,
  type AppliedDelta,
  type DeltaConfig,
} from '../delta/index.js';
import { mergeDeltas } from '../delta/merge.js';
import { toFloat32 } from '../onnx/dtype.js';
import type { Graph, HostTensor } from '../onnx/graph.js';
import { chatTemplateFor, type ChatMessage, type ChatTemplate } from '../models/chat-template.js';
import { readModelFolder, type ModelFolder } from '../models/folder.js';
import { architectureOf, loadModel } from '../models/index.js';
import { TextTokenizer } from '../models/tokenizer.js';
import type { BuiltModel, Task } from '../models/types.js';
import { openInline, type SessionHandle } from '../runtime/host.js';
import type { Device } from '../runtime/session.js';
import { makeCollator } from '../train/collate.js';
import { withoutDropout } from '../train/dropout.js';
import { Generator, type GenerationStep } from '../train/generate.js';
import { checkBase, modelFingerprint, PluginError, readPlugin, type Plugin } from './format.js';

export interface PluginSessionOptions {
  device?: Device;
  /** Task of the bare base (default: the architecture's natural one); attached plugins bring their own. */
  task?: Task;
  /** Token limit for inputs (default: the plugins' training limit, else the model's position table, else 512). */
  maxLength?: number;
  /** Compiled structures kept (each holds one onnxruntime session); default 4. */
  cacheSize?: number;
}

export type PredictInput = string | { text: string; text_pair?: string };

export type Prediction =
  { label: string; probabilities: Record<string, number> } | { value: number } | { generated: string };

export interface PredictOptions {
  /**
   * Predict with the bare base (no plugin), for side-by-side comparison; the attached plugins stay attached and give
   * the task and labels. A head the base lacks is not borrowed from a plugin: that is an error.
   */
  base?: boolean;
  /** Language models: most tokens to generate (default 32). */
  maxNewTokens?: number;
}

export interface AttachedPlugin {
  name: string;
  file: string;
  task: Task;
  methods: DeltaConfig[];
  /** False when attached with force although trained on another base. */
  baseMatches: boolean;
}

interface Attached extends AttachedPlugin {
  plugin: Plugin;
}

// Config keys that only decide a parameter's starting value or training noise (the methods mark them) do not change
// the inference graph, so plugins that differ only in them share one compiled structure.
function structural(methods: DeltaConfig[]): DeltaConfig[] {
  const stripped = methods.map(
    (c) =>
      Object.fromEntries(
        Object.entries(c).filter(([k]) => !METHODS.get(c.method)?.keys[k]?.trainingOnly),
      ) as DeltaConfig,
  );
  return parseDeltaConfig(stripped);
}

const canonical = (v: unknown): string =>
  Array.isArray(v)
    ? `[${v.map(canonical).join(',')}]`
    : v && typeof v === 'object'
      ? `{${Object.keys(v)
          .sort()
          .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
          .join(',')}}`
      : JSON.stringify(v);

/** A built graph with its delta parameters as inputs, and (once predicted with) its onnxruntime session. */
class Compiled {
  private opened?: Promise<{ run: SessionHandle } | { gen: Generator }>;
  private busy = 0;
  private retired = false;

  constructor(
    readonly model: BuiltModel,
    readonly applied: AppliedDelta[],
    private readonly owner: PluginSession,
  ) {}

  /** Graph values of every plugin parameter, in plugin order. */
  get paramValues(): string[] {
    return this.applied.flatMap((a) => a.params.map((p) => p.value));
  }

  private open(): Promise<{ run: SessionHandle } | { gen: Generator }> {
    this.opened ??= (async () => {
      const m = this.model;
      this.owner.counters.sessionsBuilt++;
      if (m.task === 'causal-lm' || m.task === 'seq2seq')
        return { gen: await Generator.open(m, this.owner.tokenizer, this.paramValues, this.owner.device) };
      const g: Graph = withoutDropout(m.graph);
      for (const v of this.paramValues) if (g.initializers.has(v)) g.promoteToInput(v);
      g.outputs.length = 0;
      g.output(m.logits);
      g.prune();
      return { run: await openInline(g, { device: this.owner.device }) };
    })();
    return this.opened;
  }

  async predict(
    inputs: PredictInput[],
    params: Record<string, HostTensor>,
    labels: string[] | undefined,
    maxLength: number,
    opts: PredictOptions,
  ): Promise<Prediction[]> {
    this.busy++;
    try {
      const s = await this.open();
      if ('gen' in s) {
        const out: Prediction[] = [];
        for (const x of inputs) {
          if (typeof x !== 'string')
            throw new Error(`a ${this.model.task} model takes text prompts, not ${JSON.stringify(x)}`);
          out.push({ generated: await s.gen.generate(x, params, opts.maxNewTokens ?? 32) });
        }
        return out;
      }
      const task = this.model.task;
      // Per call: plugins sharing this structure may name their labels differently or keep another token limit.
      const collator = makeCollator(this.model, this.owner.tokenizer, { maxLength, labels });
      const rows = inputs.map((x) => ({
        ...(typeof x === 'string' ? { text: x } : x),
        label: task === 'classification' ? labels![0] : 0,
      }));
      if (rows.some((r) => (r.text_pair === undefined) !== (rows[0].text_pair === undefined)))
        throw new Error('predict: give every input a text_pair, or none');
      const out: Prediction[] = [];
      const BATCH = 16;
      for (let i = 0; i < rows.length; i += BATCH) {
        const batch = collator.batch(rows.slice(i, i + BATCH));
        const feeds: Record<string, HostTensor> = {};
        for (const n of s.run.inputNames) feeds[n] = batch[n] ?? params[n];
        const logits = (await s.run.run(feeds))[this.model.logits];
        const d = logits.data as Float32Array;
        const n = Math.min(BATCH, rows.length - i);
        // NaN would come out as null probabilities: say what it means instead.
        if (d.some((v) => !Number.isFinite(v)))
          throw new Error(
            `predict: the model computed NaN or infinity for these inputs; the attached plugins' weights or scales overflow float32`,
          );
        if (task === 'regression') {
          for (let r = 0; r < n; r++) out.push({ value: d[r] });
          continue;
        }
        const C = logits.shape[1];
        for (let r = 0; r < n; r++) {
          const row = Array.from(d.subarray(r * C, r * C + C));
          const max = Math.max(...row);
          const e = row.map((v) => Math.exp(v - max));
          const z = e.reduce((a, b) => a + b, 0);
          out.push({
            label: labels![row.indexOf(max)],
            probabilities: Object.fromEntries(labels!.map((l, k) => [l, e[k] / z])),
          });
        }
      }
      return out;
    } finally {
      if (--this.busy === 0 && this.retired) await this.release();
    }
  }

  /** The reply to a conversation, streamed a step per token (see Generator.stream). */
  async *chat(
    messages: readonly ChatMessage[],
    params: Record<string, HostTensor>,
    template: ChatTemplate,
    maxNewTokens: number,
  ): AsyncGenerator<GenerationStep> {
    this.busy++;
    try {
      const s = await this.open();
      if (!('gen' in s) || this.model.task !== 'causal-lm')
        throw new Error(`chat needs a causal language model (this one is ${this.model.task})`);
      yield* s.gen.chat(messages, params, maxNewTokens, template);
    } finally {
      if (--this.busy === 0 && this.retired) await this.release();
    }
  }

  /** Released now, or after the predictions in flight. */
  async retire(): Promise<void> {
    this.retired = true;
    if (this.busy === 0) await this.release();
  }

  private async release(): Promise<void> {
    const s = this.opened;
    this.opened = undefined;
    if (!s) return;
    const o = await s.catch(() => undefined);
    if (o) await ('gen' in o ? o.gen.release() : o.run.release());
  }
}

interface Structure {
  signature: string;
  task: Task;
  numLabels?: number;
  compiled: Compiled;
}

/** A base model with plugins attached, detached and swapped at run time. */
export class PluginSession {
  readonly counters = { sessionsBuilt: 0, graphsBuilt: 0, evicted: 0 };
  private attachedList: Attached[] = [];
  private readonly cache = new Map<string, Structure>();
  private fingerprint?: string;
  private closed = false;

  private constructor(
    readonly folder: ModelFolder,
    readonly tokenizer: TextTokenizer,
    readonly device: Device,
    private readonly opts: PluginSessionOptions,
  ) {}

  /** Opens a base model folder (read once; nothing is compiled until the first prediction). */
  static async open(modelDir: string, opts: PluginSessionOptions = {}): Promise<PluginSession> {
    const folder = readModelFolder(modelDir);
    const arch = architectureOf(folder);
    if (opts.task && !arch.tasks.includes(opts.task))
      throw new Error(
        `${modelDir}: ${String(folder.config.model_type)} models support the tasks ${arch.tasks.join(', ')} (asked: ${opts.task})`,
      );
    return new PluginSession(folder, TextTokenizer.fromFolder(modelDir), opts.device ?? 'auto', opts);
  }

  /** onnxruntime sessions compiled so far (a plugin swap within one structure compiles none). */
  get sessionsBuilt(): number {
    return this.counters.sessionsBuilt;
  }

  get attached(): AttachedPlugin[] {
    return this.attachedList.map(({ plugin: _p, ...rest }) => rest);
  }

  /** The task the next prediction answers: the attached plugins', else the base's. */
  get task(): Task {
    return this.attachedList[0]?.task ?? this.opts.task ?? architectureOf(this.folder).defaultTask;
  }

  /**
   * Attaches plugins (files or already read ones) after those attached, in the given order. Each is verified (format,
   * tensor digest) and checked against this base: another base's plugin is refused unless `force`. The whole set
   * must combine (see the rules at the top); if not, nothing changes.
   */
  attach(plugins: (string | Plugin)[], opts: { force?: boolean } = {}): AttachedPlugin[] {
    this.live();
    const added = plugins.map((p) => this.load(p, opts.force ?? false));
    const next = [...this.attachedList, ...added];
    const names = new Set<string>();
    for (const a of next) {
      if (names.has(a.name))
        throw new Error(`a plugin named "${a.name}" is already attached; detach it first, or rename the file`);
      names.add(a.name);
    }
    const st = this.structureFor(next);
    this.feedsFor(st, next); // tensors fit the graph
    this.attachedList = next;
    return added.map(({ plugin: _p, ...rest }) => rest);
  }

  /** Detaches one plugin by name, or all of them. Compiled structures stay cached for a later swap back. */
  detach(name?: string): void {
    if (name === undefined) {
      this.attachedList = [];
      return;
    }
    const i = this.attachedList.findIndex((a) => a.name === name);
    if (i < 0)
      throw new Error(
        `no plugin "${name}" is attached (attached: ${this.attachedList.map((a) => a.name).join(', ') || 'none'})`,
      );
    this.attachedList = this.attachedList.filter((_, k) => k !== i);
  }

  /**
   * Predictions for each input with the attached plugins (or the bare base): classification {label, probabilities},
   * regression {value}, language models {generated} (greedy).
   */
  async predict(inputs: PredictInput[], opts: PredictOptions = {}): Promise<Prediction[]> {
    this.live();
    const set = opts.base ? [] : this.attachedList;
    const st = this.structureFor(set, this.attachedList);
    const labels = this.labelsOf(st, set.length ? set : this.attachedList);
    return st.compiled.predict(inputs, this.feedsFor(st, set), labels, this.maxLengthOf(set, st.compiled.model), opts);
  }

  /**
   * The reply of the base with the attached plugins (or of the bare base) to a conversation that ends with the user's
   * turn, written with `template`, streamed: each step holds the reply so far; the last says why it stopped (the
   * template's end-of-turn marker or eos, or maxNewTokens).
   */
  chat(
    messages: readonly ChatMessage[],
    opts: { template: ChatTemplate; base?: boolean; maxNewTokens?: number },
  ): AsyncGenerator<GenerationStep> {
    this.live();
    const set = opts.base ? [] : this.attachedList;
    const st = this.structureFor(set, this.attachedList);
    if (st.task !== 'causal-lm')
      throw new Error(
        `chat needs a causal language model; ${set.length ? 'the attached plugins are' : 'this base is'} ${st.task}`,
      );
    return st.compiled.chat(messages, this.feedsFor(st, set), opts.template, opts.maxNewTokens ?? 128);
  }

  /** The chat template this base writes conversations with: one named (or given), else its own. */
  chatTemplate(choice?: string): ChatTemplate {
    return chatTemplateFor(this.folder.dir, this.tokenizer, choice);
  }

  /**
   * The base with LoRA and (IA)³ plugins merged into its weights, in the given order (a task head a plugin carries is
   * taken as it is): a plain model with no delta nodes that predicts as the attached plugins do.
   */
  async mergeInto(plugins: (string | Plugin)[], opts: { force?: boolean } = {}): Promise<MergedModel> {
    this.live();
    const set = plugins.map((p) => this.load(p, opts.force ?? false));
    if (set.length === 0) throw new Error('mergeInto: give at least one plugin');
    const st = this.structureFor(set);
    const { model, applied } = st.compiled;
    const feeds = this.feedsFor(st, set);
    let weights: Record<string, HostTensor> = {};
    const heads: Record<string, HostTensor> = {};
    set.forEach((a, i) => {
      try {
        weights = mergeDeltas(model, applied[i], feeds, 1, weights);
      } catch (e) {
        throw new Error(`plugin "${a.name}": ${(e as Error).message}`, { cause: e });
      }
      for (const p of applied[i].params) if (p.existing) heads[p.name] = feeds[p.value];
    });
    const merged = loadModel(this.folder, {
      task: st.task,
      numLabels: st.numLabels,
      weights: { ...weights, ...heads },
    });
    // A head the folder lacks is created by the builder, which ignores `weights` for it: set its values here.
    for (const name of Object.keys(merged.created)) {
      const v = merged.builder.weightValues.get(name)!;
      if (!heads[name]) throw new Error(`mergeInto: no plugin carries the task head "${name}" this base lacks`);
      merged.graph.initializers.set(v.name, { kind: 'host', tensor: heads[name] });
    }
    this.counters.graphsBuilt++;
    const compiled = new Compiled(merged, [], this);
    const labels = this.labelsOf(st, set);
    const maxLength = this.maxLengthOf(set, merged);
    return {
      weights: { ...weights, ...heads },
      predict: (inputs, o = {}) => compiled.predict(inputs, {}, labels, maxLength, o),
      close: () => compiled.retire(),
    };
  }

  /** Releases every compiled session. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.cache.values()];
    this.cache.clear();
    this.attachedList = [];
    await Promise.all(all.map((s) => s.compiled.retire()));
  }

  private live(): void {
    if (this.closed) throw new Error('this plugin session is closed');
  }

  private load(p: string | Plugin, force: boolean): Attached {
    const plugin = typeof p === 'string' ? readPlugin(p) : p;
    const name = plugin.meta.plugin ?? basename(plugin.file).replace(/\.delta$/, '');
    this.fingerprint ??= modelFingerprint(this.folder);
    let baseMatches = plugin.meta.base.fingerprint === this.fingerprint;
    // checkBase words the refusal (both fingerprints); only called when they differ, so the base is sampled once.
    if (!baseMatches)
      baseMatches = checkBase(plugin.meta, this.folder, force, `plugin "${name}" (${plugin.file})`).matches;
    return { name, file: plugin.file, task: plugin.meta.task, methods: plugin.meta.methods, baseMatches, plugin };
  }

  private labelsOf(st: Structure, set: Attached[]): string[] | undefined {
    if (st.task !== 'classification') return undefined;
    const fromPlugin = set.find((a) => a.plugin.meta.labels)?.plugin.meta.labels;
    if (fromPlugin) return fromPlugin;
    const id2label = this.folder.config.id2label as Record<string, string> | undefined;
    const n = st.compiled.model.numLabels ?? 2;
    return Array.from({ length: n }, (_, i) => id2label?.[String(i)] ?? `LABEL_${i}`);
  }

  private maxLengthOf(set: Attached[], model: BuiltModel): number {
    if (this.opts.maxLength) return this.opts.maxLength;
    const trained = set.map((a) => a.plugin.meta.maxLength).filter((n): n is number => typeof n === 'number' && n > 0);
    if (trained.length) return Math.min(...trained);
    const c = this.folder.config;
    const positions = [c.max_position_embeddings, c.n_positions].find((v): v is number => typeof v === 'number');
    // Virtual tokens (soft prompt, prefix) take positions too.
    return Math.min(
      512,
      positions ? positions - model.builder.promptTokens - model.builder.prefixTokens : 512,
      this.tokenizer.modelMaxLength ?? Infinity,
    );
  }

  /**
   * The compiled structure for a set of plugins: from the cache, or built from the base folder. `context` gives the
   * bare base its task and labels when plugins are attached (to compare like with like).
   */
  private structureFor(set: Attached[], context: Attached[] = set): Structure {
    const task = context[0]?.task ?? this.opts.task ?? architectureOf(this.folder).defaultTask;
    for (const a of context) {
      if (a.task !== task)
        throw new Error(
          `plugin "${a.name}" is for ${a.task} but "${context[0].name}" is for ${task}: plugins attached together must share a task`,
        );
    }
    const labelled = context.filter((a) => a.plugin.meta.labels);
    for (const a of labelled) {
      if (canonical(a.plugin.meta.labels) !== canonical(labelled[0].plugin.meta.labels)) {
        throw new Error(
          `plugins "${labelled[0].name}" (labels ${labelled[0].plugin.meta.labels!.join(', ')}) and "${a.name}" (labels ${a.plugin.meta.labels!.join(', ')}) disagree on the labels: they cannot be attached together`,
        );
      }
    }
    const numLabels = task === 'classification' ? labelled[0]?.plugin.meta.labels?.length : undefined;
    const parts = set.map((a) => ({ methods: structural(a.methods), tensors: Object.keys(a.plugin.tensors).sort() }));
    const signature = canonical({ task, numLabels, parts });
    const hit = this.cache.get(signature);
    if (hit) {
      this.cache.delete(signature);
      this.cache.set(signature, hit); // most recently used last
      return hit;
    }

    // Soft prompt and prefix change how the graph is built, once per model.
    const built: Record<string, string> = {};
    for (const [i, a] of set.entries()) {
      for (const key of Object.keys(deltaBuildOptions(parts[i].methods))) {
        if (built[key])
          throw new Error(
            `plugins "${built[key]}" and "${a.name}" both use ${key === 'prefix' ? 'prefix tuning' : 'a soft prompt'}: a model has one ${key === 'prefix' ? 'prefix' : 'prompt'}, so they cannot be attached together`,
          );
        built[key] = a.name;
      }
    }
    const model = loadModel(this.folder, {
      task,
      numLabels,
      build: deltaBuildOptions(parts.flatMap((p) => p.methods)),
    });
    const created = Object.keys(model.created);
    if (created.length && !set.some((a) => created.some((n) => n in a.plugin.tensors))) {
      const need = `${task === 'classification' ? `${model.numLabels} labels` : task}`;
      throw new Error(
        set.length
          ? `no attached plugin carries the task head (${created.join(', ')}) this base lacks for ${need}`
          : `${basename(this.folder.dir)} has no trained ${task} head for ${need}: the bare base would predict with a random head. Attach a plugin that carries one (and compare against a plugin without, e.g. head-only)`,
      );
    }
    const applied = set.map((a, i) => {
      try {
        return applyDeltas(model, parts[i].methods, 0, {
          namespace: `p${i}`,
          owner: `plugin "${a.name}"`,
          newHead: created.some((n) => n in a.plugin.tensors),
        });
      } catch (e) {
        throw new PluginError('mismatch', `cannot attach plugin "${a.name}": ${(e as Error).message}`, a.file, {
          cause: e,
        });
      }
    });
    this.counters.graphsBuilt++;
    const st: Structure = { signature, task, numLabels, compiled: new Compiled(model, applied, this) };
    this.cache.set(signature, st);
    const cap = Math.max(1, this.opts.cacheSize ?? 4);
    for (const [k, old] of this.cache) {
      if (this.cache.size <= cap) break;
      this.cache.delete(k);
      this.counters.evicted++;
      void old.compiled.retire();
    }
    return st;
  }

  /** Each plugin's tensors as feeds of the structure's graph, by graph value; shapes checked, stored halves widened. */
  private feedsFor(st: Structure, set: Attached[]): Record<string, HostTensor> {
    const feeds: Record<string, HostTensor> = {};
    set.forEach((a, i) => {
      const applied = st.compiled.applied[i];
      const used = new Set<string>();
      for (const p of applied.params) {
        const t = a.plugin.tensors[p.name];
        if (!t)
          throw new PluginError(
            'mismatch',
            `plugin "${a.name}" lacks the tensor "${p.name}" that its methods (${a.methods.map((m) => m.method).join(', ')}) need on this base`,
            a.file,
          );
        const want = applied.initial[p.value].shape;
        if (t.shape.length !== want.length || t.shape.some((d, k) => d !== want[k])) {
          throw new PluginError(
            'mismatch',
            `plugin "${a.name}": tensor "${p.name}" has shape [${t.shape.join(', ')}], this base needs [${want.join(', ')}] (trained on another base?)`,
            a.file,
          );
        }
        feeds[p.value] =
          t.dtype === 'float32'
            ? t
            : {
                dtype: 'float32',
                shape: t.shape,
                data: toFloat32(t.dtype, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)),
              };
        used.add(p.name);
      }
      const extra = Object.keys(a.plugin.tensors).filter((n) => !used.has(n));
      if (extra.length)
        throw new PluginError(
          'mismatch',
          `plugin "${a.name}" has tensors its methods do not use on this base: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', …' : ''}`,
          a.file,
        );
    });
    return feeds;
  }
}

/** A base with plugins merged into its weights. */
export interface MergedModel {
  /** The changed weights by Hugging Face name, float32 (with any task head a plugin carried). */
  weights: Record<string, HostTensor>;
  predict(inputs: PredictInput[], opts?: Omit<PredictOptions, 'base'>): Promise<Prediction[]>;
  close(): Promise<void>;
}
