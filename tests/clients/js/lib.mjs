// Shared helpers for the client scenarios: target URL, bounded waits, assertions, shard decoding,
// and a runner that gives every scenario one overall deadline and a clear exit status.
// Every wait here is bounded; traffic goes only to RINGCAST_URL (a loopback server).
import http from 'node:http';
import { isDeepStrictEqual, inspect } from 'node:util';
import { randomBytes } from 'node:crypto';
import { io, Manager } from 'socket.io-client';

export { io, Manager };

export const BASE_URL = process.env.RINGCAST_URL;
if (!BASE_URL) {
  console.error('RINGCAST_URL is not set (expected e.g. http://127.0.0.1:3000)');
  process.exit(2);
}

/** The server is not the one the harness started (cross-shard facts can't be asserted then). */
export const EXTERNAL = process.env.RINGCAST_EXTERNAL === '1';

/** How many shards the server runs (only meaningful when not external). */
export const SHARDS = Number(process.env.RINGCAST_SHARDS || '2');

/** Transport mode from argv: default (polling, then upgrade), polling or websocket. */
export const MODE = process.argv[2] || 'default';

/** socket.io-client options for a transport mode. */
export function transportOptions(mode = MODE) {
  switch (mode) {
    case 'default':
      return {};
    case 'polling':
      return { transports: ['polling'] };
    case 'websocket':
      return { transports: ['websocket'] };
    default:
      throw new Error(`unknown transport mode ${mode}`);
  }
}

export class TestFailure extends Error {}

export function fail(message) {
  throw new TestFailure(message);
}

export function check(condition, message) {
  if (!condition) fail(message);
}

export function checkEqual(actual, expected, what) {
  if (!isDeepStrictEqual(actual, expected)) {
    fail(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

/** Short printable form of a value (long strings and buffers are summarised). */
export function show(value) {
  if (typeof value === 'string' && value.length > 80) {
    return `<string of ${value.length} chars starting ${JSON.stringify(value.slice(0, 20))}>`;
  }
  return inspect(value, { depth: 6, maxStringLength: 80, maxArrayLength: 20, breakLength: Infinity, compact: true });
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A unique room name, so scenarios sharing one external server never see each other's traffic. */
export function uniqueName(prefix) {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/** Rejects after `ms` with a message naming what was awaited. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new TestFailure(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The arguments of the next `event` on `emitter`, bounded by `ms`. */
/**
 * One HTTP request to the Socket.IO path on its own TCP connection (agent: false,
 * Connection: close), so that requests of one session land on any shard. Resolves to
 * { status, type, body: Buffer }.
 */
export function freshRequest(method, query, body, contentType = 'text/plain;charset=UTF-8', ms = 5000) {
  const base = new URL(BASE_URL);
  const payload = body === undefined ? undefined : Buffer.from(body);
  return withTimeout(
    new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: base.hostname,
          port: base.port,
          method,
          path: `/socket.io/?${query}`,
          agent: false,
          headers: {
            Connection: 'close',
            ...(payload === undefined ? {} : { 'Content-Type': contentType, 'Content-Length': payload.length }),
          },
        },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'] || '', body: Buffer.concat(chunks) }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    }),
    ms,
    `${method} ${query}`,
  );
}

export function waitFor(emitter, event, ms = 5000, what = `"${event}" event`) {
  return withTimeout(
    new Promise((resolve) => emitter.once(event, (...args) => resolve(args))),
    ms,
    what,
  );
}

/** Waits until `predicate()` holds, polling every 10 ms, bounded by `ms`. */
export async function until(predicate, ms, what) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** The shard index a ringcast id names: its first two bytes, big-endian. */
export function shardOf(id) {
  return Buffer.from(id.slice(0, 4), 'base64url').readUInt16BE(0);
}

/** Asserts that an engine sid or socket id has ringcast's shape (skipped for an external server). */
export function checkRingcastId(id, what) {
  check(typeof id === 'string' && id.length > 0, `${what} is not set: ${show(id)}`);
  if (EXTERNAL) return;
  check(/^[A-Za-z0-9_-]{20}$/.test(id), `${what} ${show(id)} is not 20 base64url characters`);
  const shard = shardOf(id);
  check(shard < SHARDS, `${what} ${id} names shard ${shard}, but the server runs ${SHARDS}`);
}

/** Any binary value a client library hands back, as a Buffer (or null if it is not binary). */
export function toBuffer(value) {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  return null;
}

export function checkBuffer(actual, expected, what) {
  const buf = toBuffer(actual);
  check(buf !== null, `${what}: expected binary, got ${show(actual)}`);
  check(buf.equals(expected), `${what}: binary differs (got ${buf.length} bytes, expected ${expected.length})`);
}

const openSockets = new Set();

/** Remembers a client socket so the runner closes it at the end whatever happened. */
export function track(socket) {
  openSockets.add(socket);
  return socket;
}

/**
 * A socket.io-client v4 socket on its own Manager (forceNew: its own Engine.IO session and TCP
 * connections), resolved once connected. Reconnection is off unless `opts` turns it on.
 */
export async function connectV4(nsp = '/', opts = {}, ms = 5000) {
  const socket = track(
    io(BASE_URL + (nsp === '/' ? '' : nsp), {
      forceNew: true,
      reconnection: false,
      timeout: ms,
      ...(opts.transports ? {} : transportOptions()),
      ...opts,
    }),
  );
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', (err) => reject(new TestFailure(`connect_error on ${nsp}: ${err.message}`)));
    }),
    ms,
    `connect on ${nsp}`,
  );
  return socket;
}

/** Emits `event` with `args` and resolves with the ack's arguments (bounded). */
export function emitAck(socket, event, args, ms = 5000) {
  return withTimeout(
    new Promise((resolve) => socket.emit(event, ...args, (...ackArgs) => resolve(ackArgs))),
    ms,
    `ack of "${event}"`,
  );
}

/** Echo round trip: the ack must carry exactly one argument, which is returned. */
export async function echo(socket, payload, ms = 5000) {
  const reply = await withTimeout(
    new Promise((resolve) => socket.emit('echo', payload, (...ackArgs) => resolve(ackArgs))),
    ms,
    `the ack of "echo" with ${show(payload)}`,
  );
  check(reply.length === 1, `echo ack carried ${reply.length} arguments: ${show(reply)}`);
  return reply[0];
}

export async function join(socket, room) {
  const reply = await emitAck(socket, 'join', [room]);
  checkEqual(reply, [], `join ack arguments for ${room}`);
}

export async function leave(socket, room) {
  const reply = await emitAck(socket, 'leave', [room]);
  checkEqual(reply, [], `leave ack arguments for ${room}`);
}

/**
 * Opens v4 clients (at most `max`) until at least `perShard` sit on each shard, judged by the shard
 * in socket.id. Against an external server it just opens `perShard * SHARDS` clients.
 */
export async function openSpread(perShard, max, nsp = '/') {
  const clients = [];
  const counts = new Array(SHARDS).fill(0);
  const spread = () => counts.every((n) => n >= perShard);
  while (EXTERNAL ? clients.length < perShard * SHARDS : !spread()) {
    if (clients.length >= max) {
      fail(`opened ${max} clients but shards hold ${show(counts)}; need ${perShard} on each of ${SHARDS}`);
    }
    const socket = await connectV4(nsp);
    checkRingcastId(socket.id, 'socket.id');
    if (!EXTERNAL) counts[shardOf(socket.id)] += 1;
    clients.push(socket);
  }
  return clients;
}

/** Picks `n` clients from each shard (or the first n * SHARDS when external); closes the rest. */
export function pickPerShard(clients, n) {
  const picked = [];
  const counts = new Array(SHARDS).fill(0);
  for (const socket of clients) {
    const shard = EXTERNAL ? picked.length % SHARDS : shardOf(socket.id);
    if (counts[shard] < n) {
      counts[shard] += 1;
      picked.push(socket);
    } else {
      socket.disconnect();
    }
  }
  return picked;
}

/**
 * Runs a scenario under one overall deadline; prints "ok <name>" and exits 0 on success, prints
 * the failure and exits 1 otherwise. Clients are closed either way.
 */
export function run(name, scenario, ms = 15000) {
  const deadline = setTimeout(() => {
    console.error(`FAIL ${name}: scenario exceeded its ${ms} ms deadline`);
    process.exit(1);
  }, ms);
  const started = Date.now();
  scenario()
    .then(() => {
      clearTimeout(deadline);
      closeAll();
      console.log(`ok ${name} (${MODE}) in ${Date.now() - started} ms`);
      process.exit(0);
    })
    .catch((err) => {
      clearTimeout(deadline);
      closeAll();
      console.error(`FAIL ${name} (${MODE}): ${err instanceof TestFailure ? err.message : err.stack || err}`);
      process.exit(1);
    });
}

function closeAll() {
  for (const socket of openSockets) {
    try {
      if (typeof socket.disconnect === 'function') socket.disconnect();
      else if (typeof socket.close === 'function') socket.close();
    } catch {
      // Closing is best effort: the process exits right after.
    }
  }
}
