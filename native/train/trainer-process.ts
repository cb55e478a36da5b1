// The trainer process: runs one training job and streams its events to the parent. A native crash here ends this
// process only; the parent sees the exit and the run can be resumed from its last checkpoint.
import { train, type TrainConfig } from './trainer.js';
import type { Example } from './collate.js';

const controller = new AbortController();

process.on('message', (msg: { type: string; config?: TrainConfig; data?: { train: Example[]; validation?: Example[] } }) => {
  if (msg.type === 'cancel') controller.abort();
  if (msg.type !== 'train') return;
  train(msg.config!, msg.data!, (e) => process.send!({ type: 'event', event: e }), controller.signal).then(
    (result) => process.send!({ type: 'result', result }, () => process.exit(0)),
    (e: Error) => process.send!({ type: 'error', message: e.message }, () => process.exit(1)),
  );
});
process.send!({ type: 'ready' });
