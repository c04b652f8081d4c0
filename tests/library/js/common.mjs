// Shared by the library test scripts: the socket.io clients (from tests/clients/node_modules,
// or RINGCAST_CLIENTS_DIR), the server URL (RINGCAST_URL), and small promise helpers.
// Every script calls `run(main)`, which exits 0 on success, 1 on a failed check and 2 when the
// script's own deadline passes, so the Rust side only has to look at the exit status.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const clientsDir = process.env.RINGCAST_CLIENTS_DIR ?? path.join(here, '..', '..', 'clients');
const require = createRequire(path.join(clientsDir, 'package.json'));

export const { io } = require('socket.io-client');
export const ioV2 = require('socket.io-client-v2');

export const URL = process.env.RINGCAST_URL;
if (!URL) {
  console.error('RINGCAST_URL is not set');
  process.exit(1);
}

const opened = [];

/** A v4 client on its own connection; websocket-only unless `opts.transports` says otherwise. */
export function connect(nsp = '/', opts = {}) {
  const socket = io(URL + nsp, {
    forceNew: true,
    reconnection: false,
    transports: ['websocket'],
    ...opts,
  });
  opened.push(socket);
  return socket;
}

/** A socket.io-client 2.x (Engine.IO 3) client on its own connection. */
export function connectV2(nsp = '/', opts = {}) {
  const socket = ioV2(URL + nsp, { forceNew: true, reconnection: false, ...opts });
  opened.push(socket);
  return socket;
}

/** Resolves with the arguments of the next `event` (an array), rejects after `ms`. */
export function once(emitter, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`no '${event}' within ${ms} ms`));
    }, ms);
    const listener = (...args) => {
      clearTimeout(timer);
      resolve(args);
    };
    emitter.once(event, listener);
  });
}

/** Resolves once `socket` is connected; rejects on `failure` (v4: connect_error, v2: error). */
export async function connected(socket, failure = 'connect_error', ms = 5000) {
  if (socket.connected) return socket;
  await Promise.race([
    once(socket, 'connect', ms),
    once(socket, failure, ms).then(([err]) => {
      throw new Error(`connect failed: ${err?.message ?? err}`);
    }),
  ]);
  return socket;
}

/** Emits with an ack and resolves with the ack's arguments (an array). */
export function request(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ack for '${event}'`)), 5000);
    socket.emit(event, ...args, (...reply) => {
      clearTimeout(timer);
      resolve(reply);
    });
  });
}

/** Resolves once `check()` is true (polled every 10 ms); rejects with `what` after `ms`. */
export async function until(check, what, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The shard that owns a socket id: the first two bytes (big-endian) of its base64url form. */
export function shardOf(id) {
  return Buffer.from(id, 'base64url').readUInt16BE(0);
}

/** Runs `main`, then exits: 0 when it resolves, 1 when it throws, 2 after `ms`. */
export function run(main, ms = 20000) {
  const deadline = setTimeout(() => {
    console.error(`script deadline of ${ms} ms passed`);
    process.exit(2);
  }, ms);
  main().then(
    () => {
      clearTimeout(deadline);
      for (const socket of opened) socket.close();
      process.exit(0);
    },
    (error) => {
      console.error(error?.stack ?? error);
      process.exit(1);
    },
  );
}
