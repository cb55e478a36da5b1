// In a utilityProcess the parent is process.parentPort, not process.send/'message': this maps the one onto the other
// so native/train/trainer-process.ts runs unchanged. Imported before it (ES modules evaluate in import order).
interface ParentPort {
  postMessage(message: unknown): void;
  on(event: 'message', listener: (e: { data: unknown }) => void): unknown;
}
const port = (process as unknown as { parentPort?: ParentPort }).parentPort;
if (port) {
  const p = process as unknown as { send: (m: unknown, cb?: () => void) => boolean };
  p.send = (message, cb) => {
    port.postMessage(message);
    // postMessage is queued, not flushed: give the message a turn of the loop before a callback that exits.
    if (cb) setTimeout(cb, 50);
    return true;
  };
  const emit = process.emit.bind(process) as unknown as (event: string, ...args: unknown[]) => boolean;
  port.on('message', (e) => emit('message', e.data));
}
