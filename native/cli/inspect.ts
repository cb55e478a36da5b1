// `delta-studio inspect <model-dir>`: the model's module tree with parameter shapes and counts.
import { loadModel, type Task } from '../models/index.js';
import { moduleTree, renderTree } from '../models/tree.js';

export async function inspect(dir: string | undefined, v: Record<string, string | boolean | undefined>): Promise<number> {
  if (!dir) throw new Error('inspect needs a model folder: delta-studio inspect <model-dir> [--json]');
  const task = v.task as Task | undefined;
  const numLabels = v['num-labels'] === undefined ? undefined : Number(v['num-labels']);
  if (numLabels !== undefined && (!Number.isInteger(numLabels) || numLabels < 1)) throw new Error(`--num-labels must be a positive integer, got "${v['num-labels']}"`);
  const model = loadModel(dir, { task, numLabels });
  const tree = moduleTree(model);
  if (v.json) {
    process.stdout.write(`${JSON.stringify({ ...tree, root: undefined, task: model.task, inputs: model.inputs })}\n`);
  } else {
    process.stdout.write(`${renderTree(tree)}\n`);
  }
  return 0;
}
