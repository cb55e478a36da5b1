// The trainer process: runs one training job and streams its events to the parent. A native crash here ends this
// process only; the parent sees the exit and the run can be resumed from its last checkpoint.
import { train, type TrainConfig } from './trainer.js';
import type { Example } from './collate.js';

const controller = new AbortController();
let release: (() => void) | undefined;
let paused: Promise<void> | undefined;
// A paused run waits before its next step (and says so then); resume (or cancel) lets it go on.
const gate = async (): Promise<void> => {
  if (!paused) return;
  process.send!({ type: 'event', event: { type: 'paused' } });
  await paused;
};

process.on(
  'message',
  (msg: { type: string; config?: TrainConfig; data?: { train: Example[]; validation?: Example[] } }) => {
    if (msg.type === 'cancel') {
      controller.abort();
      release?.();
      paused = undefined;
    }
    if (msg.type === 'pause' && !paused)
      paused = new Promise((r) => {
        release = r;
      });
    if (msg.type === 'resume' && paused) {
      release?.();
      paused = undefined;
      process.send!({ type: 'event', event: { type: 'resumed' } });
    }
    if (msg.type !== 'train') return;
    train(msg.config!, msg.data!, (e) => process.send!({ type: 'event', event: e }), controller.signal, gate).then(
      (result) => process.send!({ type: 'result', result }, () => process.exit(0)),
      (e: Error) => process.send!({ type: 'error', message: e.message }, () => process.exit(1)),
    );
  },
);
// The parent is gone (killed, or closed): nobody records this run any more. Stop; its last checkpoint stands and the
// run, marked interrupted when its workspace is next opened, resumes from there.
process.on('disconnect', () => process.exit(3));
process.send!({ type: 'ready' });
