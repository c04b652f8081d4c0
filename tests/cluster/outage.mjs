// Redis killed and restarted under two ringcast nodes while a client publishes: delivery on
// the publisher's own node never stops, and delivery to the other node is back within seconds
// of the restart. The test kills and restarts Redis when this script asks (a line on stdout),
// and answers on stdin.
import assert from 'node:assert/strict';
import readline from 'node:readline';
import { connect, request, run, sleep, within } from './common.mjs';

const [URL_A, URL_B] = [process.env.NODE_A_URL, process.env.NODE_B_URL];
const answers = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Asks the test to do something to Redis; resolves once it says it is done. */
async function ask(what) {
  console.log(what);
  const { value } = await answers.next();
  assert.equal(value, 'done', `the test answered ${value}`);
}

async function main() {
  const publisher = await connect(URL_A);
  const neighbour = await connect(URL_A);
  const remote = await connect(URL_B);
  const got = new Map([neighbour, remote].map((socket) => [socket, []]));
  for (const [socket, values] of got) socket.on('message', (value) => values.push(value));
  await Promise.all([publisher, neighbour, remote].map((socket) => request(socket, 'join', 'r')));
  await sleep(200);

  await request(publisher, 'publish', 'r', 'before');
  assert.ok(await within(5000, () => got.get(remote).includes('before')), 'no cross-node delivery');

  await ask('KILL');
  // Redis is gone: the publisher's own node still delivers, at once.
  for (let n = 0; n < 20; n += 1) await request(publisher, 'publish', 'r', `during-${n}`);
  assert.ok(
    await within(2000, () => got.get(neighbour).includes('during-19')),
    'local delivery stopped with Redis',
  );

  await ask('RESTART');
  const restarted = Date.now();
  let n = 0;
  const back = within(15000, () => got.get(remote).some((v) => String(v).startsWith('after-')));
  const publishing = (async () => {
    while (Date.now() - restarted < 15000 && !got.get(remote).some((v) => String(v).startsWith('after-'))) {
      await request(publisher, 'publish', 'r', `after-${n}`);
      n += 1;
      await sleep(100);
    }
  })();
  assert.ok(await back, 'cross-node delivery did not come back within 15 s');
  await publishing;
  const neighbourGot = got.get(neighbour);
  // The neighbour (same node) got every publish, in order, across the outage.
  const afterIndex = neighbourGot.indexOf('after-0');
  assert.deepEqual(neighbourGot.slice(0, 21), ['before', ...Array.from({ length: 20 }, (_, i) => `during-${i}`)]);
  assert.ok(afterIndex === 21, `the neighbour got ${JSON.stringify(neighbourGot.slice(0, 25))}`);
  console.log(JSON.stringify({ backAfterMs: Date.now() - restarted, publishedAfter: n }));
}

run(main, 60000);
