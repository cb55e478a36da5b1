// Evaluation metrics: accuracy, macro-F1 and MCC for classification, Pearson and Spearman for regression,
// loss and perplexity for language models, exact match for generation.

export function accuracy(pred: number[], gold: number[]): number {
  if (pred.length !== gold.length || pred.length === 0)
    throw new Error(`accuracy: ${pred.length} predictions for ${gold.length} labels`);
  return pred.reduce((a, p, i) => a + (p === gold[i] ? 1 : 0), 0) / pred.length;
}

/** Unweighted mean of per-class F1 over the classes present in gold or predictions (scikit-learn's macro F1). */
export function macroF1(pred: number[], gold: number[]): number {
  const classes = [...new Set([...pred, ...gold])];
  let sum = 0;
  for (const c of classes) {
    let tp = 0,
      fp = 0,
      fn = 0;
    for (let i = 0; i < pred.length; i++) {
      if (pred[i] === c && gold[i] === c) tp++;
      else if (pred[i] === c) fp++;
      else if (gold[i] === c) fn++;
    }
    sum += tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
  }
  return sum / classes.length;
}

/** Matthews correlation coefficient, multiclass (Gorodkin's R_K, as scikit-learn); 0 when undefined. */
export function mcc(pred: number[], gold: number[]): number {
  const classes = [...new Set([...pred, ...gold])];
  const n = pred.length;
  let correct = 0;
  const t = new Map<number, number>(),
    p = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    if (pred[i] === gold[i]) correct++;
    t.set(gold[i], (t.get(gold[i]) ?? 0) + 1);
    p.set(pred[i], (p.get(pred[i]) ?? 0) + 1);
  }
  let tp = 0,
    tt = 0,
    pp = 0;
  for (const c of classes) {
    tp += (t.get(c) ?? 0) * (p.get(c) ?? 0);
    tt += (t.get(c) ?? 0) ** 2;
    pp += (p.get(c) ?? 0) ** 2;
  }
  const den = Math.sqrt((n * n - pp) * (n * n - tt));
  return den === 0 ? 0 : (correct * n - tp) / den;
}

export function pearson(x: number[], y: number[]): number {
  const n = x.length;
  if (n !== y.length || n < 2) throw new Error(`pearson: needs two series of the same length ≥ 2 (${n}, ${y.length})`);
  const mx = x.reduce((a, b) => a + b, 0) / n,
    my = y.reduce((a, b) => a + b, 0) / n;
  let sxy = 0,
    sxx = 0,
    syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) ** 2;
    syy += (y[i] - my) ** 2;
  }
  return sxx === 0 || syy === 0 ? 0 : sxy / Math.sqrt(sxx * syy);
}

/** Average ranks (ties share the mean rank), 1-based. */
function ranks(x: number[]): number[] {
  const order = x.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  const r = new Array<number>(x.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j++;
    for (let k = i; k <= j; k++) r[order[k][1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return r;
}

export function spearman(x: number[], y: number[]): number {
  return pearson(ranks(x), ranks(y));
}

export const perplexity = (meanLoss: number): number => Math.exp(meanLoss);

/** Exact match after trimming and collapsing whitespace (SQuAD-style normalisation without punctuation rules). */
export function exactMatch(pred: string[], gold: string[]): number {
  const norm = (s: string): string => s.trim().replace(/\s+/g, ' ');
  return pred.reduce((a, p, i) => a + (norm(p) === norm(gold[i]) ? 1 : 0), 0) / Math.max(1, pred.length);
}
