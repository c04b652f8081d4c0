// An operation waits for a shard that is busy in a handler: it must end with a timeout, not
// hang; once the shard is free the same operation is answered in full.
import assert from 'node:assert/strict';
import { connect, connected, request, run, shardOf, sleep } from './common.mjs';

run(async () => {
  const clients = [];
  while (new Set(clients.map((socket) => shardOf(socket.id))).size < 2 && clients.length < 40) {
    clients.push(await connected(connect()));
  }
  const blocker = clients[0];
  const asker = clients.find((socket) => shardOf(socket.id) !== shardOf(blocker.id));
  assert.ok(asker, 'clients on two shards');

  blocker.emit('block', 1500);
  await sleep(100);
  const started = Date.now();
  const [slow] = await request(asker, 'count', 300);
  const waited = Date.now() - started;
  assert.equal(slow.error, 'operation has timed out');
  assert.ok(waited < 1300, `the timeout took ${waited} ms`);

  await sleep(1600);
  const [fast] = await request(asker, 'count', 2000);
  assert.deepEqual(fast, { count: clients.length });

  // An operation a handler's task starts after waiting a while, the server idle meanwhile.
  const [later] = await request(asker, 'count-later');
  assert.deepEqual(later, { count: clients.length });
  console.log(JSON.stringify({ clients: clients.length }));
});
