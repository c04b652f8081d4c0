// Two `ringcast --admin` nodes (A and B) on one Redis, seen from one admin socket on A: both
// nodes' server_stats, B's sockets' events, all_sockets covering both (through REMOTE_FETCH),
// a command acting on B's socket; and a Node socket.io server with the Redis adapter whose
// fetchSockets() gets ringcast's sockets with data._admin {clientId, transport} (spec A.4), and
// whose own Admin UI (`instrument()` of @socket.io/admin-ui, from tests/ui) lists them.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { atExit, connect, require, run, sleep, within } from './common.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const { instrument } = createRequire(path.join(here, '..', 'ui', 'package.json'))('@socket.io/admin-ui');

const { io } = require('socket.io-client');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');

function adminSocket(url) {
  const socket = io(`${url}/admin`, { forceNew: true, reconnection: false, transports: ['websocket'] });
  const seen = [];
  socket.onAny((event, ...args) => seen.push({ event, args }));
  atExit(async () => socket.close());
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve({ socket, seen }));
    socket.once('connect_error', reject);
  });
}

async function expectEvent(admin, what, predicate, ms = 6000) {
  const found = () => admin.seen.find(({ event, args }) => predicate(event, args));
  if (!(await within(ms, () => found() !== undefined))) {
    const seen = admin.seen.map(({ event, args }) => `${event} ${JSON.stringify(args).slice(0, 160)}`);
    throw new Error(`no ${what}; seen:\n  ${seen.join('\n  ')}`);
  }
  return found().args;
}

run(async () => {
  const A = process.env.NODE_A_URL;
  const B = process.env.NODE_B_URL;
  const admin = await adminSocket(A);
  await expectEvent(admin, 'server_stats from node-a', (e, a) => e === 'server_stats' && a[0].serverId === 'node-a');
  await expectEvent(admin, 'server_stats from node-b', (e, a) => e === 'server_stats' && a[0].serverId === 'node-b');

  const onB = await connect(B);
  const [serialized] = await expectEvent(admin, 'socket_connected from B',
    (e, a) => e === 'socket_connected' && a[0].id === onB.id);
  assert.equal(serialized.transport, 'websocket');
  assert.ok(onB.io.engine.id.startsWith(serialized.clientId));

  // all_sockets on A covers B's socket, client id and transport included.
  const viewer = await adminSocket(A);
  const [all] = await expectEvent(viewer, 'all_sockets', (e) => e === 'all_sockets');
  const remote = all.find((s) => s.id === onB.id);
  assert.ok(remote, `B's socket in all_sockets: ${JSON.stringify(all.map((s) => s.id))}`);
  assert.equal(remote.transport, 'websocket');
  assert.ok(onB.io.engine.id.startsWith(remote.clientId));

  // A command from A's admin socket acts on B's socket.
  admin.socket.emit('join', '/', 'from-a', onB.id);
  await expectEvent(admin, 'room_joined on B by command',
    (e, a) => e === 'room_joined' && a[1] === 'from-a' && a[2] === onB.id);

  // A Node server's fetchSockets() sees data._admin on ringcast's sockets.
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const http = createServer();
  const nodeIo = new Server(http, { adapter: createAdapter(pub, sub) });
  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
  atExit(async () => {
    nodeIo.close();
    await Promise.all([pub.quit(), sub.quit()]);
  });
  await sleep(200);
  const sockets = await nodeIo.fetchSockets();
  const fetched = sockets.find((s) => s.id === onB.id);
  assert.ok(fetched, `Node fetched B's socket: ${JSON.stringify(sockets.map((s) => s.id))}`);
  assert.equal(fetched.data._admin.transport, 'websocket');
  assert.ok(onB.io.engine.id.startsWith(fetched.data._admin.clientId));

  // The Node server's own Admin UI side lists ringcast's socket with its client and transport.
  // Its stats timer can't be stopped, and would publish through the Redis client closed at
  // the script's end: that one rejection is expected then.
  process.on('unhandledRejection', (error) => {
    if (error?.message !== 'The client is closed') throw error;
  });
  instrument(nodeIo, { auth: false, serverId: 'node-server' });
  const onNode = await adminSocket(`http://127.0.0.1:${http.address().port}`);
  const [fromNode] = await expectEvent(onNode, "all_sockets from the Node server's admin", (e) => e === 'all_sockets');
  const listed = fromNode.find((s) => s.id === onB.id);
  assert.ok(listed, `ringcast's socket in Node's all_sockets: ${JSON.stringify(fromNode.map((s) => s.id))}`);
  assert.equal(listed.transport, 'websocket');
  assert.ok(onB.io.engine.id.startsWith(listed.clientId));
  console.log(`ok: ${all.length} sockets in all_sockets, Node fetched ${sockets.length}`);
});
