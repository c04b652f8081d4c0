// Connection state recovery across ringcast nodes on one Redis (run by tests/recovery.rs), from
// socket.io-client 4.x's side: a client whose TCP connection dies while the cluster keeps
// emitting to it (to its rooms, to everyone, to it alone, binary and volatile among them) comes
// back on another node, or on its own node after that node was SIGKILLed and restarted, with
// the same id and rooms and exactly the non-volatile events it missed, in order.
// Usage: node recovery-cluster.mjs <across|restart|expired>
// Env: RINGCAST_URL (node A), NODE_B_URL, API_A, API_B (each node's HTTP API), REDIS_URLS (one
// URL, or a Redis Cluster's seeds, comma-separated: an `@socket.io/redis-emitter` publishes
// there too, and garbage is written where the nodes keep their log and sessions).
// `restart` prints `kill-a` and reads node A's new URL from stdin once the test restarted it.
import { createInterface } from 'node:readline';
import { createClient, createCluster } from 'redis';
import { Emitter } from '@socket.io/redis-emitter';
import { run, track, io, BASE_URL, withTimeout, check, checkEqual, emitAck, sleep, show, waitFor } from './lib.mjs';

const SCENARIO = process.argv[2];
const NODE_B = process.env.NODE_B_URL;
const API_A = process.env.API_A;
const API_B = process.env.API_B;

async function connectTo(url) {
  const socket = track(io(url, { forceNew: true, reconnection: false, timeout: 5000, transports: ['websocket'] }));
  await waitFor(socket, 'connect', 5000, `connect to ${url}`);
  return socket;
}

/** Every event `socket` gets from now on, as [event, ...args] without the trailing offset, and
 * binary as `bin:<hex>` (an event without an offset would lose its last argument: checked). */
function recordAll(socket) {
  const got = [];
  socket.onAny((event, ...args) => {
    const offset = args.pop();
    check(typeof offset === 'string', `${event} carries an offset: ${show(offset)}`);
    got.push([event, ...args.map((a) => (Buffer.isBuffer(a) ? `bin:${a.toString('hex')}` : a))]);
  });
  return got;
}

async function emitThroughApi(api, body) {
  const answer = await fetch(`${api}/v1/emit`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  check(answer.ok, `POST ${api}/v1/emit: ${answer.status} ${await answer.text()}`);
}

async function publish(socket, room, payload) {
  checkEqual(await emitAck(socket, 'publish', [room, payload]), [], `publish ${show(payload)} to ${room}`);
}

/** The TCP connection dies under the client (no close frame), as a network drop does. */
async function drop(socket) {
  const gone = waitFor(socket, 'disconnect', 5000, 'the disconnect');
  socket.io.engine.transport.ws._socket.destroy();
  checkEqual((await gone)[0], 'transport close', 'the client side reason');
}

/** Connects `socket` again through its own Manager, to `url` (as a load balancer would send it
 * elsewhere): the client sends its pid and last offset. */
async function comeBack(socket, url) {
  socket.io.uri = url;
  socket.connect();
  await waitFor(socket, 'connect', 5000, `the reconnect to ${url}`);
}

async function until(list, count, what) {
  await withTimeout((async () => { while (list.length < count) await sleep(10); })(), 5000, what);
}

/** A client of the Redis the nodes share (or of its cluster). */
async function redisClient() {
  const urls = process.env.REDIS_URLS.split(',');
  const redis = urls.length > 1
    ? createCluster({ rootNodes: urls.map((url) => ({ url })) })
    : createClient({ url: urls[0] });
  await redis.connect();
  return redis;
}

function readLine() {
  const lines = createInterface({ input: process.stdin });
  return new Promise((resolve) => lines.once('line', (line) => { lines.close(); resolve(line.trim()); }));
}

/** Emits what a lost `id` in room red misses, from both nodes and both APIs; `nearby` is on
 * its old node (null once that node is gone). Returns what it must get back, in order. */
async function whileAway(id, other, nearby) {
  await publish(other, 'red', 'missed 1');
  await publish(other, 'red', Buffer.from([1, 2, 3]));
  await publish(other, 'blue', 'not for it');
  await emitThroughApi(API_B, { event: 'everyone', args: ['all'] });
  await emitThroughApi(API_B, { event: 'fleeting', args: ['volatile'], volatile: true });
  await emitThroughApi(API_B, { event: 'everyone', args: ['not red'], to: { except_rooms: ['red'] } });
  const expected = [
    ['message', 'missed 1'],
    ['message', 'bin:010203'],
    ['everyone', 'all'],
  ];
  if (nearby) {
    // An emitter's broadcast carries no ringcast offset: each node delivers it with one of
    // its own, and logs it as its own delivery.
    const redis = await redisClient();
    new Emitter(redis).to('red').emit('message', 'from the emitter');
    // Garbage in the log is skipped, never delivered.
    await redis.xAdd('socket.io-ringcast#log#/', '*', { o: 'garbage', m: '\x93not a message' });
    await sleep(100);
    await redis.quit();
    expected.push(['message', 'from the emitter']);
    await publish(nearby, 'red', 'missed 2');
    await emitThroughApi(API_A, { event: 'direct', args: [{ to: 'it' }], to: { sockets: [id] } });
    expected.push(['message', 'missed 2'], ['direct', { to: 'it' }]);
  } else {
    await emitThroughApi(API_B, { event: 'direct', args: [{ to: 'it' }], to: { sockets: [id] } });
    expected.push(['direct', { to: 'it' }]);
  }
  // Every log entry reaches Redis (they are written without waiting).
  await sleep(300);
  return expected;
}

const scenarios = {
  async 'across'() {
    const lost = await connectTo(BASE_URL);
    const other = await connectTo(NODE_B);
    const nearby = await connectTo(BASE_URL);
    checkEqual(await emitAck(lost, 'join', ['red']), [], 'join red');
    const got = recordAll(lost);
    await publish(other, 'red', 'before');
    await until(got, 1, 'the first message');
    const id = lost.id;
    await drop(lost);
    // Node A notices the connection gone and keeps the session in Redis.
    await sleep(300);
    const missed = await whileAway(id, other, nearby);
    await comeBack(lost, NODE_B);
    checkEqual(lost.recovered, true, 'socket.recovered on node B');
    checkEqual(lost.id, id, 'the same id');
    checkEqual(got, [['message', 'before'], ...missed], 'everything it missed, in order, once');
    // Back in its room, on node B now.
    await publish(nearby, 'red', 'after');
    await until(got, missed.length + 2, 'the event after');
    checkEqual(got.at(-1), ['message', 'after'], 'in its room again');
    // The session was taken: the same pid and offset again is a fresh session.
    const again = await connectTo(NODE_B);
    again.disconnect();
    again.auth = { pid: lost._pid, offset: lost._lastOffset };
    again.connect();
    await waitFor(again, 'connect', 5000, 'a second restore');
    checkEqual(again.recovered, false, 'restored once only');
    // A session Redis holds as garbage: a fresh session, no error.
    const redis = await redisClient();
    await redis.set('socket.io-ringcast#session#garbage-pid', '{not json', { PX: 10000 });
    await redis.quit();
    again.disconnect();
    again.auth = { pid: 'garbage-pid', offset: lost._lastOffset };
    again.connect();
    await waitFor(again, 'connect', 5000, 'a garbage session');
    checkEqual(again.recovered, false, 'a garbage session is not restored');
  },

  async 'restart'() {
    const lost = await connectTo(BASE_URL);
    const other = await connectTo(NODE_B);
    checkEqual(await emitAck(lost, 'join', ['red']), [], 'join red');
    const got = recordAll(lost);
    await publish(other, 'red', 'before');
    await until(got, 1, 'the first message');
    const id = lost.id;
    const gone = waitFor(lost, 'disconnect', 5000, 'the disconnect');
    console.log('kill-a');
    const restarted = await withTimeout(readLine(), 15000, 'node A restarted');
    checkEqual((await gone)[0], 'transport close', 'the client side reason');
    const missed = await whileAway(id, other, null);
    // A node is taken for dead once its heartbeat has lapsed (2 s): then the sessions it held
    // are anyone's to restore.
    await sleep(2500);
    await comeBack(lost, restarted);
    checkEqual(lost.recovered, true, 'socket.recovered on the restarted node A');
    checkEqual(lost.id, id, 'the same id');
    checkEqual(got, [['message', 'before'], ...missed], 'everything it missed, in order, once');
    await publish(other, 'red', 'after');
    await until(got, missed.length + 2, 'the event after');
    checkEqual(got.at(-1), ['message', 'after'], 'in its room again');
  },

  // Node A's window is 1 s here: a client away longer gets a fresh session on node B.
  async 'expired'() {
    const lost = await connectTo(BASE_URL);
    const other = await connectTo(NODE_B);
    const got = recordAll(lost);
    checkEqual(await emitAck(lost, 'join', ['red']), [], 'join red');
    await publish(other, 'red', 'before');
    await until(got, 1, 'the first message');
    const id = lost.id;
    await drop(lost);
    await sleep(1500);
    await comeBack(lost, NODE_B);
    checkEqual(lost.recovered, false, 'not recovered after the window');
    check(lost.id !== id, `a fresh id (${lost.id})`);
  },
};

const scenario = scenarios[SCENARIO];
if (!scenario) {
  console.error(`unknown scenario ${SCENARIO}`);
  process.exit(2);
}
run(`recovery across nodes: ${SCENARIO}`, scenario, 30000);
