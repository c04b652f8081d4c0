// Scenario 12: heartbeats, against a server started with --ping-interval 300 --ping-timeout 200.
// socket.io-client 2.x drives the pings (Engine.IO v3): v2 clients over polling, websocket and
// polling-then-upgrade stay connected for 2 s, see several pongs, and echo still works after.
// v4 clients (server-driven pings) are checked the same way alongside.
// Usage: node v2_heartbeat.mjs
import { createRequire } from 'node:module';
import { run, track, BASE_URL, connectV4, echo, withTimeout, sleep, check, checkEqual, show } from './lib.mjs';

const ioV2 = createRequire(import.meta.url)('socket.io-client-v2');
const STAY_MS = 2000;

async function v2Client(transports) {
  const socket = track(ioV2(BASE_URL, { forceNew: true, reconnection: false, timeout: 5000, ...(transports ? { transports } : {}) }));
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', (err) => reject(new Error(`v2 connect_error: ${err && err.message}`)));
    }),
    5000,
    'v2 connect',
  );
  return socket;
}

function v2Echo(socket, payload) {
  return withTimeout(new Promise((resolve) => socket.emit('echo', payload, resolve)), 5000, `the v2 ack of "echo" with ${show(payload)}`);
}

run('heartbeat', async () => {
  const clients = [
    ['v2 default', await v2Client(null), 'v2'],
    ['v2 polling', await v2Client(['polling']), 'v2'],
    ['v2 websocket', await v2Client(['websocket']), 'v2'],
    ['v4 default', await connectV4('/', { transports: ['polling', 'websocket'] }), 'v4'],
    ['v4 polling', await connectV4('/', { transports: ['polling'] }), 'v4'],
  ];
  const stats = new Map();
  for (const [name, socket, kind] of clients) {
    const st = { beats: 0, disconnects: [] };
    stats.set(name, st);
    socket.on('disconnect', (reason) => st.disconnects.push(reason));
    if (kind === 'v2') socket.io.on('pong', () => (st.beats += 1));
    else socket.io.on('ping', () => (st.beats += 1));
  }
  const handshake = clients[0][1].io.engine;
  checkEqual([handshake.pingInterval, handshake.pingTimeout], [300, 200], 'v2 handshake pingInterval/pingTimeout');

  await sleep(STAY_MS);

  for (const [name, socket] of clients) {
    const st = stats.get(name);
    check(st.disconnects.length === 0, `${name} was disconnected: ${show(st.disconnects)}`);
    check(socket.connected, `${name} is not connected after ${STAY_MS} ms`);
    // 2 s at a 300 ms interval is about 6 heartbeats; demand a few to prove they flow.
    check(st.beats >= 3, `${name} saw only ${st.beats} heartbeats in ${STAY_MS} ms`);
    const reply = name.startsWith('v2') ? await v2Echo(socket, `${name} alive`) : await echo(socket, `${name} alive`);
    checkEqual(reply, `${name} alive`, `${name} echo after ${STAY_MS} ms`);
  }
});
