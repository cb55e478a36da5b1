// The trainer process: runs one training job and streams its events to the parent. A native crash here ends this
// process only; the parent sees the exit and the run can be resumed from its last checkpoint.
import { startedBy } from '../messages/ports.js';
import { serve } from '../messages/protocol.js';
import type { TrainerProtocol } from './process.js';
import { train } from './trainer.js';

const controller = new AbortController();
let release: (() => void) | undefined;
let paused: Promise<void> | undefined;
// A paused run waits before its next step (and says so then); resume (or cancel) lets it go on.
const gate = async (): Promise<void> => {
  if (!paused) return;
  parent.emit('train', { type: 'paused' });
  await paused;
};

const parent = serve<TrainerProtocol>(
  startedBy(),
  {
    requests: {
      train: ({ config, data }) => train(config, data, (e) => parent.emit('train', e), controller.signal, gate),
    },
    commands: {
      cancel: () => {
        controller.abort();
        release?.();
        paused = undefined;
      },
      pause: () => {
        if (!paused)
          paused = new Promise((r) => {
            release = r;
          });
      },
      resume: () => {
        if (!paused) return;
        release?.();
        paused = undefined;
        parent.emit('train', { type: 'resumed' });
      },
    },
  },
  // One run per process: it ends once its answer has left, with the exit code saying how the run went.
  { answered: (_request, ok) => process.exit(ok ? 0 : 1) },
);
// The parent is gone (killed, or closed; a failed send says so too): nobody records this run any more. Stop quietly;
// its last checkpoint stands and the run, marked interrupted when its workspace is next opened, resumes from there.
void parent.gone.then(() => process.exit(3));
