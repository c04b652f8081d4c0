// Two ringcast processes (2 shards each) on one Redis: room members on both shards of both
// nodes. Broadcasts from either node, binary among them, reach every member exactly once and in
// order; a socket outside the room gets nothing.
import assert from 'node:assert/strict';
import { connect, request, run, shardOf, sleep } from './common.mjs';

// The namespace to use: `/` unless NSP names another (a dynamic one, say).
const NSP = process.env.NSP ?? '';
const [URL_A, URL_B] = [process.env.NODE_A_URL + NSP, process.env.NODE_B_URL + NSP];

/** Two members on different shards of the server at `url`. */
async function membersOn(url) {
  const members = [];
  const seen = new Set();
  while (members.length < 2) {
    const socket = await connect(url);
    if (seen.has(shardOf(socket.id))) continue;
    seen.add(shardOf(socket.id));
    members.push(socket);
  }
  return members;
}

async function main() {
  const members = [...(await membersOn(URL_A)), ...(await membersOn(URL_B))];
  const outsider = await connect(URL_B);
  const got = new Map(members.map((socket) => [socket, []]));
  for (const socket of members) socket.on('message', (value) => got.get(socket).push(value));
  outsider.on('message', (value) => {
    throw new Error(`the outsider got ${JSON.stringify(value)}`);
  });
  await Promise.all(members.map((socket) => request(socket, 'join', 'r')));
  // Subscriptions are made when a node starts; its first publish may race a fresh link.
  await sleep(200);

  const expected = [];
  const send = (publisher, value) => {
    expected.push(value);
    return request(publisher, 'publish', 'r', value);
  };
  const everyoneHasAll = async () => {
    const deadline = Date.now() + 10000;
    while ([...got.values()].some((values) => values.length < expected.length)) {
      if (Date.now() > deadline) return;
      await sleep(10);
    }
  };
  // Publishers on different nodes: one at a time (only one publisher's order is kept).
  await send(members[0], 'hello from A');
  await everyoneHasAll();
  await send(members[3], { from: 'B', n: 1 });
  await everyoneHasAll();
  await send(members[1], Buffer.from([1, 2, 3]));
  await everyoneHasAll();
  // One publisher, back to back: every member gets them in order.
  for (let n = 0; n < 50; n += 1) send(members[2], n);
  await everyoneHasAll();
  // Nothing more (no copy) arrives.
  await sleep(300);
  for (const [socket, values] of got) {
    const shown = values.map((v) => (Buffer.isBuffer(v) ? [...v] : v));
    const wanted = expected.map((v) => (Buffer.isBuffer(v) ? [...v] : v));
    assert.deepEqual(shown, wanted, `what ${socket.id} got`);
  }
  console.log(JSON.stringify({ members: members.length, messages: expected.length }));
}

run(main);
