// The trainer in an Electron utilityProcess: the same TrainerJob as native/train/process.ts startTrainer over the same
// protocol (native/train/trainer-process.ts), so a native crash in onnxruntime ends that process only and the run
// resumes from its checkpoint. Only the carrier differs: a utility process's postMessage and 'message'/'exit'.
import type { Port } from '../native/messages/protocol.js';
import { trainerJob, type TrainData, type TrainerJob } from '../native/train/process.js';
import { cudaProcessEnv } from '../native/runtime/cuda-libs.js';
import type { TrainConfig, TrainEvent } from '../native/train/trainer.js';

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
export type StartTrainer = (config: TrainConfig, data: TrainData, onEvent?: (e: TrainEvent) => void) => TrainerJob;

export function utilityPort(child: UtilityChildLike): Port {
  return {
    send: (message, _transfer, sent) => {
      child.postMessage(message);
      sent?.();
    },
    onMessage: (listener) => void child.on('message', listener),
    onEnd: (listener) => void child.on('exit', (code) => listener({ code })),
  };
}

/** A startTrainer for the service that forks `entry` (dist-electron/trainer.cjs) with Electron's utilityProcess. */
export function utilityTrainer(utilityProcess: UtilityProcessLike, entry: string): StartTrainer {
  return (config, data, onEvent = () => {}) => {
    // A run that may use CUDA starts with the CUDA libraries found on this machine on its loader path.
    const env = config.device === 'cpu' ? undefined : cudaProcessEnv(process.env);
    const child = utilityProcess.fork(entry, [], {
      serviceName: 'Delta Studio trainer',
      stdio: 'inherit',
      ...(env ? { env } : {}),
    });
    const trainer = {
      // Known once the process has spawned (it has by the first message, long before any checkpoint).
      pid: () => child.pid ?? 0,
      kill: () => void child.kill(),
    };
    return trainerJob(utilityPort(child), trainer, config, data, onEvent);
  };
}
