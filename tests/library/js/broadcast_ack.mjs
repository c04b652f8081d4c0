// Broadcast with acks across shards: at least two members of room "r" on each shard (socket
// ids name their shard); "trigger" makes the server ping the room and report what came back.
import assert from 'node:assert/strict';
import { connect, connected, once, request, run, shardOf } from './common.mjs';

const MAX_CLIENTS = 40;

run(async () => {
  const members = [];
  const perShard = [0, 0];
  while ((perShard[0] < 2 || perShard[1] < 2) && members.length < MAX_CLIENTS) {
    const socket = await connected(connect());
    perShard[shardOf(socket.id)] += 1;
    members.push(socket);
  }
  assert.ok(perShard[0] >= 2 && perShard[1] >= 2, `members per shard: ${perShard}`);

  let silent = null;
  for (const socket of members) {
    socket.on('ping-all', (ack) => {
      if (socket !== silent) ack(socket.id);
    });
  }
  const outsider = await connected(connect());
  outsider.on('ping-all', () => {
    throw new Error('a socket outside the room was pinged');
  });
  await Promise.all(members.map((socket) => request(socket, 'join', 'r')));

  const origin = members[0];
  const ids = members.map((socket) => socket.id).sort();

  origin.emit('trigger');
  const [all] = await once(origin, 'ping-all-result', 5000);
  assert.equal(all.error, null);
  assert.deepEqual([...all.ids].sort(), ids);

  // A member on the other shard stops answering: its ack must time out there.
  silent = members.find((socket) => shardOf(socket.id) !== shardOf(origin.id));
  const started = Date.now();
  origin.emit('trigger');
  const [partial] = await once(origin, 'ping-all-result', 5000);
  const waited = Date.now() - started;
  assert.equal(partial.error, 'operation has timed out');
  assert.deepEqual([...partial.ids].sort(), ids.filter((id) => id !== silent.id));
  assert.ok(waited >= 1500, `timed out after only ${waited} ms`);

  console.log(JSON.stringify({ members: members.length }));
});
