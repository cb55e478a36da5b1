// Training on conversations: the collator labels exactly the assistant's tokens (its end-of-turn marker included), the
// loss the graph computes is the mean cross-entropy over those tokens alone, LoRA on the tiny Qwen2 learns the
// replies (greedy chat answers them, exact match 1), and generation streams its text, stopping at the end-of-turn
// marker whether the tokenizer knows it as one token or spells it in pieces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChatMessage } from '../native/contract/types.js';
import { loadWithDeltas } from '../native/delta/index.js';
import { chatTemplateFor } from '../native/models/chat-template.js';
import { loadModel } from '../native/models/index.js';
import { TextTokenizer } from '../native/models/tokenizer.js';
import { openInline } from '../native/runtime/host.js';
import { makeCollator, type Example } from '../native/train/collate.js';
import { Generator, type GenerationStep } from '../native/train/generate.js';
import { evaluationGraph, train } from '../native/train/trainer.js';
import { CONVERSATIONS, QWEN } from './support/chat.js';

const LLAMA = fileURLToPath(new URL('./fixtures/models/llama', import.meta.url));

const ROWS: Example[] = CONVERSATIONS.map((messages) => ({ messages }));

test("the collator labels the assistant's tokens only, and the graph's loss is their mean cross-entropy", async () => {
  const tok = TextTokenizer.fromFolder(QWEN);
  const chat = chatTemplateFor(QWEN, tok, 'chatml');
  const model = loadModel(QWEN, { task: 'causal-lm' });
  const collate = makeCollator(model, tok, { maxLength: 64, chat });
  const batch = collate.batch(ROWS);
  const [B, S] = batch.input_ids.shape;
  const ids = Array.from(batch.input_ids.data as BigInt64Array, Number);
  const labels = Array.from(batch.labels.data as BigInt64Array, Number);
  const said = (r: number): string[] => {
    const out: string[] = [];
    let run: number[] = [];
    for (let k = 0; k <= S; k++) {
      const l = k < S ? labels[r * S + k] : -100;
      if (l !== -100) {
        assert.equal(l, ids[r * S + k], 'a label is the token at its position (the graph shifts)');
        run.push(l);
      } else if (run.length) {
        out.push(tok.decode(run));
        run = [];
      }
    }
    return out;
  };
  assert.deepEqual(said(0), ['Paris.<|im_end|>']);
  assert.deepEqual(said(1), ['Rome.<|im_end|>']);
  assert.deepEqual(said(2), ['Hello!<|im_end|>', 'Ciao.<|im_end|>']);
  assert.throws(() => makeCollator(model, tok, { maxLength: 64 }).batch(ROWS), /needs the chat template/);

  // The loss: mean over labelled positions of -log softmax(logits[k - 1])[label k], computed here from the logits.
  const session = await openInline(evaluationGraph(model, []), { device: 'cpu' });
  try {
    const out = await session.run(batch);
    const logits = out.logits.data as Float32Array;
    const V = out.logits.shape[2];
    let sum = 0;
    let n = 0;
    for (let b = 0; b < B; b++)
      for (let k = 1; k < S; k++) {
        const y = labels[b * S + k];
        if (y === -100) continue;
        const row = logits.subarray((b * S + k - 1) * V, (b * S + k) * V);
        const max = Math.max(...row);
        const z = row.reduce((a, x) => a + Math.exp(x - max), 0);
        sum += -(row[y] - max - Math.log(z));
        n++;
      }
    assert.equal(n, labels.filter((l) => l !== -100).length, 'every labelled token, and only those');
    const loss = Number(out[model.loss].data[0]);
    assert.ok(Math.abs(loss - sum / n) < 1e-5 * Math.max(1, sum / n), `graph ${loss}, by hand ${sum / n}`);
  } finally {
    await session.release();
  }
});

test('LoRA on the tiny Qwen2 learns the replies; greedy chat answers with them, streamed, and stops at <|im_end|>', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ds-chat-run-'));
  try {
    const deltas = [
      { method: 'lora', r: 8, alpha: 16, target_modules: ['q_proj', 'v_proj', 'o_proj', 'up_proj', 'down_proj'] },
    ];
    const r = await train(
      {
        model: QWEN,
        task: 'causal-lm',
        deltas,
        epochs: 150,
        batchSize: 3,
        lr: 3e-2,
        warmup: 0,
        maxLength: 64,
        seed: 0,
        device: 'cpu',
        runDir: dir,
        chatTemplate: 'chatml',
      },
      { train: ROWS, validation: ROWS },
    );
    assert.equal(r.status, 'finished');
    assert.equal(r.metrics.exact_match, 1, JSON.stringify(r.metrics));

    // The trained delta, streamed: steps add text, the last says why it stopped.
    const tok = TextTokenizer.fromFolder(QWEN);
    const chat = chatTemplateFor(QWEN, tok, 'chatml');
    const { model, applied } = loadWithDeltas(QWEN, { task: 'causal-lm' }, deltas);
    const { readSafetensorsHeader, readTensorBytes } = await import('../native/onnx/safetensors.js');
    const { viewAs } = await import('../native/onnx/dtype.js');
    const h = readSafetensorsHeader(r.deltaFile);
    const params = Object.fromEntries(
      applied.params.map((p) => {
        const ref = h.tensors.get(p.name)!;
        return [p.value, { dtype: ref.dtype, shape: ref.shape, data: viewAs(ref.dtype, readTensorBytes(ref)) }];
      }),
    );
    const gen = await Generator.open(model, tok, applied.trainable, 'cpu', chat);
    try {
      const steps: GenerationStep[] = [];
      for await (const s of gen.chat([{ role: 'user', content: 'Capital of France?' }], params, 20)) steps.push(s);
      const lastStep = steps[steps.length - 1];
      assert.equal(lastStep.text, 'Paris.');
      assert.equal(lastStep.stopped, 'stop');
      assert.equal(steps.map((s) => s.delta).join(''), 'Paris.');
      assert.ok(steps.length >= 3, 'more than one step: the text came as it was generated');
      const multi: ChatMessage[] = [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello!' },
        { role: 'user', content: 'Bye' },
      ];
      let text = '';
      for await (const s of gen.chat(multi, params, 20)) text = s.text;
      assert.equal(text, 'Ciao.');
      // Limited to 2 tokens: it stops for length.
      let end: GenerationStep | undefined;
      for await (const s of gen.chat(multi, params, 2)) end = s;
      assert.equal(end?.stopped, 'length');
      assert.equal(end?.tokens, 2);
    } finally {
      await gen.release();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a stop marker the tokenizer spells in pieces ends the reply and is never shown', async () => {
  // The llama fixture does not know ChatML's markers: "<|im_end|>" is text to find in what is generated. A delta
  // that makes "<|im_end|>" likely is not needed: the stream is checked on a scripted session.
  const tok = TextTokenizer.fromFolder(LLAMA);
  const chat = chatTemplateFor(LLAMA, tok, 'chatml');
  const model = loadModel(LLAMA, { task: 'causal-lm' });
  const gen = await Generator.open(model, tok, [], 'cpu', chat);
  const script = tok.encode('Hi there<|im_end|>\nmore', undefined, { addSpecialTokens: false }).ids;
  let at = 0;
  const V = tok.vocabSize;
  // Replace the session by one that answers the script, one token per run.
  const scripted = gen as unknown as { session: { run: () => Promise<unknown>; release: () => Promise<void> } };
  const real = scripted.session;
  scripted.session = {
    run: async () => {
      const data = new Float32Array(V);
      data[script[Math.min(at++, script.length - 1)]] = 1;
      return { logits: { dtype: 'float32', shape: [1, 1, V], data } };
    },
    release: () => real.release(),
  };
  const shown: string[] = [];
  let last: GenerationStep | undefined;
  for await (const s of gen.chat([{ role: 'user', content: 'x' }], {}, 50)) {
    shown.push(s.text);
    last = s;
  }
  await gen.release();
  assert.equal(last?.text, 'Hi there');
  assert.equal(last?.stopped, 'stop');
  for (const s of shown)
    assert.ok(!s.includes('<|') && !s.endsWith('<'), `never a piece of the marker: ${JSON.stringify(s)}`);
});
