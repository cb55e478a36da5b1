// The application's event stream, typed by the contract: the service forwards it to every UI, the CLI prints it.
import { EventEmitter } from 'node:events';
import type { EventName, Events } from '../contract/index.js';

export type Listener<E extends EventName> = (data: Events[E]) => void;

export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(100);
  }

  emit<E extends EventName>(event: E, data: Events[E]): void {
    this.emitter.emit(event, data);
  }

  /** Subscribes; returns the unsubscribe. */
  on<E extends EventName>(event: E, fn: Listener<E>): () => void {
    this.emitter.on(event, fn);
    return () => this.off(event, fn);
  }

  off<E extends EventName>(event: E, fn: Listener<E>): void {
    this.emitter.off(event, fn);
  }

  clear(): void {
    this.emitter.removeAllListeners();
  }
}
