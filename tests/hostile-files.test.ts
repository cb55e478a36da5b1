// Files that were accepted and then misbehaved, and errors that quoted what they read: a config that builds fewer
// layers than the checkpoint holds, metrics that are not numbers, a tensor named "__proto__", non-finite scales and
// weights, named pipes where files should be, and JSON errors that echo the file (a config.json linked to /etc/passwd).
import assert from 'node:assert/strict';
import { spawnSync, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { loadModel } from '../native/models/index.js';
import { readModelFolder } from '../native/models/folder.js';
import { TextTokenizer } from '../native/models/tokenizer.js';
import { parseDeltaConfig } from '../native/delta/index.js';
import { exportPeft, importPeft } from '../native/export/peft.js';
import { exportMerged } from '../native/export/merged.js';
import type { HostTensor } from '../native/onnx/graph.js';
import { PluginError, readPlugin, readPluginMeta } from '../native/plugins/format.js';
import { PluginSession } from '../native/plugins/session.js';
import { Rng } from '../native/rng.js';
import { deriveCheckpoint } from './support/checkpoints.js';
import { seededPlugin } from './support/plugins.js';
import type { DType } from '../native/onnx/dtype.js';
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from '../native/onnx/safetensors.js';

type Raw = { dtype: DType; shape: number[]; data: Uint8Array };
/** Every tensor of a safetensors file, as bytes, in an object that keeps any name (a null prototype). */
function tensorsOf(file: string): Record<string, Raw> {
  const out = Object.create(null) as Record<string, Raw>;
  for (const [k, ref] of readSafetensorsHeader(file).tensors)
    out[k] = { dtype: ref.dtype, shape: ref.shape, data: readTensorBytes(ref) };
  return out;
}

const FIX = fileURLToPath(new URL('./fixtures/models/', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TMP = mkdtempSync(join(tmpdir(), 'ds-hostile-'));
after(() => rmSync(TMP, { recursive: true, force: true }));

let n = 0;
/** A copy of a fixture with config.json changed by `edit`. */
function withConfig(family: string, edit: (cfg: Record<string, unknown>) => void): string {
  const dir = deriveCheckpoint(join(FIX, family), join(TMP, `${family}-${n++}`), (name) => name);
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  edit(cfg);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  return dir;
}

describe('a config.json that builds fewer layers than the checkpoint holds is refused, naming the unused weights', () => {
  const cases: { family: string; key: string; first: string; count: number }[] = [
    { family: 'bert', key: 'num_hidden_layers', first: 'bert.encoder.layer.1.', count: 16 },
    { family: 'gpt2', key: 'n_layer', first: 'transformer.h.1.', count: 12 },
    { family: 'llama', key: 'num_hidden_layers', first: 'model.layers.1.', count: 9 },
    { family: 't5', key: 'num_decoder_layers', first: 'decoder.block.1.', count: 0 },
  ];
  for (const c of cases) {
    test(`${c.family}: ${c.key} 1 of 2`, () => {
      const dir = withConfig(c.family, (cfg) => {
        cfg[c.key] = 1;
      });
      const want = [...readModelFolder(dir).weights.keys()].filter((k) => k.startsWith(c.first));
      if (c.count) assert.equal(want.length, c.count);
      assert.throws(
        () => loadModel(dir),
        (e: Error) =>
          e.message.startsWith(`${dir}: config.json builds fewer layers (`) &&
          e.message.includes(`${c.key} 1`) &&
          e.message.includes(`${want.length} weight(s) would go unused (${want.slice(0, 3).join(', ')}, …)`),
      );
    });
  }
  test('weights that are not layers (buffers, a pretraining head) are still allowed', () => {
    // The Hub's gpt2 keeps the causal-mask buffers h.N.attn.bias that the model does not read.
    const dir = join(TMP, 'gpt2-buffers');
    deriveCheckpoint(join(FIX, 'gpt2'), dir, (name) => name);
    const t = tensorsOf(join(dir, 'model.safetensors'));
    for (const l of [0, 1])
      t[`transformer.h.${l}.attn.bias`] = { dtype: 'float16', shape: [1, 1, 4, 4], data: new Uint8Array(32) };
    t['cls.predictions.1.bias'] = { dtype: 'float16', shape: [2], data: new Uint8Array(4) };
    writeSafetensors(join(dir, 'model.safetensors'), t, { format: 'pt' });
    assert.doesNotThrow(() => loadModel(dir));
  });
});

/** A plugin with seeded LoRA values on the bert fixture (its tensors changed by `edit`), written to `file`. */
function bertPlugin(file: string, edit?: (t: Record<string, HostTensor>) => void, metrics = {}): string {
  return seededPlugin(file, BERT, 'classification', { method: 'lora', r: 2, alpha: 4 }, 1, { edit, metrics }).file;
}

/** The same safetensors file with its metadata changed by `edit` (tensor bytes, and so the digest, untouched). */
function withMetadata(src: string, dest: string, edit: (md: Record<string, string>) => void): string {
  const md = { ...readSafetensorsHeader(src).metadata };
  edit(md);
  writeSafetensors(dest, tensorsOf(src), md);
  return dest;
}

const BERT = join(FIX, 'bert');

describe('plugin metadata and tensors are checked on read', () => {
  test('metrics that are not numbers are refused, naming the key (plugins show would fail on them)', () => {
    const good = bertPlugin(join(TMP, 'metrics.delta'), undefined, { accuracy: 0.5 });
    const bad = withMetadata(good, join(TMP, 'metrics-string.delta'), (md) => {
      md.metrics = JSON.stringify({ accuracy: 0.5, f1: 'high' });
    });
    assert.throws(
      () => readPluginMeta(bad),
      (e: Error) =>
        e instanceof PluginError &&
        e.code === 'bad-metadata' &&
        e.message === `${bad}: metadata "metrics": "f1" must be a number, got a string of 4 characters`,
    );
    assert.throws(() => readPlugin(bad), /"f1" must be a number/);
    // null is what an older writer made of NaN: no value.
    const nulls = withMetadata(good, join(TMP, 'metrics-null.delta'), (md) => {
      md.metrics = '{"accuracy": 0.5, "loss": null}';
    });
    assert.deepEqual(readPluginMeta(nulls).metrics, { accuracy: 0.5 });
    // A NaN metric is not written as null any more: it has no value.
    const nan = bertPlugin(join(TMP, 'metrics-nan.delta'), undefined, { accuracy: 0.5, loss: NaN });
    assert.deepEqual(readPluginMeta(nan).metrics, { accuracy: 0.5 });
    for (const [key, value] of [
      ['version', 'two'],
      ['max_length', '-3'],
    ]) {
      const f = withMetadata(good, join(TMP, `bad-${key}.delta`), (md) => {
        md[key] = value;
      });
      assert.throws(() => readPluginMeta(f), new RegExp(`metadata "${key}" must be a positive integer`));
    }
  });

  test('a tensor named "__proto__" is kept by the readers and then refused by name, never dropped', () => {
    const file = bertPlugin(join(TMP, 'proto.delta'), (t) => {
      t.__proto__ = { dtype: 'float32', shape: [2], data: Float32Array.of(1, 2) };
    });
    assert.ok(readSafetensorsHeader(file).tensors.has('__proto__'), 'the safetensors reader keeps it');
    const p = readPlugin(file);
    assert.ok(Object.keys(p.tensors).includes('__proto__'), 'the plugin reader keeps it');
    assert.deepEqual(p.tensors.__proto__.shape, [2]);
    // Whatever then uses the plugin names it: it belongs to no method.
    assert.throws(
      () => exportPeft(p, BERT, join(TMP, 'peft-of-proto')),
      /tensor "__proto__" belongs to none of its methods/,
    );
    assert.throws(
      () => exportMerged(p, BERT, join(TMP, 'merged-of-proto')),
      /tensor "__proto__" is not a parameter of lora/,
    );
    // A PEFT adapter with such a key: refused with the key named.
    const dir = join(TMP, 'peft-proto');
    mkdirSync(dir);
    writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(LORA_CONFIG));
    const t = loraAdapterTensors();
    t.__proto__ = { dtype: 'float32', shape: [2], data: new Uint8Array(8) };
    writeSafetensors(join(dir, 'adapter_model.safetensors'), t, { format: 'pt' });
    assert.throws(() => importPeft(dir, BERT), /"__proto__" is neither LORA weight nor a weight of bert/);
  });

  test('non-finite weights and scales are refused, naming the tensor or the key', async () => {
    const nan = join(TMP, 'nan.delta');
    assert.throws(
      () =>
        bertPlugin(nan, (t) => {
          (t['bert.encoder.layer.0.attention.self.query.lora_B'].data as Float32Array)[3] = NaN;
        }),
      /tensor "bert\.encoder\.layer\.0\.attention\.self\.query\.lora_B" holds a NaN or infinite value \(element 3\)/,
    );
    // Written by someone else: refused on read.
    const good = bertPlugin(join(TMP, 'finite.delta'));
    const h = readSafetensorsHeader(good);
    const t = tensorsOf(good);
    new Float32Array(t['bert.encoder.layer.1.attention.self.value.lora_A'].data.buffer)[0] = Infinity;
    const data = Buffer.concat(
      Object.keys(t)
        .sort()
        .map((k) => Buffer.from(t[k].data)),
    );
    const inf = join(TMP, 'inf.delta');
    writeSafetensors(inf, t, { ...h.metadata, tensors_sha256: createHash('sha256').update(data).digest('hex') });
    assert.throws(
      () => readPlugin(inf),
      (e: Error) =>
        e instanceof PluginError &&
        e.code === 'bad-values' &&
        e.message.includes('tensor "bert.encoder.layer.1.attention.self.value.lora_A" holds a NaN or infinite value'),
    );
    // A LoRA scale float32 cannot hold, in a plugin's methods or in a delta config.
    const huge = withMetadata(good, join(TMP, 'alpha.delta'), (md) => {
      md.methods = JSON.stringify([{ method: 'lora', r: 2, alpha: 1e308 }]);
    });
    assert.throws(
      () => readPluginMeta(huge),
      /lora: alpha 1e\+308 \/ r \(r 2\) is a scale of 5e\+307, beyond float32's range/,
    );
    assert.throws(() => parseDeltaConfig({ method: 'lora', r: 4, lora_alpha: 2e39 }), /beyond float32's range/);
    assert.doesNotThrow(() => parseDeltaConfig({ method: 'lora', r: 4, lora_alpha: 1e38 }));

    // PEFT: lora_alpha 1e308, and a NaN in a tensor.
    const dir = join(TMP, 'peft-alpha');
    mkdirSync(dir);
    writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ ...LORA_CONFIG, lora_alpha: 1e308 }));
    writeSafetensors(join(dir, 'adapter_model.safetensors'), loraAdapterTensors(), { format: 'pt' });
    assert.throws(
      () => importPeft(dir, BERT),
      (e: Error) =>
        e.message.startsWith(`${join(dir, 'adapter_config.json')}: r and lora_alpha: alpha 1e+308 / r (r 2)`),
    );
    writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(LORA_CONFIG));
    const tn = loraAdapterTensors();
    const key = 'base_model.model.bert.encoder.layer.0.attention.self.value.lora_B.weight';
    new Float32Array(tn[key].data.buffer)[1] = NaN;
    writeSafetensors(join(dir, 'adapter_model.safetensors'), tn, { format: 'pt' });
    assert.throws(
      () => importPeft(dir, BERT),
      new RegExp(`tensor "${esc(key)}" holds a NaN or infinite value \\(element 1\\)`),
    );

    // Finite but overflowing in the product: predict says so instead of answering null probabilities.
    const s = await PluginSession.open(BERT, { device: 'cpu' });
    try {
      const p = readPlugin(good);
      for (const t of Object.values(p.tensors)) (t.data as Float32Array).fill(1e30);
      s.attach([p]);
      await assert.rejects(() => s.predict(['a b c']), /the model computed NaN or infinity/);
    } finally {
      await s.close();
    }
  });
});

const LORA_CONFIG = {
  peft_type: 'LORA',
  task_type: 'SEQ_CLS',
  r: 2,
  lora_alpha: 4,
  target_modules: ['query', 'value'],
  modules_to_save: ['classifier', 'score'],
};

/** A LoRA adapter's tensors for the bert fixture (query, value; r 2), as bytes. */
function loraAdapterTensors(): Record<string, Raw> {
  const t = Object.create(null) as Record<string, Raw>;
  const rng = new Rng(2);
  const f = (shape: number[]): Raw => ({
    dtype: 'float32',
    shape,
    data: new Uint8Array(Float32Array.from({ length: shape[0] * shape[1] }, () => 0.1 * rng.normal()).buffer),
  });
  for (const l of [0, 1])
    for (const m of ['query', 'value']) {
      const pre = `base_model.model.bert.encoder.layer.${l}.attention.self.${m}`;
      t[`${pre}.lora_A.weight`] = f([2, 32]);
      t[`${pre}.lora_B.weight`] = f([32, 2]);
    }
  const cls = readModelFolder(BERT).weights;
  for (const k of ['classifier.weight', 'classifier.bias']) {
    const ref = cls.get(k)!;
    t[`base_model.model.${k}`] = { dtype: ref.dtype, shape: ref.shape, data: readTensorBytes(ref) };
  }
  return t;
}

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/**
 * Runs `code` (an ES module importing the engine by absolute path) in a child process and returns what it printed:
 * a read that blocks (a named pipe opened for reading) would hang this test process itself.
 */
function inChild(code: string): { status: number | null; out: string; timedOut: boolean } {
  const file = join(TMP, `child-${n++}.ts`);
  writeFileSync(file, code.replaceAll('@/', `${ROOT}`));
  const r = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: ROOT, timeout: 20_000, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}`, timedOut: r.signal === 'SIGTERM' };
}

/** A child that runs `call` and prints its error's message (or "read"). */
const tryRead = (imports: string, call: string): string => `${imports}
try { ${call}; console.log('read'); } catch (e) { console.log(JSON.stringify((e as Error).message)); }
`;

describe(
  'named pipes where files should be are refused at once, not waited on',
  { skip: process.platform === 'win32' },
  () => {
    const fifo = (path: string): string => {
      execFileSync('mkfifo', [path]);
      return path;
    };
    test('adapter_model.safetensors as a named pipe', () => {
      const dir = join(TMP, 'peft-fifo');
      mkdirSync(dir);
      writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(LORA_CONFIG));
      const pipe = fifo(join(dir, 'adapter_model.safetensors'));
      const r = inChild(
        tryRead(
          `import { importPeft } from '@/native/export/peft.ts';`,
          `importPeft(${JSON.stringify(dir)}, ${JSON.stringify(BERT)})`,
        ),
      );
      assert.equal(r.timedOut, false, 'the import waited on the pipe');
      assert.equal(JSON.parse(r.out.trim()), `${pipe}: a named pipe, not a regular file; only regular files are read`);
    });
    test('a plugin as a named pipe', () => {
      const pipe = fifo(join(TMP, 'pipe.delta'));
      const r = inChild(
        tryRead(`import { readPlugin } from '@/native/plugins/format.ts';`, `readPlugin(${JSON.stringify(pipe)})`),
      );
      assert.equal(r.timedOut, false, 'the read waited on the pipe');
      assert.match(r.out, /a named pipe, not a regular file/);
    });
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) {
      test(`a model folder whose ${f} is a named pipe`, () => {
        const dir = deriveCheckpoint(BERT, join(TMP, `bert-fifo-${f}`), (x) => x);
        rmSync(join(dir, f));
        fifo(join(dir, f));
        const r = inChild(
          tryRead(
            `import { readModelFolder } from '@/native/models/folder.ts';\nimport { TextTokenizer } from '@/native/models/tokenizer.ts';`,
            `readModelFolder(${JSON.stringify(dir)}); TextTokenizer.fromFolder(${JSON.stringify(dir)})`,
          ),
        );
        assert.equal(r.timedOut, false, `reading ${f} waited on the pipe`);
        assert.equal(
          JSON.parse(r.out.trim()),
          `${join(dir, f)}: a named pipe, not a regular file; only regular files are read`,
        );
      });
    }
  },
);

describe('errors about a file name the file and the problem, never its contents', () => {
  const secret = 'root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n';
  const passwd = join(TMP, 'passwd');
  writeFileSync(passwd, secret);
  const noSecret = (e: Error): boolean => !e.message.includes('root') && !e.message.includes('daemon');

  test('config.json linked to a passwd file', () => {
    const dir = deriveCheckpoint(BERT, join(TMP, 'bert-passwd'), (x) => x);
    rmSync(join(dir, 'config.json'));
    symlinkSync(passwd, join(dir, 'config.json'));
    assert.throws(
      () => readModelFolder(dir),
      (e: Error) =>
        noSecret(e) &&
        e.message ===
          `${join(dir, 'config.json')}: not valid JSON (line 1, column 1: expected a value (an object, list, string, number, true, false or null))`,
    );
  });
  test('the shard index, tokenizer files, adapter_config.json, a safetensors header and plugin metadata', () => {
    const dir = deriveCheckpoint(join(FIX, 'llama'), join(TMP, 'llama-passwd'), (x) => x);
    writeFileSync(join(dir, 'model.safetensors.index.json'), `{"weight_map": ${secret}}`);
    assert.throws(
      () => readModelFolder(dir),
      (e: Error) => noSecret(e) && /index\.json: not valid JSON \(line 1, column 16: /.test(e.message),
    );
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
      const d = deriveCheckpoint(BERT, join(TMP, `bert-passwd-${f}`), (x) => x);
      writeFileSync(join(d, f), secret);
      assert.throws(
        () => TextTokenizer.fromFolder(d),
        (e: Error) => noSecret(e) && e.message.startsWith(`${join(d, f)}: not valid JSON (line 1, column 1`),
      );
    }
    const peft = join(TMP, 'peft-passwd');
    mkdirSync(peft);
    symlinkSync(passwd, join(peft, 'adapter_config.json'));
    assert.throws(
      () => importPeft(peft, BERT),
      (e: Error) => noSecret(e) && e.message.includes('adapter_config.json: not valid JSON (line 1, column 1'),
    );
    // A safetensors header that is not JSON.
    const st = join(TMP, 'passwd.safetensors');
    const head = Buffer.from(secret);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(head.length));
    writeFileSync(st, Buffer.concat([len, head]));
    assert.throws(
      () => readSafetensorsHeader(st),
      (e: Error) =>
        noSecret(e) && e.message.startsWith(`${st}: bad safetensors header: not valid JSON (line 1, column 1`),
    );
    // Plugin metadata that is not JSON.
    const good = bertPlugin(join(TMP, 'md.delta'));
    const bad = withMetadata(good, join(TMP, 'md-passwd.delta'), (md) => {
      md.methods = secret;
    });
    assert.throws(
      () => readPluginMeta(bad),
      (e: Error) => noSecret(e) && e.message.startsWith(`${bad}: metadata "methods": not valid JSON (line 1, column 1`),
    );
  });
  test('a config value of the wrong type is described, not quoted', () => {
    const dir = withConfig('bert', (cfg) => {
      cfg.hidden_size = 'root:x:0:0';
      cfg.model_type = 'bert';
    });
    assert.throws(
      () => loadModel(dir),
      (e: Error) =>
        noSecret(e) && e.message.endsWith('config.json "hidden_size" must be a number, got a string of 10 characters'),
    );
    const odd = withConfig('bert', (cfg) => {
      cfg.model_type = 'root:x:0:0:root:/root:/bin/bash';
    });
    assert.throws(
      () => loadModel(odd),
      (e: Error) => noSecret(e) && e.message.includes('model_type a string of 31 characters is not supported'),
    );
    const other = withConfig('bert', (cfg) => {
      cfg.model_type = 'mamba';
    });
    assert.throws(() => loadModel(other), /model_type "mamba" is not supported/);
  });
});
