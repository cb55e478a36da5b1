// The tiny demo LM with its training-step graphs, as several runner tests build them (clipping 1, weight decay 0.01).
import { TINY, buildTinyLm, type TinyLmConfig } from '../../native/demo/tiny-lm.js';
import { buildTrainStep, type TrainStepSpec } from '../../native/train/step.js';

export function tinyLmSteps(cfg: TinyLmConfig = TINY, spec: Partial<TrainStepSpec> = {}) {
  const m = buildTinyLm(cfg);
  const graphs = buildTrainStep({
    forward: m.graph,
    loss: m.loss,
    trainable: m.trainable,
    optimizer: { maxGradNorm: 1, weightDecay: 0.01 },
    ...spec,
  });
  return { m, graphs };
}
