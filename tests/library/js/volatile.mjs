// Volatile emits to an idle websocket client: of a burst the first always arrives (the rest
// may be dropped), in order; the connection stays healthy; single emits after an idle pause
// arrive.
import assert from 'node:assert/strict';
import { connect, connected, once, request, run, sleep } from './common.mjs';

const BURST = 10;
const IDLE_ROUNDS = 3;

run(async () => {
  const socket = await connected(connect());
  const received = [];
  socket.on('v', (n) => received.push(n));

  socket.emit('burst', BURST);
  await once(socket, 'done');
  assert.equal(received[0], 0, `burst: ${received}`);
  assert.ok(received.every((n, i) => i === 0 || n > received[i - 1]), `burst order: ${received}`);
  const fromBurst = received.length;

  for (let round = 0; round < IDLE_ROUNDS; round++) {
    await sleep(50);
    socket.emit('burst', 1);
    await once(socket, 'done');
  }
  assert.equal(received.length, fromBurst + IDLE_ROUNDS, `after idle rounds: ${received}`);

  assert.deepEqual(await request(socket, 'echo', 'still here'), ['still here']);
  assert.ok(socket.connected);
  console.log(JSON.stringify({ received: received.length }));
});
