// Two clients on different shards, one starting on long-polling and upgrading to WebSocket,
// go through a socket's whole life in a fixed order, so that the observer's record of each
// socket can be compared with what must have happened.
import assert from 'node:assert/strict';
import { connect, connected, once, request, run, shardOf } from './common.mjs';

run(async () => {
  const a = await connected(connect('/', { transports: ['polling', 'websocket'] }));
  if (a.io.engine.transport.name !== 'websocket') await once(a.io.engine, 'upgrade');
  let b = await connected(connect());
  const spare = [];
  while (shardOf(b.id) === shardOf(a.id) && spare.length < 40) {
    spare.push(b);
    b = await connected(connect());
  }
  assert.notEqual(shardOf(a.id), shardOf(b.id));
  for (const socket of spare) socket.close();

  await request(a, 'join', 'r');
  await request(b, 'join', 'r');
  for (const publisher of [a, b]) {
    const both = Promise.all([once(a, 'message'), once(b, 'message')]);
    await request(publisher, 'publish', 'r', 'hello');
    await both;
  }
  await request(a, 'leave', 'r');
  await request(b, 'leave', 'r');
  // A client forgets its id once disconnected.
  const report = { a: a.id, b: b.id };
  a.disconnect();
  b.disconnect();
  console.log(JSON.stringify(report));
});
