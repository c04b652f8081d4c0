// Two `ringcast --parser msgpack --cores 2 --redis` nodes (tests/msgpack.rs) and a Node socket.io
// 4.8 server with the same parser on @socket.io/redis-adapter (started here, loopback): msgpack
// clients on both shards of both ringcast nodes and on the Node server join one room;
// broadcasts from either ringcast node (text, an object, a Buffer, a Buffer in an object), from
// the Node server (a Buffer) and from @socket.io/redis-emitter (binary, a Date) reach every
// member exactly once; an outsider gets nothing. Every wait is bounded.
// Env: NODE_A_URL, NODE_B_URL, REDIS_URL.
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import parser from 'socket.io-msgpack-parser';
import { run, io, track, withTimeout, join, emitAck, until, sleep, check, checkBuffer, checkEqual, shardOf, show } from './lib.mjs';

const require = createRequire(import.meta.url);
const { Emitter } = require('@socket.io/redis-emitter');
const { createClient } = require('redis');
const { createAdapter } = require('@socket.io/redis-adapter');
const { Server } = require('socket.io');

/** A Node socket.io server with the msgpack parser on the Redis adapter, and the built-ins. */
async function nodeServer(closers) {
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const http = createServer();
  const server = new Server(http, { parser, adapter: createAdapter(pub, sub) });
  server.on('connection', (socket) => {
    socket.on('join', (room, ack) => {
      socket.join(room);
      ack?.();
    });
    socket.on('publish', (room, payload, ack) => {
      server.to(room).emit('message', payload);
      ack?.();
    });
  });
  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
  closers.push(async () => {
    server.close();
    await Promise.all([pub.quit(), sub.quit()]);
  });
  return `http://127.0.0.1:${http.address().port}`;
}

/** A connected msgpack client of the node at `url` (WebSocket only: the polling paths are
 * clients.rs's). */
async function connect(url) {
  const socket = track(io(url, { parser, forceNew: true, reconnection: false, transports: ['websocket'] }));
  await withTimeout(new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  }), 5000, `connect to ${url}`);
  return socket;
}

/** A msgpack client on each shard of the node at `url`. */
async function membersOn(url) {
  const members = new Map();
  for (let tries = 0; members.size < 2; tries += 1) {
    check(tries < 40, `40 clients on ${url}, shards ${show([...members.keys()])}`);
    const socket = await connect(url);
    if (!members.has(shardOf(socket.id))) members.set(shardOf(socket.id), socket);
    else socket.disconnect();
  }
  return [...members.values()];
}

run('msgpack across two nodes', async () => {
  const closers = [];
  try {
    await scenario(closers);
  } finally {
    await Promise.all(closers.map((close) => close().catch(() => {})));
  }
});

async function scenario(closers) {
  const nodeUrl = await nodeServer(closers);
  const onNode = await connect(nodeUrl);
  const members = [...(await membersOn(process.env.NODE_A_URL)), ...(await membersOn(process.env.NODE_B_URL)), onNode];
  const outsider = await connect(process.env.NODE_B_URL);
  outsider.on('message', (m) => { throw new Error(`outsider got ${show(m)}`); });
  await Promise.all(members.map((s) => join(s, 'r')));
  const got = new Map(members.map((s) => [s, []]));
  for (const s of members) s.on('message', (...args) => got.get(s).push(args));
  // Subscriptions are made as a node starts; give a fresh link a moment.
  await sleep(200);

  const sent = ['from A', { from: 'B', n: 1 }, Buffer.from([1, 2, 3]), { bin: Buffer.from([0, 255]) }, Buffer.from([4, 5])];
  const publishers = [members[0], members[3], members[1], members[2], onNode];
  for (const [i, value] of sent.entries()) {
    await emitAck(publishers[i], 'publish', ['r', value]);
    await until(() => members.every((s) => got.get(s).length > i), 10000, `message ${i} everywhere`);
  }
  // The emitter publishes as a Node server would: binary and a Date (notepack's ext).
  const redis = createClient({ url: process.env.REDIS_URL });
  await redis.connect();
  try {
    const emitter = new Emitter(redis);
    emitter.to('r').emit('message', Buffer.from([7, 7]), new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 6)), 'tail');
    await until(() => members.every((s) => got.get(s).length > sent.length), 10000, 'the emitter message everywhere');
  } finally {
    await redis.quit();
  }
  await sleep(300);
  for (const [i, s] of members.entries()) {
    const values = got.get(s);
    checkEqual(values.length, sent.length + 1, `messages to member ${i}`);
    checkEqual(values[0], ['from A'], `member ${i} text`);
    checkEqual(values[1], [{ from: 'B', n: 1 }], `member ${i} object`);
    checkBuffer(values[2][0], sent[2], `member ${i} Buffer`);
    checkBuffer(values[3][0]?.bin, sent[3].bin, `member ${i} nested Buffer`);
    checkBuffer(values[4][0], sent[4], `member ${i} Buffer from the Node server`);
    checkBuffer(values[5][0], Buffer.from([7, 7]), `member ${i} emitter Buffer`);
    // Node's own clients get the Date as notepack decodes it on that server; ringcast's as
    // Date.toJSON writes it, as a Node server would send it to a JSON client.
    if (s !== onNode) {
      checkEqual(values[5].slice(1), ['2024-01-02T03:04:05.006Z', 'tail'], `member ${i} emitter Date and text`);
    }
  }
  console.log(JSON.stringify({ members: members.length }));
}
