// Shared by the cluster test scripts: the npm peers (from tests/clients/node_modules, or
// RINGCAST_CLIENTS_DIR), socket helpers, and `run`, which exits 0 when the script's checks
// pass, 1 when one fails and 2 when its deadline passes.
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const clientsDir = process.env.RINGCAST_CLIENTS_DIR ?? path.join(here, '..', 'clients');
export const require = createRequire(path.join(clientsDir, 'package.json'));
const { io } = require('socket.io-client');

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const opened = [];
const closers = [];

/** A websocket client of the server at `url`, once connected. */
export function connect(url) {
  const socket = io(url, { forceNew: true, reconnection: false, transports: ['websocket'] });
  opened.push(socket);
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

/** The shard of a ringcast socket id: its first two bytes. */
export const shardOf = (id) => Buffer.from(id, 'base64url').readUInt16BE(0);

/** Emits with an ack; resolves with the ack's arguments, rejects after 5 s. */
export function request(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ack for ${event}`)), 5000);
    socket.emit(event, ...args, (...reply) => {
      clearTimeout(timer);
      resolve(reply);
    });
  });
}

/** Resolves true once `check()` holds, false after `ms`. */
export async function within(ms, check) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await sleep(10);
  }
  return true;
}

/** Runs `close` when the script ends (servers and Redis clients it started). */
export function atExit(close) {
  closers.push(close);
}

/** Runs `main`, then exits: 0 when it resolves, 1 when it throws, 2 after `ms`. */
export function run(main, ms = 30000) {
  const deadline = setTimeout(() => {
    console.error('script deadline passed');
    process.exit(2);
  }, ms);
  main().then(
    async () => {
      clearTimeout(deadline);
      for (const socket of opened) socket.close();
      for (const close of closers) await close().catch(() => {});
      process.exit(0);
    },
    (error) => {
      console.error(error?.stack ?? error);
      process.exit(1);
    },
  );
}

/**
 * A Node socket.io server on a Redis adapter, on a free loopback port, with ringcast's
 * built-in `join` and `publish` events; stopped when the script ends. `client()` makes a Redis
 * client (the sub client is its duplicate), `adapter(pub, sub)` the adapter once both are
 * connected, and `setup(io)` adds what the script needs.
 */
export async function nodeServer({ client, adapter, setup = () => {} }) {
  const { Server } = require('socket.io');
  const pub = client();
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const http = createServer();
  const io = new Server(http, { adapter: adapter(pub, sub) });
  io.on('connection', (socket) => {
    socket.on('join', (room, ack) => {
      socket.join(room);
      ack?.();
    });
    socket.on('publish', (room, payload, ack) => {
      io.to(room).emit('message', payload);
      ack?.();
    });
  });
  setup(io);
  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
  atExit(async () => {
    io.close();
    await Promise.all([pub.quit(), sub.quit()]);
  });
  return { io, url: `http://127.0.0.1:${http.address().port}` };
}
