// Server-wide operations on a 4-shard server: at least two clients on every shard (socket ids
// name their shard), each with data and a room ("even" / "odd"). 'ready' hands the ids to the
// Rust side, which runs its steps from a plain thread and a tokio runtime; 'steps-done' ends
// the run, and the script reports which client got what.
import assert from 'node:assert/strict';
import { connect, connected, once, request, run, shardOf, sleep } from './common.mjs';

const SHARDS = 4;
const MAX_CLIENTS = 200;
const EVENTS = ['from-thread', 'from-tokio', 'to-joined', 'to-left'];

run(async () => {
  const clients = [];
  const perShard = new Array(SHARDS).fill(0);
  while (perShard.some((n) => n < 2) && clients.length < MAX_CLIENTS) {
    const socket = await connected(connect());
    perShard[shardOf(socket.id)] += 1;
    clients.push(socket);
  }
  assert.ok(perShard.every((n) => n >= 2), `clients per shard: ${perShard}`);
  await Promise.all(clients.map((socket, index) => request(socket, 'setup', index)));

  const got = Object.fromEntries(EVENTS.map((event) => [event, []]));
  const disconnected = {};
  for (const socket of clients) {
    const id = socket.id;
    for (const event of EVENTS) socket.on(event, () => got[event].push(id));
    socket.on('ask', (ack) => ack(id));
    socket.on('disconnect', (reason) => {
      disconnected[id] = reason;
    });
  }
  const first = clients[0];
  const done = once(first, 'steps-done', 15000);
  first.emit('ready', clients.map((socket) => socket.id));
  await done;
  // The disconnects were sent before 'steps-done', on other connections: give them a moment.
  await sleep(300);
  for (const event of EVENTS) got[event].sort();
  console.log(JSON.stringify({ ids: clients.map((socket) => socket.id), got, disconnected }));
});
