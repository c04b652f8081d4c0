// Admin sessions shared through Redis (spec C.2, Node's RedisStore): a password login on node
// A gets a session id; node B accepts a login by that `{sessionId}` alone (and sends no new
// session), and refuses an id nobody issued with "invalid credentials". A session a Node
// server's RedisStore wrote (`SET socket.io-admin#<id> true EX …`, here by node-redis) is good
// on both. On one Redis (REDIS_URL) or a Redis Cluster (REDIS_CLUSTER: its masters' URLs).
// Reports the ids as JSON for the test to look their keys up in Redis.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { atExit, require, run, sleep } from './common.mjs';

const { io } = require('socket.io-client');
const { createClient, createCluster } = require('redis');

/** Connects to `url`'s /admin with `auth`; resolves with the socket and the events it got. */
function admin(url, auth) {
  const socket = io(`${url}/admin`, { forceNew: true, reconnection: false, transports: ['websocket'], auth });
  const seen = [];
  socket.onAny((event, ...args) => seen.push({ event, args }));
  atExit(async () => socket.close());
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve({ socket, seen }));
    socket.once('connect_error', reject);
  });
}

/** The first `event` seen on `admin`, within `ms`. */
async function first(admin, event, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = admin.seen.find((e) => e.event === event);
    if (found) return found.args;
    if (Date.now() > deadline) throw new Error(`no ${event}; seen ${admin.seen.map((e) => e.event)}`);
    await sleep(10);
  }
}

run(async () => {
  const A = process.env.NODE_A_URL;
  const B = process.env.NODE_B_URL;

  const onA = await admin(A, { username: 'admin', password: 'changeit' });
  const [session] = await first(onA, 'session');
  assert.match(session, /^[0-9a-f]{16}$/);

  // The SET goes out without waiting: give it a moment to reach Redis.
  await sleep(200);
  const onB = await admin(B, { sessionId: session });
  await first(onB, 'config');
  await sleep(300);
  assert.equal(onB.seen.filter((e) => e.event === 'session').length, 0, 'B kept the session');

  // An id nobody issued (and no password) is refused on B, as on A.
  for (const url of [B, A]) {
    const refused = await admin(url, { sessionId: '0123456789abcdef' }).then(
      () => null,
      (error) => error,
    );
    assert.ok(refused, `an unknown session id was accepted by ${url}`);
    assert.equal(refused.message, 'invalid credentials');
  }

  // Written as Node's RedisStore writes it: ringcast takes it as its own.
  const redis = process.env.REDIS_CLUSTER
    ? createCluster({ rootNodes: process.env.REDIS_CLUSTER.split(',').map((url) => ({ url })) })
    : createClient({ url: process.env.REDIS_URL });
  await redis.connect();
  atExit(async () => redis.quit());
  const fromNode = randomBytes(8).toString('hex');
  await redis.set(`socket.io-admin#${fromNode}`, 'true', { EX: 60 });
  for (const url of [A, B]) {
    const byNode = await admin(url, { sessionId: fromNode });
    await first(byNode, 'config');
  }
  console.log(JSON.stringify({ session, fromNode }));
});
