// Two library-built ringcast nodes (A asks, B answers) and a Node socket.io 4.8 server with
// @socket.io/redis-adapter 8.3 on one Redis, a client on each in room "r". Node A's questions
// (fetch sockets, all rooms, broadcast acks, server-side emits with and without ack, server
// count) are answered by B and by the Node server; then the Node server asks the same of both
// ringcast nodes. The test does what this script asks (a line on stdout) and answers on stdin.
import assert from 'node:assert/strict';
import readline from 'node:readline';
import { connect, nodeServer, request, require, run, sleep, within } from './common.mjs';

const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');

const answers = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Asks the test to act on node A; resolves once it says it is done. */
async function ask(what) {
  console.log(what);
  const { value } = await answers.next();
  assert.equal(value, 'done', `the test answered ${value}`);
}

run(async () => {
  const heard = [];
  // A Node server whose sockets carry data and whose server-side handlers answer.
  const node = await nodeServer({
    client: () => createClient({ url: process.env.REDIS_URL }),
    adapter: createAdapter,
    setup: (io) => {
      io.on('connection', (socket) => {
        socket.data = { server: 'node' };
      });
      io.on('sse', (...args) => heard.push(args));
      io.on('sse-ack', (arg, callback) => callback(`pong-from-node:${arg}`));
    },
  });
  const clients = {
    a: await connect(process.env.NODE_A_URL),
    b: await connect(process.env.NODE_B_URL),
    node: await connect(node.url),
  };
  for (const [name, socket] of Object.entries(clients)) {
    await request(socket, 'join', 'r');
    socket.on('ask', (value, callback) => callback(`${name}:${value}`));
  }
  // Every node has subscribed (A's and B's subscriptions may take a moment).
  const ids = Object.fromEntries(Object.entries(clients).map(([name, s]) => [name, s.id]));
  await sleep(300);

  // Node A asks; the test checks its answers.
  await ask(`ASK ${JSON.stringify(ids)}`);
  assert.ok(await within(3000, () => heard.length > 0), 'the Node server heard A');
  assert.deepEqual(heard, [['hello', 1, { from: 'A' }]]);

  // The Node server asks both ringcast nodes.
  const sockets = await node.io.in('r').fetchSockets();
  const fetched = sockets.map((s) => s.id).sort();
  assert.deepEqual(fetched, Object.values(ids).sort());
  const rooms = [...(await node.io.of('/').adapter.allRooms())].sort();
  const acks = (await node.io.timeout(3000).emitWithAck('ask', 'q')).sort();
  const pongs = (await node.io.serverSideEmitWithAck('sse-ack', 'ping')).sort();
  node.io.serverSideEmit('sse', 'from-node', 2);
  await ask('NODE_DONE');
  console.log(JSON.stringify({ fetched, rooms, acks, pongs }));
});
