// The control plane across a cluster (control-plane spec tests 45-47): two ringcast nodes (A
// with the HTTP API) and a Node socket.io 4.8 server with @socket.io/redis-adapter on one
// Redis. "/" takes JWTs on ringcast; "/chat" is single-session.
// - Node's io.to("ringcast:user:42") reaches the user's socket on ringcast;
// - an API emit with ack on A reaches sockets on A, B and Node, and their acks come back;
//   sockets/query on A lists Node's sockets too;
// - single_session: user 7 on A, then on B: A's socket is told "session replaced";
// - revoke on A: the user's socket on B is told "revoked" and disconnected; the old token is
//   then refused on B, a fresh one accepted.
// Env: NODE_A_URL, NODE_B_URL, API_A (http://host:port), API_KEY, REDIS_URL, TOKENS (JSON).
import assert from 'node:assert/strict';
import { atExit, nodeServer, request, require, run, sleep, within } from './common.mjs';

const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');
const { io } = require('socket.io-client');

const A = process.env.NODE_A_URL;
const B = process.env.NODE_B_URL;
const API = process.env.API_A;
const KEY = process.env.API_KEY;
const TOKENS = JSON.parse(process.env.TOKENS);

const opened = [];
atExit(async () => opened.forEach((socket) => socket.close()));

/** A websocket client of `url` (namespace included) with `auth`; resolves once connected. */
function client(url, auth) {
  const socket = io(url, { forceNew: true, reconnection: false, transports: ['websocket'], auth });
  opened.push(socket);
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (error) => reject(new Error(`${url}: ${error.message} ${JSON.stringify(error.data)}`)));
  });
}

/** The refusal's `data.code` of a CONNECT that must fail. */
function refusal(url, auth) {
  const socket = io(url, { forceNew: true, reconnection: false, transports: ['websocket'], auth });
  opened.push(socket);
  return new Promise((resolve, reject) => {
    socket.once('connect', () => reject(new Error(`${url} accepted ${JSON.stringify(auth)}`)));
    socket.once('connect_error', (error) => resolve(error.data?.code));
  });
}

function next(socket, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    socket.once(event, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

async function api(path, body) {
  const response = await fetch(`${API}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  assert.equal(response.status, 200, `${path}: ${text}`);
  return JSON.parse(text);
}

async function main() {
  const node = await nodeServer({
    client: () => createClient({ url: process.env.REDIS_URL }),
    adapter: createAdapter,
  });

  // Node reaches a ringcast user by the user's room.
  const user42 = await client(A, { token: TOKENS.user42 });
  const hello = next(user42, 'hello');
  await sleep(200);
  node.io.to('ringcast:user:42').emit('hello', 'from node');
  assert.deepEqual(await hello, ['from node']);

  // An API emit with ack on A reaches members on A, B and Node; every ack comes back.
  const onB = await client(B, { token: TOKENS.user13 });
  const onNode = await client(node.url);
  for (const socket of [user42, onB, onNode]) {
    socket.on('ask', (value, ack) => ack(`${value} from ${socket === onNode ? 'node' : 'ringcast'}`));
  }
  await Promise.all([user42, onB, onNode].map((socket) => request(socket, 'join', 'public:r')));
  await sleep(200);
  const acked = await api('/v1/emit', {
    namespace: '/', to: { rooms: ['public:r'] }, event: 'ask', args: ['q'], ack: { timeout_ms: 3000 },
  });
  assert.equal(acked.expected, 3, JSON.stringify(acked));
  assert.equal(acked.received, 3, JSON.stringify(acked));
  assert.equal(acked.timed_out, false);
  assert.deepEqual([...acked.acks].sort(), ['q from node', 'q from ringcast', 'q from ringcast']);
  const listed = await api('/v1/sockets/query', { namespace: '/', to: { rooms: ['public:r'] } });
  const ids = listed.sockets.map((socket) => socket.id).sort();
  assert.deepEqual(ids, [user42.id, onB.id, onNode.id].sort());
  const remote42 = listed.sockets.find((socket) => socket.id === user42.id);
  assert.equal(remote42.user, '42');
  assert.deepEqual(remote42.data, { name: 'Ann' });
  assert.ok(!JSON.stringify(listed).includes(TOKENS.user42), 'no token in socket objects');

  // single_session: the newest of user 7's sockets wins, cluster-wide.
  const first = await client(`${A}/chat`, { token: TOKENS.user7 });
  const replaced = next(first, 'ringcast:disconnect');
  const gone = next(first, 'disconnect');
  const second = await client(`${B}/chat`, { token: TOKENS.user7 });
  const secondTold = [];
  second.on('ringcast:disconnect', (why) => secondTold.push(why));
  second.on('disconnect', (why) => secondTold.push(why));
  assert.deepEqual(await replaced, [{ reason: 'session replaced', code: 'session_replaced' }]);
  assert.equal((await gone)[0], 'io server disconnect');
  await sleep(300);
  assert.ok(second.connected, `the newest socket stays: ${JSON.stringify(secondTold)}`);

  // Revocation on A reaches user 13's socket on B; B then refuses the old token.
  const told = next(onB, 'ringcast:disconnect');
  const revoked = await api('/v1/users/13/revoke', {});
  assert.equal(typeof revoked.revoked_before, 'number');
  assert.deepEqual(await told, [{ reason: 'revoked', code: 'revoked' }]);
  assert.ok(await within(3000, () => !onB.connected), 'the revoked socket is disconnected');
  assert.equal(await refusal(B, { token: TOKENS.user13 }), 'revoked');
  assert.equal(await refusal(A, { token: TOKENS.user13 }), 'revoked');
  // A token issued after the revocation is accepted everywhere.
  const fresh = process.env.FRESH_13;
  assert.ok(fresh, 'a fresh token for user 13');
  (await client(B, { token: fresh })).close();
}

run(main, 40000);
