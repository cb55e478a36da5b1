// The event socket of `delta-studio serve` as a test opens it: the open socket, or the status that refused it.
import WebSocket from 'ws';

/** Opens a WebSocket: the socket once open, the HTTP status of a refusal, or -1 when the connection failed. */
export function openSocket(url: string, opts: WebSocket.ClientOptions = {}): Promise<WebSocket | number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, opts);
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('error', () => resolve(-1));
  });
}
