// The one contract between the front ends (the UI over Electron IPC or HTTP + WebSocket, the CLI) and the
// application: methods with runtime-checked parameters, their results, events, errors and the shared vocabulary.
// It imports nothing of the engine, so the renderer may import it whole.
export * from './vocabulary.js';
export * from './run-config.js';
export * from './errors.js';
export * from './methods.js';
export * from './events.js';
export type * from './types.js';
