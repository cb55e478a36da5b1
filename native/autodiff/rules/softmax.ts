// Gradient rules of Softmax, LogSoftmax and the fused softmax cross-entropy loss.
import { defineRule } from '../registry.js';
import { cast, halfSource, mul, neg, reduceKeep, scalar, sub } from '../emit.js';
import type { Value } from '../../onnx/graph.js';

defineRule('Softmax', (c) => {
  const { g } = c;
  const y = c.y(0),
    dy = c.dy[0]!;
  const axis = c.attr('axis', -1);
  return [mul(g, y, sub(g, dy, reduceKeep(g, mul(g, dy, y), [axis])))];
});

defineRule('LogSoftmax', (c) => {
  const { g } = c;
  const y = c.y(0),
    dy = c.dy[0]!;
  const axis = c.attr('axis', -1);
  return [sub(g, dy, mul(g, g.op1('Exp', [y]), reduceKeep(g, dy, [axis])))];
});

// d loss / d scores = (softmax − onehot(label)) · row weight. The one-hot is never built: −1 is scattered into
// the probabilities at each label, so a 32k vocabulary costs one [N, C] tensor, not two.
// When the scores are a float32 copy of float16 logits (autocast's, before the loss), the [N, C] work is done on the
// float16 logits instead: their softmax (the kernels compute it in float32) times each row's weight, and at each label
// (p − 1)·weight from the float32 log probability, so the entry that nearly cancels is exact before it is rounded. It
// is returned as a float32 copy that the Cast's gradient takes back as it was: three float16 passes over [N, C] instead
// of three float32 ones and a cast, and the float16 logits, not the float32 log probabilities, kept for it.
defineRule('SoftmaxCrossEntropyLoss', (c) => {
  const { g } = c;
  const scores = c.x(0),
    labels = c.x(1);
  const dt = scores.dtype;
  const reduction = c.attr('reduction', 'mean');
  const ignore = c.node.attrs.ignore_index as number | undefined;
  let safe: Value = labels;
  let valid: Value | undefined;
  if (ignore !== undefined) {
    valid = g.op1('Not', [g.op1('Equal', [labels, g.constant(ignore, labels.dtype, [])])]);
    safe = g.op1('Where', [valid, labels, g.constant(0, labels.dtype, [])]);
  }
  const idx = g.op1('Unsqueeze', [safe, g.constant([1], 'int64', [1])]);
  let w: Value | undefined = valid ? cast(g, valid, dt) : undefined;
  if (c.has(2)) {
    const cw = g.op1('Gather', [c.x(2), safe], { axis: 0 });
    w = w ? mul(g, w, cw) : cw;
  }
  let row: Value;
  const dy = c.dy[0]!;
  if (reduction === 'mean') {
    const count = w ? g.op1('ReduceSum', [w], { keepdims: 0 }) : cast(g, g.op1('Size', [labels]), dt);
    const coef = g.op1('Div', [dy, count]);
    row = w
      ? mul(g, w, coef)
      : g.op1('Expand', [coef, g.op1('Shape', [labels])], {}, { infos: [{ dtype: dt, shape: labels.shape }] });
  } else if (reduction === 'sum') {
    row = w
      ? mul(g, w, dy)
      : g.op1('Expand', [dy, g.op1('Shape', [labels])], {}, { infos: [{ dtype: dt, shape: labels.shape }] });
  } else {
    row = w ? mul(g, w, dy) : dy;
  }
  const perRow = g.op1('Unsqueeze', [row, g.constant([1], 'int64', [1])]); // [N, 1]
  const half = halfSource(g, scores);
  if (half) {
    const h = half.dtype;
    const scaled = mul(g, g.op1('Softmax', [half], { axis: -1 }), cast(g, perRow, h));
    const logp = g.op1('GatherElements', [c.y(1), idx], { axis: 1 });
    const atLabel = mul(g, sub(g, g.op1('Exp', [logp]), scalar(g, 1, dt)), perRow);
    return [cast(g, g.op1('ScatterElements', [scaled, idx, cast(g, atLabel, h)], { axis: 1 }), dt)];
  }
  const p = g.op1('Exp', [c.y(1)]);
  const minusOne = valid
    ? neg(g, cast(g, g.op1('Unsqueeze', [valid, g.constant([1], 'int64', [1])]), dt))
    : g.op1('Expand', [scalar(g, -1, dt), g.op1('Shape', [idx])], {}, { infos: [{ dtype: dt, shape: idx.shape }] });
  const diff = g.op1('ScatterElements', [p, idx, minusOne], { axis: 1, reduction: 'add' });
  return [mul(g, diff, perRow)];
});
