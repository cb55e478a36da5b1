// A run folder's run.json: what the trainer needs to start or resume the run without the database (the dataset's
// folder, the full training config, the plugin its delta becomes).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../files/atomic.js';
import type { TaskName } from '../contract/index.js';
import type { TrainConfig } from '../train/trainer.js';

export interface RunFile {
  id: string;
  dataset: { dir: string; digest: string; task: TaskName };
  config: TrainConfig;
  /** Name of the plugin its delta is registered as. */
  plugin?: string;
}

export const RUN_FILE = 'run.json';

export function writeRunFile(runDir: string, run: RunFile): void {
  writeFileAtomic(join(runDir, RUN_FILE), new TextEncoder().encode(`${JSON.stringify(run, null, 2)}\n`));
}

export function readRunFile(runDir: string): RunFile {
  const file = join(runDir, RUN_FILE);
  if (!existsSync(file))
    throw new Error(`${runDir}: no ${RUN_FILE}: the run's folder is gone; it cannot be started or resumed`);
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as RunFile;
  } catch (e) {
    throw new Error(`${file} is damaged (${(e as Error).message}); the run cannot be resumed`, { cause: e });
  }
}
