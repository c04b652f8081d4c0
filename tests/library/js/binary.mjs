// Binary from the server (an event with a Buffer and a string on connect), and binary both
// ways through an ack, for v4 clients over polling and websocket and for v2 clients.
import assert from 'node:assert/strict';
import { connect, connectV2, once, request, run } from './common.mjs';

function asBuffer(value) {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return Buffer.from(value);
  throw new Error(`not binary: ${JSON.stringify(value)}`);
}

async function check(name, socket) {
  // Both events come right after connecting, possibly in one read: listen for both first.
  const events = [once(socket, 'bin'), once(socket, 'bin2')];
  const [data, text] = await events[0];
  assert.deepEqual([...asBuffer(data)], [1, 2, 3], name);
  assert.equal(text, 'x', name);
  const [first, second] = await events[1];
  assert.deepEqual([...asBuffer(first)], [4], name);
  assert.deepEqual([...asBuffer(second)], [], name);
  const [echoed, label] = await request(socket, 'echo', Buffer.from([7, 8, 9]), 'y');
  assert.deepEqual([...asBuffer(echoed)], [7, 8, 9], name);
  assert.equal(label, 'y', name);
}

run(async () => {
  await Promise.all([
    check('v4 polling', connect('/', { transports: ['polling'] })),
    check('v4 websocket', connect('/', { transports: ['websocket'] })),
    check('v2 polling', connectV2('/', { transports: ['polling'] })),
    check('v2 websocket', connectV2('/', { transports: ['websocket'] })),
  ]);
});
