// Starts a training job in its own process (never on a thread that must stay responsive) and relays its events.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
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

export function startTrainer(
  config: TrainConfig,
  data: { train: Example[]; validation?: Example[] },
  onEvent: (e: TrainEvent) => void = () => {},
): TrainerJob {
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = fileURLToPath(new URL(`./trainer-process${fromSource ? '.ts' : '.js'}`, import.meta.url));
  const child: ChildProcess = fork(entry, [], {
    // tsx by absolute URL: the user's working folder need not hold our node_modules.
    execArgv: fromSource ? ['--import', import.meta.resolve('tsx')] : [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const result = new Promise<TrainResult>((resolve, reject) => {
    let settled = false;
    child.on('message', (m: { type: string; event?: TrainEvent; result?: TrainResult; message?: string }) => {
      if (m.type === 'ready') child.send({ type: 'train', config, data });
      else if (m.type === 'event') onEvent(m.event!);
      else if (m.type === 'result') {
        settled = true;
        resolve(m.result!);
      } else if (m.type === 'error') {
        settled = true;
        reject(new Error(m.message));
      }
    });
    child.on('exit', (code, sig) => {
      if (!settled)
        reject(
          new Error(
            `the trainer process ended without a result (${sig ? `signal ${sig}` : `exit code ${code}`}); resume the run from its last checkpoint`,
          ),
        );
    });
  });
  return {
    pid: child.pid!,
    result,
    cancel: () => child.send({ type: 'cancel' }),
    pause: () => child.send({ type: 'pause' }),
    resume: () => child.send({ type: 'resume' }),
    kill: () => child.kill('SIGKILL'),
  };
}
