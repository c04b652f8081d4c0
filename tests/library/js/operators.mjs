// Broadcast operators. One sender S (in room a) triggers every operator in turn, then a
// namespace-wide "fence": broadcasts from one shard reach each client in order, so once a
// client has the fence it has everything meant for it, and the lists can be compared exactly.
import assert from 'node:assert/strict';
import { connect, connected, once, request, run, shardOf } from './common.mjs';

const MAX_CLIENTS = 40;
// Rooms of client i (after the sender): every combination of a and b occurs.
const ROOMS = [['a'], ['b'], ['a', 'b'], []];

run(async () => {
  const sender = await connected(connect());
  const clients = [{ socket: sender, rooms: ['a'] }];
  const shards = new Set([shardOf(sender.id)]);
  while ((clients.length < 1 + ROOMS.length || shards.size < 2) && clients.length < MAX_CLIENTS) {
    const socket = await connected(connect());
    shards.add(shardOf(socket.id));
    clients.push({ socket, rooms: ROOMS[(clients.length - 1) % ROOMS.length] });
  }
  assert.equal(shards.size, 2, 'clients on both shards');

  for (const client of clients) {
    const [rooms] = await request(client.socket, 'join', ...client.rooms);
    assert.deepEqual([...rooms].sort(), [client.socket.id, ...client.rooms].sort());
    client.got = [];
    client.socket.on('got', (label) => client.got.push(label));
  }
  const target = clients.find((c) => shardOf(c.socket.id) !== shardOf(sender.id)).socket.id;

  const ops = [
    ['to-two', (c) => c.rooms.includes('a') || c.rooms.includes('b')],
    ['except', (c) => c.rooms.includes('a') && !c.rooms.includes('b')],
    ['socket-to-a', (c) => c.rooms.includes('a') && c.socket !== sender],
    ['broadcast', (c) => c.socket !== sender],
    ['namespace', () => true],
    ['to-id', (c) => c.socket.id === target],
  ];
  const fences = clients.map((c) => once(c.socket, 'fence'));
  for (const [label] of ops) sender.emit('op', label, target);
  sender.emit('op', 'fence');
  await Promise.all(fences);

  for (const client of clients) {
    const expected = ops.filter(([, reaches]) => reaches(client)).map(([label]) => label);
    assert.deepEqual(client.got, expected, `rooms ${client.rooms} of ${client.socket.id}`);
  }
});
