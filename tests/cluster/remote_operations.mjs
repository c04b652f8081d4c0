// A client of node B in room "r"; node A (a library-built node) makes the sockets of "r" join
// room "x", emits to "x", makes them leave it, emits again, then disconnects them: each of A's
// operations reaches B's socket through Redis. The test does what this script asks (a line on
// stdout) and answers on stdin.
import assert from 'node:assert/strict';
import readline from 'node:readline';
import { connect, request, run, sleep, within } from './common.mjs';

const answers = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Asks the test to act on node A; resolves once it says it is done. */
async function ask(what) {
  console.log(what);
  const { value } = await answers.next();
  assert.equal(value, 'done', `the test answered ${value}`);
}

run(async () => {
  const socket = await connect(process.env.NODE_B_URL);
  const got = [];
  socket.on('message', (value) => got.push(value));
  const disconnected = new Promise((resolve) => socket.once('disconnect', resolve));
  await request(socket, 'join', 'r');
  await sleep(200);

  await ask('JOIN');
  assert.ok(await within(5000, () => got.includes('to x')), `got ${JSON.stringify(got)}`);
  await ask('LEAVE');
  await sleep(500);
  assert.deepEqual(got, ['to x']);
  await ask('DISCONNECT');
  const reason = await disconnected;
  console.log(JSON.stringify({ reason }));
});
