// One ringcast node (2 shards) and one Node socket.io 4.8 server with @socket.io/redis-adapter
// 8.3 on one Redis, plus @socket.io/redis-emitter 5.1: room members on both ringcast shards and
// on the Node server. Broadcasts go both ways (binary included), the emitter's reach ringcast's
// clients (a Date as Node would deliver it), a ringcast socket id works as a room in Node's
// `except`, and the emitter's and Node's socketsJoin / socketsLeave / disconnectSockets act on
// ringcast's sockets.
import assert from 'node:assert/strict';
import { atExit, connect, nodeServer, request, require, run, shardOf, sleep } from './common.mjs';

const { createAdapter } = require('@socket.io/redis-adapter');
const { Emitter } = require('@socket.io/redis-emitter');
const { createClient } = require('redis');

const RINGCAST = process.env.NODE_A_URL;
const REDIS = process.env.REDIS_URL;

async function main() {
  const node = await nodeServer({
    client: () => createClient({ url: REDIS }),
    adapter: createAdapter,
  });
  const emitterClient = createClient({ url: REDIS });
  await emitterClient.connect();
  atExit(() => emitterClient.quit());
  const emitter = new Emitter(emitterClient);

  const onRingcast = [];
  while (onRingcast.length < 2) {
    const socket = await connect(RINGCAST);
    if (onRingcast.every((other) => shardOf(other.id) !== shardOf(socket.id))) {
      onRingcast.push(socket);
    }
  }
  const onNode = await connect(node.url);
  const members = [...onRingcast, onNode];
  const got = new Map(members.map((socket) => [socket, []]));
  for (const socket of members) socket.on('message', (value) => got.get(socket).push(value));
  await Promise.all(members.map((socket) => request(socket, 'join', 'r')));
  await sleep(200);

  const expected = new Map(members.map((socket) => [socket, []]));
  const waitAll = async () => {
    const deadline = Date.now() + 10000;
    while (members.some((s) => got.get(s).length < expected.get(s).length)) {
      if (Date.now() > deadline) return;
      await sleep(10);
    }
    await sleep(100);
  };
  const expect = (value, who = members) => {
    for (const socket of who) expected.get(socket).push(value);
  };

  // ringcast -> Node (and ringcast's other shard).
  expect('from ringcast');
  await request(onRingcast[0], 'publish', 'r', 'from ringcast');
  await waitAll();
  // Node -> ringcast, binary.
  expect(Buffer.from([7, 8, 9]));
  await request(onNode, 'publish', 'r', Buffer.from([7, 8, 9]));
  await waitAll();
  // The emitter -> everyone; a Date arrives as Node delivers it.
  expect('from the emitter');
  emitter.to('r').emit('message', 'from the emitter');
  await waitAll();
  expect('2023-11-14T22:13:20.123Z');
  emitter.to('r').emit('message', new Date(1700000000123));
  await waitAll();
  // Node's except with a ringcast socket id (20 characters, like Node's own).
  expect('not for you', [onRingcast[1], onNode]);
  node.io.to('r').except(onRingcast[0].id).emit('message', 'not for you');
  await waitAll();

  // The Node server's fetchSockets and allRooms see ringcast's sockets and rooms (ringcast
  // answers its REMOTE_FETCH and ALL_ROOMS requests; otherwise they would time out).
  const fetched = await node.io.in('r').fetchSockets();
  const ids = fetched.map((socket) => socket.id).sort();
  assert.deepEqual(ids, members.map((socket) => socket.id).sort());
  const remote = fetched.find((socket) => socket.id === onRingcast[0].id);
  assert.deepEqual([...remote.rooms].sort(), [onRingcast[0].id, 'r'].sort());
  assert.equal(remote.handshake.query.EIO, '4');
  // The Node server counts ringcast once (one subscriber for the whole process).
  assert.equal(await node.io.of('/').adapter.serverCount(), 2);
  const rooms = await node.io.of('/').adapter.allRooms();
  for (const room of ['r', onRingcast[0].id, onRingcast[1].id, onNode.id]) {
    assert.ok(rooms.has(room), `allRooms lacks ${room}`);
  }

  // The Node server's broadcast with acks reaches ringcast's members, and their acks come
  // back (ringcast reports its recipients first, as a Node node does, even when none).
  for (const socket of members) socket.on('ask', (ack) => ack(`ack from ${socket.id}`));
  const acks = await node.io.to('r').timeout(3000).emitWithAck('ask');
  assert.deepEqual(acks.sort(), members.map((socket) => `ack from ${socket.id}`).sort());
  const none = await node.io.to('nobody-here').timeout(3000).emitWithAck('ask');
  assert.deepEqual(none, []);

  // The emitter's socketsJoin (a request with no uid) reaches ringcast's sockets: Node's
  // broadcast to the new room then finds them.
  emitter.in('r').socketsJoin('joined');
  await sleep(300);
  expect('to joined');
  node.io.to('joined').emit('message', 'to joined');
  await waitAll();
  // Several rooms every member is in: each gets one copy, from Node and from the emitter.
  expect('to both rooms');
  node.io.to('r').to('joined').emit('message', 'to both rooms');
  await waitAll();
  expect('to both rooms again');
  emitter.to('r').to('joined').emit('message', 'to both rooms again');
  await waitAll();
  // The Node server's socketsLeave (a request with its uid) for one ringcast socket.
  node.io.in(onRingcast[0].id).socketsLeave('joined');
  await sleep(300);
  expect('to joined again', [onRingcast[1], onNode]);
  node.io.to('joined').emit('message', 'to joined again');
  await waitAll();
  // The emitter disconnects a ringcast socket.
  const reason = new Promise((resolve) => onRingcast[1].once('disconnect', resolve));
  emitter.in(onRingcast[1].id).disconnectSockets();
  assert.equal(await reason, 'io server disconnect');

  for (const socket of members) {
    const shown = got.get(socket).map((v) => (Buffer.isBuffer(v) ? [...v] : v));
    const wanted = expected.get(socket).map((v) => (Buffer.isBuffer(v) ? [...v] : v));
    assert.deepEqual(shown, wanted, `what ${socket.id} got`);
  }
  console.log(JSON.stringify({ members: members.length }));
}

run(main);
