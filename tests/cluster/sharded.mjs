// Node's sharded adapter (createShardedAdapter, Redis 7 sharded Pub/Sub) with two ringcast
// nodes (`--redis-mode sharded`, 2 shards each) and a Node socket.io 4.8 server, on one Redis 7
// (REDIS_URL) or a Redis Cluster (REDIS_CLUSTER: comma-separated URLs of its masters). Room
// members on both shards of ringcast A, on B and on the Node server: broadcasts from each get
// to every member once; Node's `io.to(<ringcast socket id>)` reaches that socket; Node's
// fetchSockets, emitWithAck and socketsJoin act on ringcast's sockets, and a room ringcast's
// sockets just joined gets Node's broadcasts (its channel subscribed as the room appeared).
import assert from 'node:assert/strict';
import { connect, nodeServer, request, require, run, shardOf, sleep, within } from './common.mjs';

const { createShardedAdapter } = require('@socket.io/redis-adapter');
const { createClient, createCluster } = require('redis');

/** Redis clients for the Node server: one Redis, or a cluster through its masters. */
function redisClient() {
  if (process.env.REDIS_CLUSTER) {
    const rootNodes = process.env.REDIS_CLUSTER.split(',').map((url) => ({ url }));
    return createCluster({ rootNodes });
  }
  return createClient({ url: process.env.REDIS_URL });
}

run(async () => {
  const node = await nodeServer({ client: redisClient, adapter: createShardedAdapter });
  const onA = [];
  while (onA.length < 2) {
    const socket = await connect(process.env.NODE_A_URL);
    if (onA.every((other) => shardOf(other.id) !== shardOf(socket.id))) onA.push(socket);
  }
  const members = [...onA, await connect(process.env.NODE_B_URL), await connect(node.url)];
  const outsider = await connect(process.env.NODE_B_URL);
  outsider.on('message', (value) => {
    throw new Error(`the outsider got ${JSON.stringify(value)}`);
  });
  const got = new Map(members.map((socket) => [socket, []]));
  for (const socket of members) {
    socket.on('message', (value) => got.get(socket).push(value));
    socket.on('ask', (value, callback) => callback(`${socket.id}:${value}`));
  }
  await Promise.all(members.map((socket) => request(socket, 'join', 'r')));
  // The room channels are subscribed as the room appears on each node.
  await sleep(300);

  const expected = [];
  const everyoneHasAll = () =>
    within(5000, () => [...got.values()].every((values) => values.length >= expected.length));
  for (const [publisher, value] of [
    [members[0], 'from ringcast A'],
    [members[2], { from: 'ringcast B' }],
    [members[3], 'from node'],
    [members[1], Buffer.from([1, 2, 3])],
  ]) {
    expected.push(value);
    await request(publisher, 'publish', 'r', value);
    assert.ok(await everyoneHasAll(), `every member got ${JSON.stringify(value)}`);
  }
  await sleep(200);
  const plain = (values) => values.map((v) => (Buffer.isBuffer(v) ? [...v] : v));
  for (const [socket, values] of got) {
    assert.deepEqual(plain(values), plain(expected), `what ${socket.id} got`);
  }

  // A ringcast socket id as a room, from Node: on the main channel, as Node sends it.
  const direct = new Promise((resolve) => members[1].once('direct', resolve));
  node.io.to(members[1].id).emit('direct', 'hi');
  assert.equal(await direct, 'hi');

  // Node's questions, answered by both ringcast nodes.
  const fetched = (await node.io.in('r').fetchSockets()).map((s) => s.id).sort();
  assert.deepEqual(fetched, members.map((s) => s.id).sort());
  const acks = (await node.io.to('r').timeout(3000).emitWithAck('ask', 'q')).sort();
  assert.deepEqual(acks, members.map((s) => `${s.id}:q`).sort());

  // Node joins everyone in "r" to "x": ringcast subscribes to "x" as it appears there.
  node.io.in('r').socketsJoin('x');
  await sleep(500);
  const inX = members.map((socket) => new Promise((resolve) => socket.once('in-x', resolve)));
  node.io.to('x').emit('in-x', 1);
  await Promise.all(inX);
  console.log(JSON.stringify({ members: members.length, fetched: fetched.length }));
});
