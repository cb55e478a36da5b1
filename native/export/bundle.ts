// The shareable bundle: one zip holding the plugin, a model card (README.md), the run's config and the plugin's
// metadata as JSON. Deterministic: every entry carries the plugin's creation time and nothing depends on the clock,
// the machine or the time zone, so the same plugin and info give byte-identical bundles (and a stable checksum).
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { closeSync, existsSync, fstatSync, mkdirSync, readSync, rmSync } from 'node:fs';
import { basename, dirname, extname, resolve } from 'node:path';
import { METHODS, type DeltaConfig } from '../delta/index.js';
import { safeName } from '../files/paths.js';
import { readZip, writeZip } from '../files/zip.js';
import { openRegularFile, readSafetensorsHeader } from '../onnx/safetensors.js';
import { PLUGIN_EXTENSION, PLUGIN_FORMAT, PluginError, readPluginMeta, type PluginMeta } from '../plugins/format.js';

export interface BundleInfo {
  run?: {
    id: string;
    config: unknown;
    metrics?: Record<string, number>;
    dataset?: { name?: string; digest: string; rows?: Record<string, number>; source?: string };
  };
  baseModel?: { path?: string; name?: string };
  overwrite?: boolean;
}

export interface BundleResult {
  file: string;
  size: number;
  /** Entry names, in archive order. */
  entries: string[];
  /** sha256 of the plugin file inside. */
  pluginSha256: string;
  trainableParameters: number;
}

/** PEFT's adapter type for a method that is one (what `delta-studio export --format peft` can write). */
function peftType(method: string): string | undefined {
  const peft = METHODS.get(method)?.peft;
  return peft?.kind === 'adapter' ? peft.type : undefined;
}

const AUTO_CLASS: Record<PluginMeta['task'], string> = {
  classification: 'AutoModelForSequenceClassification',
  regression: 'AutoModelForSequenceClassification',
  'causal-lm': 'AutoModelForCausalLM',
  seq2seq: 'AutoModelForSeq2SeqLM',
};

interface PluginFacts {
  meta: PluginMeta;
  sha256: string;
  crc32: number;
  bytes: number;
  tensors: { name: string; dtype: string; shape: number[] }[];
  trainableParameters: number;
}

/**
 * Reads the plugin's metadata and checks its tensor digest by streaming the file once (a full fine-tune's plugin
 * can be several GB: it is never held in memory), so a damaged plugin is never bundled.
 */
function inspectPlugin(file: string): PluginFacts {
  const meta = readPluginMeta(file);
  const h = readSafetensorsHeader(file);
  const refs = [...h.tensors.values()].sort((a, b) => a.offset - b.offset);
  const dataBytes = refs.reduce((a, t) => a + t.length, 0);
  const whole = createHash('sha256');
  const tensorsHash = createHash('sha256');
  let crc = 0;
  const fd = openRegularFile(h.realFile);
  let size: number;
  try {
    size = fstatSync(fd).size;
    if (size !== h.headerBytes + dataBytes) {
      throw new PluginError(
        size < h.headerBytes + dataBytes ? 'truncated' : 'tampered',
        `${file}: ${size} bytes on disk, the header describes ${h.headerBytes + dataBytes}: the file is truncated or was changed`,
        file,
      );
    }
    const buf = Buffer.alloc(4 << 20);
    for (let at = 0, n; (n = readSync(fd, buf, 0, buf.length, at)) > 0; at += n) {
      const piece = buf.subarray(0, n);
      whole.update(piece);
      crc = crc32(piece, crc);
      // writePlugin lays tensors out with no gaps after the header: the tensor digest covers exactly the rest.
      if (at + n > h.headerBytes) tensorsHash.update(piece.subarray(Math.max(0, h.headerBytes - at)));
    }
  } finally {
    closeSync(fd);
  }
  const got = tensorsHash.digest('hex');
  if (got !== meta.tensorsSha256) {
    throw new PluginError(
      'tampered',
      `${file}: the tensor bytes have sha256 ${got.slice(0, 16)}…, the plugin says ${meta.tensorsSha256.slice(0, 16)}…: the file was damaged or changed after it was written; it will not be bundled`,
      file,
    );
  }
  const tensors = [...h.tensors.values()]
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape }));
  const trainableParameters = tensors.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
  return { meta, sha256: whole.digest('hex'), crc32: crc, bytes: size, tensors, trainableParameters };
}

const cell = (s: unknown): string => String(s).replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
const count = (n: number): string => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
const num = (v: number): string => (Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6))));
/** Quotes a word for a POSIX shell when it needs it. */
const sh = (s: string): string => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
const py = (s: string): string => JSON.stringify(s);

function configText(c: DeltaConfig): string {
  const keys = Object.keys(c).filter((k) => k !== 'method' && c[k] !== undefined);
  return keys.length ? keys.map((k) => `\`${k}\` = \`${JSON.stringify(c[k])}\``).join(', ') : 'defaults';
}

/** Why the plugin has no PEFT form, or null when `delta-studio export --format peft` applies. */
function noPeft(methods: DeltaConfig[]): string | null {
  const names = methods.map((m) => m.method);
  const without = names.filter((m) => !peftType(m));
  if (without.length)
    return `${without.map((m) => METHODS.get(m)?.title ?? m).join(', ')} ${without.length > 1 ? 'have' : 'has'} no PEFT equivalent, so this plugin cannot be loaded with PEFT; use it with Delta Studio.`;
  if (names.length > 1)
    return `PEFT has no single adapter that combines ${names.map((m) => METHODS.get(m)?.title ?? m).join(' and ')}, so this plugin cannot be loaded with PEFT; use it with Delta Studio.`;
  return null;
}

function modelCard(stem: string, pluginName: string, facts: PluginFacts, info: BundleInfo): string {
  const { meta } = facts;
  const titles = meta.methods.map((m) => METHODS.get(m.method)?.title ?? m.method);
  const baseName = info.baseModel?.name ?? meta.base.name;
  const baseRef = info.baseModel?.path ?? baseName;
  const metrics = { ...meta.metrics, ...(info.run?.metrics ?? {}) };
  const L: string[] = [];
  L.push(`# ${stem}`, '');
  L.push(
    `A Delta Studio plugin: ${titles.join(' + ')} on **${baseName}** for ${meta.task}${meta.labels ? ` (${meta.labels.length} labels)` : ''}.`,
    '',
  );

  L.push('## Delta', '', '| method | kind | config |', '|---|---|---|');
  for (const m of meta.methods)
    L.push(
      `| ${cell(METHODS.get(m.method)?.title ?? m.method)} (\`${m.method}\`) | ${cell(METHODS.get(m.method)?.kind ?? '')} | ${cell(configText(m))} |`,
    );
  L.push(
    '',
    `Trainable parameters: **${count(facts.trainableParameters)}** in ${facts.tensors.length} tensor${facts.tensors.length === 1 ? '' : 's'} (every tensor in the plugin, task head included).`,
  );
  if (meta.maxLength !== undefined) L.push(`Trained with inputs of at most ${meta.maxLength} tokens.`);
  L.push('');

  L.push('## Task', '', `- task: \`${meta.task}\``);
  if (meta.labels)
    L.push(`- labels (${meta.labels.length}, in output order): ${meta.labels.map((l) => `\`${l}\``).join(', ')}`);
  L.push('');

  L.push(
    '## Base model',
    '',
    `- name: ${baseName}`,
    `- model type: \`${meta.base.modelType}\``,
    `- fingerprint: \`${meta.base.fingerprint}\``,
    '',
  );
  L.push(
    'Delta Studio refuses to apply the plugin to a model with another fingerprint (config, tensor names, shapes and sampled weights).',
    '',
  );

  const ds = info.run?.dataset;
  if (ds) {
    L.push('## Dataset', '');
    if (ds.name) L.push(`- name: ${ds.name}`);
    L.push(`- digest: \`${ds.digest}\``);
    if (ds.source) L.push(`- source: ${ds.source}`);
    if (ds.rows) for (const [split, n] of Object.entries(ds.rows)) L.push(`- ${split}: ${count(n)} rows`);
    L.push('');
  }

  L.push('## Metrics', '');
  if (Object.keys(metrics).length) {
    L.push('| metric | value |', '|---|---|');
    for (const [k, v] of Object.entries(metrics))
      L.push(`| ${cell(k)} | ${typeof v === 'number' ? num(v) : cell(v)} |`);
  } else {
    L.push('None recorded.');
  }
  L.push('');

  L.push('## Provenance', '');
  if (info.run?.id ?? meta.runId) L.push(`- run: \`${info.run?.id ?? meta.runId}\``);
  if (meta.plugin !== undefined)
    L.push(`- plugin: ${meta.plugin}${meta.version !== undefined ? ` v${meta.version}` : ''}`);
  L.push(`- created: ${meta.createdAt}`, `- plugin format: ${PLUGIN_FORMAT} v${meta.formatVersion}`, '');

  L.push('## Files', '', '| file | what |', '|---|---|');
  L.push(`| \`${pluginName}\` | the plugin (safetensors), ${count(facts.bytes)} bytes, sha256 \`${facts.sha256}\` |`);
  L.push(
    '| `README.md` | this card |',
    `| \`config.json\` | ${info.run ? "the training run's config" : 'the delta config'} |`,
    "| `plugin.json` | the plugin's metadata as JSON |",
    '',
  );

  L.push('## Use it with Delta Studio', '', '```bash');
  L.push(`delta-studio plugins import ${sh(pluginName)}`);
  L.push(`delta-studio predict --plugin ${sh(pluginName)} --model ${sh(baseRef)} --text "your text here"`);
  L.push('```', '');

  L.push('## Use it with PEFT', '');
  const why = noPeft(meta.methods);
  if (why) {
    L.push(why, '');
  } else {
    const peftDir = `${stem}-peft`;
    L.push(
      `PEFT (${peftType(meta.methods[0].method)}) reads its own files, not the \`.delta\` plugin: write them with Delta Studio first.`,
      '',
    );
    // After `plugins import`, the plugin is known by its own name (its newest version).
    const ref = safeName(meta.plugin ?? stem);
    L.push('```bash', `delta-studio export ${sh(ref)} --format peft --out . --name ${sh(peftDir)}`, '```', '');
    const cls = AUTO_CLASS[meta.task];
    const extra =
      meta.task === 'regression' ? ', num_labels=1' : meta.labels ? `, num_labels=${meta.labels.length}` : '';
    L.push('```python', `from transformers import AutoTokenizer, ${cls}`, 'from peft import PeftModel', '');
    L.push(`base = ${cls}.from_pretrained(${py(baseName)}${extra})`);
    L.push(`model = PeftModel.from_pretrained(base, ${py(peftDir)})`);
    L.push(`tokenizer = AutoTokenizer.from_pretrained(${py(baseName)})`, '```', '');
  }
  return L.join('\n');
}

/** The instant every entry carries: the plugin's creation time (valid DOS range), so bundles are reproducible. */
function bundleTime(meta: PluginMeta): Date {
  const t = Date.parse(meta.createdAt);
  return new Date(Number.isFinite(t) ? t : Date.UTC(1980, 0, 1));
}

/** Writes `outFile`: a zip with `<name>.delta` (stored), README.md, config.json and plugin.json. */
export function exportBundle(pluginFile: string, outFile: string, info: BundleInfo = {}): BundleResult {
  if (resolve(pluginFile) === resolve(outFile))
    throw new Error(`exportBundle: the bundle ${outFile} would replace the plugin it bundles`);
  if (!info.overwrite && existsSync(outFile))
    throw new Error(`${outFile} already exists: choose another name, or overwrite it`);
  const facts = inspectPlugin(pluginFile);
  const { meta } = facts;
  const stem = safeName(
    meta.plugin !== undefined
      ? `${meta.plugin}${meta.version !== undefined ? `-v${meta.version}` : ''}`
      : basename(pluginFile, extname(pluginFile)),
  );
  const pluginName = `${stem}${PLUGIN_EXTENSION}`;
  const json = (v: unknown): Buffer => Buffer.from(`${JSON.stringify(v, null, 2)}\n`, 'utf8');
  const pluginJson = {
    ...meta,
    file: { name: pluginName, bytes: facts.bytes, sha256: facts.sha256 },
    trainableParameters: facts.trainableParameters,
    tensors: facts.tensors,
  };
  mkdirSync(dirname(resolve(outFile)), { recursive: true });
  const entries = [
    // safetensors of floats barely deflate; stored, the plugin can also be read in place from the archive.
    { name: pluginName, data: { file: pluginFile }, compress: false },
    { name: 'README.md', data: () => Buffer.from(modelCard(stem, pluginName, facts, info), 'utf8') },
    { name: 'config.json', data: () => json(info.run ? info.run.config : { deltas: meta.methods }) },
    { name: 'plugin.json', data: () => json(pluginJson) },
  ];
  const { size } = writeZip(outFile, entries, { mtime: bundleTime(meta) });
  // The plugin was checked before zipping: one rewritten meanwhile would make the card's checksum lie.
  const inside = readZip(outFile).find((e) => e.name === pluginName);
  if (inside?.crc32 !== facts.crc32) {
    rmSync(outFile, { force: true });
    throw new Error(`${pluginFile} changed while it was being bundled; ${outFile} was removed, bundle again`);
  }
  return {
    file: outFile,
    size,
    entries: entries.map((e) => e.name),
    pluginSha256: facts.sha256,
    trainableParameters: facts.trainableParameters,
  };
}
