// The message layer (native/messages/): requests and replies, events, commands, errors as data, and the other side
// dying; over an in-memory pair of ports, then over a real worker thread and child process (support/echo-peer.ts).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { toContractError } from '../native/app/errors.js';
import { exportInWorker } from '../native/export/in-worker.js';
import { EndedError, errorFromData, errorToData } from '../native/messages/errors.js';
import { processPort, startProcess, startThread, threadPort } from '../native/messages/ports.js';
import { connect, serve, type Port, type PortEnd } from '../native/messages/protocol.js';
import { WorkspaceError } from '../native/store/workspace.js';
import type { EchoProtocol } from './support/echo-peer.js';

class QuotaError extends Error {
  declare readonly code: string;
  declare readonly limit: number;
}

/** Two ports joined in memory; each message is cloned and delivered a turn later, as across a thread. */
function pair(): { parent: Port; child: Port; sent: unknown[]; end(how: PortEnd): void } {
  const sent: unknown[] = [];
  const listeners = { parent: [] as ((m: unknown) => void)[], child: [] as ((m: unknown) => void)[] };
  const ends: ((how: PortEnd) => void)[] = [];
  const side = (to: 'parent' | 'child'): Port => ({
    send: (m, _transfer, done) => {
      if (to === 'child') sent.push(m);
      const copy = structuredClone(m);
      setImmediate(() => {
        for (const l of listeners[to]) l(copy);
        done?.();
      });
    },
    onMessage: (l) => void listeners[to === 'child' ? 'parent' : 'child'].push(l),
    onEnd: (l) => void ends.push(l),
  });
  return { parent: side('child'), child: side('parent'), sent, end: (how) => ends.forEach((l) => l(how)) };
}

type Sums = {
  requests: {
    add: { params: { a: number; b: number; delayMs?: number }; result: number };
    divide: { params: { a: number; b: number }; result: number };
  };
  commands: { reset: void; step: number };
  events: { total: number };
};

function sums(port: Port): { answered: string[] } {
  const answered: string[] = [];
  let total = 0;
  const server = serve<Sums>(
    port,
    {
      requests: {
        add: async ({ a, b, delayMs }) => {
          if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
          return a + b;
        },
        divide: ({ a, b }) => {
          if (b === 0) throw Object.assign(new RangeError(`cannot divide ${a} by zero`), { code: 'div-zero', a });
          return a / b;
        },
      },
      commands: {
        reset: () => {
          total = 0;
        },
        step: (n) => {
          total += n;
          server.emit('total', total);
        },
      },
    },
    { answered: (name, ok) => answered.push(`${name}:${ok}`) },
  );
  return { answered };
}

describe('the message layer', () => {
  test('requests are answered by id, a slow one after a quick one; nothing is sent before the other side is ready', async () => {
    const { parent, child, sent } = pair();
    const calc = connect<Sums>(parent);
    const slow = calc.request('add', { a: 1, b: 2, delayMs: 50 });
    const quick = calc.request('add', { a: 10, b: 20 });
    assert.deepEqual(sent, [], 'queued until the other side says it is ready');
    const { answered } = sums(child);
    const order: number[] = [];
    await Promise.all([slow.then((v) => order.push(v)), quick.then((v) => order.push(v))]);
    assert.deepEqual(order, [30, 3]);
    assert.deepEqual(sent, [
      { kind: 'request', id: 0, name: 'add', params: { a: 1, b: 2, delayMs: 50 } },
      { kind: 'request', id: 1, name: 'add', params: { a: 10, b: 20 } },
    ]);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(answered, ['add:true', 'add:true']);
  });

  test('commands run on the other side and events stream back, in order', async () => {
    const { parent, child } = pair();
    sums(child);
    const calc = connect<Sums>(parent);
    const totals: number[] = [];
    calc.on('total', (t) => totals.push(t));
    calc.command('step', 2);
    calc.command('step', 3);
    calc.command('reset');
    calc.command('step', 7);
    assert.equal(await calc.request('add', { a: 0, b: 0 }), 0, 'a reply comes after the events sent before it');
    assert.deepEqual(totals, [2, 5, 7]);
  });

  test('an error crosses as data: class (by name), message, code and fields survive; unknown requests fail', async () => {
    const { parent, child } = pair();
    const { answered } = sums(child);
    const calc = connect<Sums>(parent);
    const e = await calc.request('divide', { a: 6, b: 0 }).catch((x: unknown) => x);
    assert.ok(e instanceof RangeError);
    assert.equal((e as RangeError).message, 'cannot divide 6 by zero');
    assert.equal((e as RangeError & { code: string }).code, 'div-zero');
    assert.equal((e as RangeError & { a: number }).a, 6);
    assert.match(
      (e as Error).stack!,
      /^RangeError: cannot divide 6 by zero\n\s+at /,
      'the stack of the side that threw',
    );
    await assert.rejects(calc.request('square' as 'add', { a: 1, b: 1 }), /^Error: unknown request "square"$/);
    assert.equal(await calc.request('divide', { a: 6, b: 3 }), 2, 'the other side still answers after a failure');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(answered, ['divide:false', 'square:false', 'divide:true']);
  });

  test('the other side dying rejects every waiting request, and later ones; commands are dropped', async () => {
    const { parent, child, sent, end } = pair();
    sums(child);
    const calc = connect<Sums>(parent, {
      ended: ({ code, signal }) => `the adder ended (${signal ?? `code ${code}`})`,
    });
    await calc.request('add', { a: 1, b: 1 });
    const waiting = [
      calc.request('add', { a: 1, b: 2, delayMs: 200 }),
      calc.request('add', { a: 3, b: 4, delayMs: 200 }),
    ];
    end({ code: null, signal: 'SIGKILL' });
    for (const w of waiting) await assert.rejects(w, /^EndedError: the adder ended \(SIGKILL\)$/);
    // Told apart from an error the other side reported by its class and code, not by its words.
    const ended = await waiting[0].catch((e: unknown) => e);
    assert.ok(ended instanceof EndedError);
    assert.deepEqual([ended.code, ended.exitCode, ended.signal], ['ended', null, 'SIGKILL']);
    await assert.rejects(calc.request('add', { a: 0, b: 0 }), /the adder ended \(SIGKILL\)/);
    const n = sent.length;
    calc.command('reset');
    assert.equal(sent.length, n);
    // A thread that fails before it exits: its own error is the one waiting requests get.
    const other = pair();
    const calc2 = connect<Sums>(other.parent);
    const w = calc2.request('add', { a: 1, b: 1 });
    other.end({ error: new Error('worker crashed: out of memory') });
    other.end({ code: 1 });
    await assert.rejects(w, /^Error: worker crashed: out of memory$/);
  });

  test('errors as data: JSON-safe fields only, built-in classes kept, unknown classes named', () => {
    const e = Object.assign(new Error('disk full'), {
      code: 'ENOSPC',
      path: '/x',
      detail: { free: 0, tries: [1, 2] },
      handle: () => 1,
      cause: new Error('deep'),
    });
    const data = errorToData(e);
    assert.deepEqual(JSON.parse(JSON.stringify(data)), data);
    assert.deepEqual(
      { ...data, stack: undefined },
      {
        name: 'Error',
        message: 'disk full',
        code: 'ENOSPC',
        path: '/x',
        detail: { free: 0, tries: [1, 2] },
        stack: undefined,
      },
    );
    const back = errorFromData(data);
    assert.equal(Object.getPrototypeOf(back), Error.prototype);
    assert.equal(String(back), 'Error: disk full');
    assert.deepEqual(Object.keys(back).sort(), ['code', 'detail', 'path']);
    assert.ok(errorFromData(errorToData(new TypeError('t'))) instanceof TypeError);
    const unknown = errorFromData({ name: 'PluginError', message: 'bad plugin', code: 'mismatch' });
    assert.equal(Object.getPrototypeOf(unknown), Error.prototype);
    assert.equal(String(unknown), 'PluginError: bad plugin');
    assert.deepEqual(errorToData('just a string'), { name: 'Error', message: 'just a string' });
  });
});

describe('the message layer over real carriers', () => {
  const peer = (how: 'thread' | 'process') => {
    const options = {
      errors: { QuotaError },
      ended: ({ code, signal }: { code: number | null; signal?: string | null }) =>
        `the echo ${how} ended (${signal ? `signal ${signal}` : `exit code ${code}`})`,
    };
    if (how === 'thread') {
      const worker = startThread(import.meta.url, './support/echo-peer');
      return { echo: connect<EchoProtocol>(threadPort(worker), options), kill: () => worker.terminate() };
    }
    const child = startProcess(import.meta.url, './support/echo-peer');
    return { echo: connect<EchoProtocol>(processPort(child), options), kill: () => child.kill('SIGKILL') };
  };

  for (const how of ['thread', 'process'] as const)
    test(`a ${how}: echo, events, an error with its class and code, then its death rejects what waits`, async () => {
      const { echo, kill } = peer(how);
      const r = await echo.request('echo', { text: 'héllo' });
      assert.equal(r.text, 'héllo');
      assert.equal(r.inThread, how === 'thread');
      assert.equal(r.pid === process.pid, how === 'thread');
      const counted: number[] = [];
      echo.on('counted', (n) => counted.push(n));
      echo.command('count', 3);
      const e = await echo.request('fail', { limit: 5 }).catch((x: unknown) => x);
      assert.ok(e instanceof QuotaError, `rebuilt as the class this side knows by that name: ${String(e)}`);
      assert.equal(e.message, 'over the quota of 5');
      assert.equal(e.code, 'over-quota');
      assert.equal(e.limit, 5);
      assert.deepEqual(counted, [1, 2, 3]);
      if (how === 'thread') {
        await assert.rejects(echo.request('exit', { code: 7 }), /^EndedError: the echo thread ended \(exit code 7\)$/);
        return;
      }
      const waiting = echo.request('hang', undefined);
      await echo.request('echo', { text: 'still here' });
      kill();
      await assert.rejects(waiting, (e: unknown) => e instanceof EndedError && e.signal === 'SIGKILL');
      await assert.rejects(waiting, /^EndedError: the echo process ended \(signal SIGKILL\)$/);
      await assert.rejects(echo.request('echo', { text: 'x' }), /ended \(signal SIGKILL\)/);
    });

  test("an export worker's failure keeps its class, so the service gives it the same contract code", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ds-msg-'));
    const e = await exportInWorker(join(dir, 'no-such-workspace'), { plugin: 'p', format: 'peft' }).catch(
      (x: unknown) => x,
    );
    assert.ok(e instanceof WorkspaceError, String(e));
    assert.equal(e.code, 'not-found');
    assert.match(e.message, /not a Delta Studio workspace/);
    assert.deepEqual(toContractError(e).error, { code: 'not-found', message: e.message });
    rmSync(dir, { recursive: true });
  });
});
