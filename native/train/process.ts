// Starts a training job in its own process (never on a thread that must stay responsive) and relays its events.
import { DiskFullError } from '../files/disk.js';
import { processPort, startProcess } from '../messages/ports.js';
import { cudaProcessEnv } from '../runtime/cuda-libs.js';
import { connect, type Port } from '../messages/protocol.js';
import type { Example } from './collate.js';
import type { TrainConfig, TrainEvent, TrainResult } from './trainer.js';

export interface TrainerJob {
  pid: number;
  result: Promise<TrainResult>;
  /** Stops after the current step; the delta so far is saved and the run ends as "cancelled". */
  cancel(): void;
  /** Waits before the next step until resume(); the process and its state stay as they are. */
  pause(): void;
  resume(): void;
  /** Ends the process at once (as a crash would). */
  kill(): void;
}

export type TrainData = { train: Example[]; validation?: Example[]; test?: Example[] };

/** What a trainer process answers (trainer-process.ts): one run, its events, and commands while it runs. */
export type TrainerProtocol = {
  requests: { train: { params: { config: TrainConfig; data: TrainData }; result: TrainResult } };
  commands: { cancel: void; pause: void; resume: void };
  events: { train: TrainEvent };
};

/**
 * A TrainerJob over the port to a trainer process, whichever started it: a forked child here, a utility process in
 * the desktop app (electron/trainer-host.ts).
 */
export function trainerJob(
  port: Port,
  trainer: { pid(): number; kill(): void },
  config: TrainConfig,
  data: TrainData,
  onEvent: (e: TrainEvent) => void,
): TrainerJob {
  const run = connect<TrainerProtocol>(port, {
    // A checkpoint that did not fit comes back as what it is; a trainer that died comes back as an EndedError.
    errors: { DiskFullError },
    ended: ({ code, signal }) =>
      `the trainer process ended without a result (${signal ? `signal ${signal}` : `exit code ${code}`}); resume the run from its last checkpoint`,
  });
  run.on('train', onEvent);
  return {
    get pid() {
      return trainer.pid();
    },
    result: run.request('train', { config, data }),
    cancel: () => run.command('cancel'),
    pause: () => run.command('pause'),
    resume: () => run.command('resume'),
    kill: () => trainer.kill(),
  };
}

export function startTrainer(
  config: TrainConfig,
  data: TrainData,
  onEvent: (e: TrainEvent) => void = () => {},
): TrainerJob {
  // A run that may use CUDA starts with the CUDA libraries found on this machine on its loader path.
  const env = config.device === 'cpu' ? undefined : cudaProcessEnv(process.env);
  const child = startProcess(import.meta.url, './trainer-process', { env });
  return trainerJob(
    processPort(child),
    { pid: () => child.pid!, kill: () => child.kill('SIGKILL') },
    config,
    data,
    onEvent,
  );
}
