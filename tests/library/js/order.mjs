// 1000 numbered events emitted from one handler arrive in order, over websocket and polling.
import assert from 'node:assert/strict';
import { connect, once, run } from './common.mjs';

const COUNT = 1000;

async function check(transport) {
  const socket = connect('/', { transports: [transport] });
  const received = [];
  socket.on('n', (n) => received.push(n));
  await once(socket, 'connect');
  socket.emit('burst', COUNT);
  await once(socket, 'end', 10000);
  assert.equal(received.length, COUNT, transport);
  received.forEach((n, i) => assert.equal(n, i, `${transport}: event ${i}`));
}

run(async () => {
  await Promise.all([check('websocket'), check('polling')]);
});
