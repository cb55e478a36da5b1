// Batches for an epoch: examples shuffled by seed, grouped into buckets of similar length to cut padding, then the
// batches themselves shuffled. A pure function of (lengths, batch size, seed, epoch): a resumed run rebuilds the
// same order and continues from its cursor.
import { Rng } from '../rng.js';

export interface BatchPlan {
  batches: number[][];
  /** Tokens the plan pads, and the real tokens it carries. */
  padTokens: number;
  realTokens: number;
}

function shuffle<T>(xs: T[], rng: Rng): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

/**
 * Length bucketing as in fairseq/Megatron "sort within a window": shuffle, cut into windows of `window` batches,
 * sort each window by length, slice into batches, shuffle the batches. `window` 1 is a plain shuffle.
 */
export function planEpoch(lengths: number[], batchSize: number, seed: number, epoch: number, window = 50): BatchPlan {
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new Error(`batch size must be a positive integer, got ${batchSize}`);
  const rng = new Rng((seed * 1000003 + epoch * 7919 + 1) >>> 0);
  const order = shuffle(
    lengths.map((_, i) => i),
    rng,
  );
  const batches: number[][] = [];
  const span = batchSize * Math.max(1, window);
  for (let w = 0; w < order.length; w += span) {
    const chunk = order.slice(w, w + span).sort((a, b) => lengths[a] - lengths[b] || a - b);
    for (let b = 0; b < chunk.length; b += batchSize) batches.push(chunk.slice(b, b + batchSize));
  }
  shuffle(batches, rng);
  let pad = 0,
    real = 0;
  for (const b of batches) {
    const max = Math.max(...b.map((i) => lengths[i]));
    for (const i of b) {
      pad += max - lengths[i];
      real += lengths[i];
    }
  }
  return { batches, padTokens: pad, realTokens: real };
}
