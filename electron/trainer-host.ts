// The trainer in an Electron utilityProcess: the same TrainerJob as native/train/process.ts startTrainer and the same
// messages as native/train/trainer-process.ts (ready → train, event*, result | error; cancel, pause, resume), so a
// native crash in onnxruntime ends that process only and the run resumes from its checkpoint.
import type { Example } from '../native/train/collate.js';
import type { TrainerJob } from '../native/train/process.js';
import type { TrainConfig, TrainEvent, TrainResult } from '../native/train/trainer.js';

export interface UtilityChildLike {
  pid: number | undefined;
  postMessage(message: unknown): void;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  on(event: 'exit', listener: (code: number) => void): unknown;
  kill(): boolean;
}
export interface UtilityProcessLike {
  fork(
    modulePath: string,
    args?: string[],
    options?: { serviceName?: string; stdio?: 'inherit' | 'pipe' | 'ignore'; env?: Record<string, string | undefined> },
  ): UtilityChildLike;
}
export type StartTrainer = (
  config: TrainConfig,
  data: { train: Example[]; validation?: Example[] },
  onEvent?: (e: TrainEvent) => void,
) => TrainerJob;

/** A startTrainer for the service that forks `entry` (dist-electron/trainer.cjs) with Electron's utilityProcess. */
export function utilityTrainer(utilityProcess: UtilityProcessLike, entry: string): StartTrainer {
  return (config, data, onEvent = () => {}) => {
    const child = utilityProcess.fork(entry, [], { serviceName: 'Delta Studio trainer', stdio: 'inherit' });
    const result = new Promise<TrainResult>((resolve, reject) => {
      let settled = false;
      child.on('message', (raw) => {
        const m = raw as { type: string; event?: TrainEvent; result?: TrainResult; message?: string };
        if (m.type === 'ready') child.postMessage({ type: 'train', config, data });
        else if (m.type === 'event') onEvent(m.event!);
        else if (m.type === 'result') {
          settled = true;
          resolve(m.result!);
        } else if (m.type === 'error') {
          settled = true;
          reject(new Error(m.message));
        }
      });
      child.on('exit', (code) => {
        if (!settled)
          reject(
            new Error(
              `the trainer process ended without a result (exit code ${code}); resume the run from its last checkpoint`,
            ),
          );
      });
    });
    return {
      // The pid is known once the process has spawned (it has by the first message, long before any checkpoint).
      get pid() {
        return child.pid ?? 0;
      },
      result,
      cancel: () => child.postMessage({ type: 'cancel' }),
      pause: () => child.postMessage({ type: 'pause' }),
      resume: () => child.postMessage({ type: 'resume' }),
      kill: () => void child.kill(),
    };
  };
}
