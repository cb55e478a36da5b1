// The real-PEFT check's Node side (tests/fixtures/make_peft_check.ts): the folder it writes is complete and right —
// every family and export kind, on both checkpoint layouts; its expected logits are what Delta Studio computes for
// each export read back (merged folder through our loader, PEFT adapter through import-peft); the Python side compiles.
// The Python side itself needs torch, transformers and peft, which CI does not have: it is `npm run check:peft`, run
// where they are (its last result is in the README).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadWithDeltas } from '../native/delta/index.js';
import { importPeft } from '../native/export/peft.js';
import type { HostTensor } from '../native/onnx/graph.js';
import { readSafetensorsHeader } from '../native/onnx/safetensors.js';
import { loadModel } from '../native/models/index.js';
import { openInline } from '../native/runtime/host.js';
import { evaluationGraph } from '../native/train/trainer.js';
import { makePeftCheck, type CheckCase } from './fixtures/make_peft_check.js';

const SCRIPT = fileURLToPath(new URL('./fixtures/verify_peft.py', import.meta.url));
const TMP = mkdtempSync(join(tmpdir(), 'ds-peft-check-'));
const OUT = join(TMP, 'check');
after(() => rmSync(TMP, { recursive: true, force: true }));

let cases: CheckCase[] = [];
before(async () => {
  cases = (await makePeftCheck(OUT)).cases;
});

/** Our logits for each of a case's rows, from a graph and the tensors it is fed beside the inputs. */
async function rowsThrough(
  c: CheckCase,
  graph: Parameters<typeof openInline>[0],
  inputs: string[],
  extra: Record<string, HostTensor>,
) {
  const s = await openInline(graph, { device: 'cpu' });
  try {
    const out: Float32Array[] = [];
    for (const row of c.inputs) {
      const feeds: Record<string, HostTensor> = { ...extra };
      const t = (v: number[][]): HostTensor => ({
        dtype: 'int64',
        shape: [v.length, v[0].length],
        data: BigInt64Array.from(v.flat(), (x) => BigInt(x)),
      });
      for (const n of inputs) {
        if (row[n]) feeds[n] = t(row[n]);
        else if (n === 'decoder_attention_mask') feeds[n] = t(row.decoder_input_ids.map((r) => r.map(() => 1)));
        else if (n === 'labels')
          // Not read for the logits; shaped as the task's labels.
          feeds[n] =
            c.task === 'classification'
              ? { dtype: 'int64', shape: [1], data: BigInt64Array.of(0n) }
              : c.task === 'regression'
                ? { dtype: 'float32', shape: [1], data: Float32Array.of(0) }
                : t(row.decoder_input_ids ?? row.input_ids);
        else throw new Error(`no feed for ${n}`);
      }
      out.push((await s.run(feeds, ['logits'])).logits.data as Float32Array);
    }
    return out;
  } finally {
    await s.release();
  }
}

function maxDiff(got: Float32Array[], c: CheckCase): number {
  let m = 0;
  got.forEach((g, r) => {
    assert.equal(g.length, c.expected[r].logits.length, `${c.id} row ${r}`);
    for (let i = 0; i < g.length; i++) m = Math.max(m, Math.abs(g[i] - c.expected[r].logits[i]));
  });
  return m;
}

describe('the real-PEFT check folder', () => {
  test('every family and checkpoint layout, both export kinds, with the files each kind has', () => {
    const ids = new Set(cases.map((c) => c.id));
    assert.equal(ids.size, cases.length, 'ids are unique');
    for (const model of [
      'bert',
      'bert-bare',
      'roberta',
      'roberta-bare',
      'gpt2',
      'gpt2-bare',
      'llama',
      'llama-bare',
      'qwen2',
      'qwen2-bare',
      't5',
    ])
      for (const kind of ['peft', 'merged'])
        assert.ok(
          cases.some((c) => c.model === model && c.method === 'lora' && c.export === kind),
          `${model} LoRA ${kind}`,
        );
    for (const id of [
      'gpt2-bare.classification.lora.peft',
      'llama.causal-lm.prompt.peft',
      'bert.classification.prefix.peft',
      'gpt2.causal-lm.ia3.merged',
    ])
      assert.ok(ids.has(id), id);
    const manifest = JSON.parse(readFileSync(join(OUT, 'manifest.json'), 'utf8')) as {
      format: string;
      cases: CheckCase[];
    };
    assert.equal(manifest.format, 'delta-studio-peft-check');
    assert.equal(manifest.cases.length, cases.length);
    for (const c of cases) {
      const files = readdirSync(join(OUT, c.dir));
      if (c.export === 'peft') assert.deepEqual(files.sort(), ['adapter_config.json', 'adapter_model.safetensors']);
      else assert.ok(files.includes('config.json') && files.includes('model.safetensors'), c.id);
      assert.ok(existsSync(join(OUT, c.base, 'config.json')), c.base);
      assert.equal(c.inputs.length, 2);
      assert.equal(c.expected.length, 2);
      if (c.task === 'classification')
        for (const e of c.expected) assert.ok(Math.abs(e.probabilities!.reduce((a, b) => a + b, 0) - 1) < 1e-6);
    }
    // The base saved as the Hub's gpt2 is (h.0.…), its adapter as GPT2ForSequenceClassification names it.
    assert.ok(
      readSafetensorsHeader(join(OUT, 'models', 'gpt2-bare', 'model.safetensors')).tensors.has('h.0.ln_1.weight'),
    );
    assert.ok(
      readSafetensorsHeader(
        join(OUT, 'exports', 'gpt2-bare.classification.lora.peft', 'adapter_model.safetensors'),
      ).tensors.has('base_model.model.transformer.h.0.attn.c_attn.lora_A.weight'),
    );
  });

  test("merged folders, read by Delta Studio's own loader, give the expected logits", async () => {
    for (const c of cases.filter((x) => x.export === 'merged')) {
      const model = loadModel(join(OUT, c.dir), { task: c.task });
      const got = await rowsThrough(c, evaluationGraph(model, []), model.inputs, {});
      assert.ok(maxDiff(got, c) < 1e-4, `${c.id}: ${maxDiff(got, c)}`);
    }
  });

  test('PEFT adapters, imported back onto their base, give the expected logits', async () => {
    for (const c of cases.filter((x) => x.export === 'peft')) {
      const base = join(OUT, c.base);
      const imp = importPeft(join(OUT, c.dir), base);
      const { model, applied } = loadWithDeltas(
        base,
        { task: imp.meta.task, numLabels: imp.meta.labels?.length },
        imp.meta.methods,
      );
      const params = Object.fromEntries(applied.params.map((p) => [p.value, imp.tensors[p.name]]));
      const got = await rowsThrough(c, evaluationGraph(model, applied.trainable), model.inputs, params);
      assert.ok(maxDiff(got, c) < 1e-4, `${c.id}: ${maxDiff(got, c)}`);
    }
  });
});

/** A Python that has torch, transformers and peft, or undefined. */

describe('the real-PEFT check script', () => {
  test('compiles', () => {
    const r = spawnSync('python3', ['-c', `import ast, sys; ast.parse(open(sys.argv[1]).read())`, SCRIPT], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
  });
});
