import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../native/models/index.js';
import { readModelFolder } from '../native/models/folder.js';
import { moduleTree } from '../native/models/tree.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/models/', import.meta.url));
const bin = fileURLToPath(new URL('../bin/delta-studio.js', import.meta.url));
const names = existsSync(FIXTURES)
  ? readdirSync(FIXTURES).filter((n) => existsSync(join(FIXTURES, n, 'config.json')))
  : [];

// Parameter counts of the fixtures (tied weights once), as make_models.py reports them.
const EXPECTED: Record<string, { arch: string; params: number }> = {
  bert: { arch: 'BertForSequenceClassification', params: 24835 },
  roberta: { arch: 'RobertaForSequenceClassification', params: 30370 },
  gpt2: { arch: 'GPT2LMHeadModel', params: 37344 },
  llama: { arch: 'LlamaForCausalLM', params: 39456 },
  qwen2: { arch: 'Qwen2ForCausalLM', params: 28608 },
  t5: { arch: 'T5ForConditionalGeneration', params: 44416 },
  't5-gated': { arch: 'T5ForConditionalGeneration', params: 55424 },
};

describe('delta-studio inspect', () => {
  for (const name of names) {
    test(`${name}: the tree and the exact parameter count`, () => {
      const dir = join(FIXTURES, name);
      const json = JSON.parse(
        execFileSync(process.execPath, [bin, 'inspect', dir, '--json'], { encoding: 'utf8' }).trim().split('\n').pop()!,
      );
      const folder = readModelFolder(dir);
      const stored = [...folder.weights.values()].reduce((a, r) => a + r.shape.reduce((x, y) => x * y, 1), 0);
      assert.equal(json.params_total, stored, 'every stored tensor counted once');
      assert.equal(json.params_total, EXPECTED[name].params);
      assert.equal(json.architecture, EXPECTED[name].arch);
      assert.equal(json.params_new, 0);
      // Every stored weight belongs to exactly one module of the tree.
      const listed = json.modules.flatMap((m: { name: string; shapes: Record<string, number[]> }) =>
        Object.keys(m.shapes).map((k) => `${m.name}.${k}`),
      );
      assert.ok(listed.length > 0);
      const text = execFileSync(process.execPath, [bin, 'inspect', dir], { encoding: 'utf8' });
      assert.match(text, new RegExp(`— ${EXPECTED[name].params.toLocaleString('en-US')} parameters`));
      // T5's first block alone holds the relative position table, so two-block T5 stacks have nothing to fold.
      if (!name.startsWith('t5')) assert.match(text, / ×2 /, 'repeated blocks are folded');
    });
  }

  test('repeated blocks fold into one node and the counts multiply', () => {
    const t = moduleTree(loadModel(join(FIXTURES, 'bert')));
    const layers = t.modules.find((m) => m.name === 'bert.encoder.layer.0-1');
    assert.ok(layers, t.modules.map((m) => m.name).join(' '));
    assert.equal(layers.repeat, 2);
    const q = t.modules.find((m) => m.name === 'bert.encoder.layer.0-1.attention.self.query')!;
    assert.deepEqual(q.shapes, { weight: [32, 32], bias: [32] });
    assert.equal(q.type, 'Linear');
    assert.equal(q.params, 32 * 32 + 32, 'counts inside a folded block are per block');
    const block = t.modules
      .filter((m) => m.name.startsWith('bert.encoder.layer.0-1.') && m.shapes && Object.keys(m.shapes).length)
      .reduce((a, m) => a + m.params, 0);
    assert.equal(layers.params, 2 * block, 'the folded node counts every block');
  });

  test('a new classification head is initialised and counted as new', () => {
    const m = loadModel(join(FIXTURES, 'gpt2'), { task: 'classification', numLabels: 4 });
    assert.deepEqual(Object.keys(m.created), ['score.weight']);
    assert.deepEqual(m.created['score.weight'].shape, [4, 32]);
    const t = moduleTree(m);
    assert.equal(t.params_new, 128);
    assert.equal(t.params_total, EXPECTED.gpt2.params + 128);
    const w = m.created['score.weight'].data as Float32Array;
    const std = Math.sqrt(w.reduce((a, x) => a + x * x, 0) / w.length);
    assert.ok(std > 0.01 && std < 0.03, `initializer_range 0.02, got std ${std}`);
  });
});

describe('bad model folders are clear errors before anything runs', () => {
  const copy = (name: string): string => {
    const d = mkdtempSync(join(tmpdir(), 'ds-model-'));
    cpSync(join(FIXTURES, name), d, { recursive: true });
    return d;
  };

  test('no config.json', () => {
    const d = copy('bert');
    unlinkSync(join(d, 'config.json'));
    assert.throws(() => loadModel(d), new RegExp(`${d}: no config.json`));
    rmSync(d, { recursive: true });
  });

  test('an unsupported architecture names the supported ones', () => {
    const d = copy('bert');
    writeFileSync(
      join(d, 'config.json'),
      JSON.stringify({ ...JSON.parse(readFileSync(join(d, 'config.json'), 'utf8')), model_type: 'mamba' }),
    );
    assert.throws(
      () => loadModel(d),
      /model_type "mamba" is not supported \(supported: bert, roberta, gpt2, llama, mistral, qwen2, t5\)/,
    );
    rmSync(d, { recursive: true });
  });

  test('an index naming a missing shard', () => {
    const d = copy('llama');
    unlinkSync(join(d, 'model-00002-of-00002.safetensors'));
    assert.throws(
      () => loadModel(d),
      /model\.safetensors\.index\.json names shard "model-00002-of-00002\.safetensors", which is missing/,
    );
    rmSync(d, { recursive: true });
  });

  test('a tensor missing, or of the wrong shape, is named with both shapes', () => {
    const d = copy('bert');
    const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
    writeFileSync(join(d, 'config.json'), JSON.stringify({ ...cfg, intermediate_size: cfg.intermediate_size * 2 }));
    assert.throws(
      () => loadModel(d),
      /tensor "bert\.encoder\.layer\.0\.intermediate\.dense\.weight" has shape \[64, 32\], the architecture expects \[128, 32\]/,
    );
    writeFileSync(join(d, 'config.json'), JSON.stringify({ ...cfg, num_hidden_layers: 3 }));
    assert.throws(() => loadModel(d), /tensor "bert\.encoder\.layer\.2\.attention\.self\.query\.weight" is missing/);
    rmSync(d, { recursive: true });
  });

  test('the CLI reports them with exit status 1', () => {
    const r = spawnSync(process.execPath, [bin, 'inspect', join(tmpdir(), 'no-such-model-folder')], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /no-such-model-folder: not a folder/);
  });
});
