// The Admin UI's protocol (spec C) against ringcast --admin, as the UI's own socket.io-client 4.x
// sees it: auth, session reuse, config, all_sockets, the per-socket events for clients on every
// shard, the commands, server_stats; production and read-only modes.
//
// Usage: node js/admin.mjs <transport mode> <dev|production|readonly>
import {
  io, run, check, checkEqual, fail, show, sleep, until, withTimeout, waitFor, connectV4, emitAck,
  openSpread, pickPerShard, shardOf, uniqueName, BASE_URL, SHARDS, EXTERNAL, TestFailure,
} from './lib.mjs';

const SCENARIO = process.argv[3] || 'dev';
const USERNAME = 'admin';
const PASSWORD = 'changeit';

/** An admin socket that records every event after CONNECT, registering its listener inside
 * its first `connect` handler as the real UI does (so pre-CONNECT events are lost, as there). */
function adminSocket(auth) {
  const socket = io(`${BASE_URL}/admin`, { forceNew: true, reconnection: false, auth });
  const seen = [];
  const connected = new Promise((resolve, reject) => {
    socket.once('connect', () => {
      socket.onAny((event, ...args) => seen.push({ event, args }));
      resolve();
    });
    socket.once('connect_error', (err) => reject(new TestFailure(`admin connect_error: ${err.message}`)));
  });
  return { socket, seen, connected: withTimeout(connected, 5000, 'admin connect') };
}

/** The first recorded event matching `predicate(event, args)`, waiting up to `ms`. */
async function expectEvent(admin, what, predicate, ms = 5000) {
  let found;
  try {
    await until(() => (found = admin.seen.find(({ event, args }) => predicate(event, args))) !== undefined, ms, what);
  } catch (err) {
    const events = admin.seen.map(({ event, args }) => `${event} ${show(args).slice(0, 160)}`).join('\n  ');
    fail(`${err.message}; seen:\n  ${events}`);
  }
  return found.args;
}

async function expectNone(admin, what, predicate, ms = 700) {
  await sleep(ms);
  const found = admin.seen.find(({ event, args }) => predicate(event, args));
  check(found === undefined, `${what}: unexpected ${show(found)}`);
}

async function refusesWrongPassword() {
  const socket = io(`${BASE_URL}/admin`, {
    forceNew: true,
    reconnection: false,
    auth: { username: USERNAME, password: 'wrong' },
  });
  const [err] = await waitFor(socket, 'connect_error', 5000, 'connect_error for a wrong password');
  checkEqual(err.message, 'invalid credentials', 'refusal message');
  socket.close();
  const anonymous = io(`${BASE_URL}/admin`, { forceNew: true, reconnection: false });
  const [err2] = await waitFor(anonymous, 'connect_error', 5000, 'connect_error without credentials');
  checkEqual(err2.message, 'invalid credentials', 'refusal message without credentials');
  anonymous.close();
}

const DEV_FEATURES = ['EMIT', 'JOIN', 'LEAVE', 'DISCONNECT', 'MJOIN', 'MLEAVE', 'MDISCONNECT', 'AGGREGATED_EVENTS', 'ALL_EVENTS'];
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

async function development() {
  await refusesWrongPassword();

  const admin = adminSocket({ username: USERNAME, password: PASSWORD });
  await admin.connected;
  const [sessionId] = await expectEvent(admin, 'session after CONNECT', (e) => e === 'session');
  check(/^[0-9a-f]{16}$/.test(sessionId), `session id ${sessionId}`);
  const [config] = await expectEvent(admin, 'config', (e) => e === 'config');
  checkEqual(config.supportedFeatures, DEV_FEATURES, 'supportedFeatures');
  await expectEvent(admin, 'all_sockets', (e) => e === 'all_sockets');

  // The session is reused: no password, no new session.
  const again = adminSocket({ sessionId });
  await again.connected;
  await expectEvent(again, 'config on reuse', (e) => e === 'config');
  check(!again.seen.some(({ event }) => event === 'session'), 'no new session on reuse');
  const stale = io(`${BASE_URL}/admin`, { forceNew: true, reconnection: false, auth: { sessionId: 'ffffffffffffffff' } });
  const [staleErr] = await waitFor(stale, 'connect_error', 5000, 'connect_error for an unknown session');
  checkEqual(staleErr.message, 'invalid credentials', 'unknown session refused');
  stale.close();

  // Clients on every shard: each one's connect, upgrade, join, events in and out.
  const clients = pickPerShard(await openSpread(1, 40), 1);
  const room = uniqueName('room');
  for (const client of clients) {
    const [serialized, at] = await expectEvent(admin, `socket_connected ${client.id}`,
      (e, a) => e === 'socket_connected' && a[0].id === client.id);
    checkEqual(serialized.nsp, '/', 'nsp');
    check(typeof serialized.clientId === 'string' && serialized.clientId.length === 12, `clientId ${serialized.clientId}`);
    check(client.io.engine.id.startsWith(serialized.clientId), 'clientId is the engine id\'s start');
    check(serialized.rooms.includes(client.id), 'own room');
    check(serialized.handshake.query.EIO === '4', `handshake query ${show(serialized.handshake.query)}`);
    check(!('_admin' in serialized.data), 'data without _admin');
    check(ISO.test(at), `timestamp ${at}`);
    await expectEvent(admin, `room_joined own room ${client.id}`,
      (e, a) => e === 'room_joined' && a[1] === client.id && a[2] === client.id);
    await until(() => client.io.engine.transport.name === 'websocket', 5000, 'upgrade');
    await expectEvent(admin, `socket_updated ${client.id}`,
      (e, a) => e === 'socket_updated' && a[0].id === client.id && a[0].transport === 'websocket');
    checkEqual(await emitAck(client, 'join', [room]), [], 'join ack');
    await expectEvent(admin, `room_joined ${room} ${client.id}`,
      (e, a) => e === 'room_joined' && a[0] === '/' && a[1] === room && a[2] === client.id);
    await expectEvent(admin, `event_received join ${client.id}`,
      (e, a) => e === 'event_received' && a[1] === client.id && a[2][0] === 'join' && a[2][1] === room);
  }
  const shards = new Set(clients.map((c) => shardOf(c.id)));
  if (!EXTERNAL) checkEqual(shards.size, SHARDS, 'clients on every shard');

  await emitAck(clients[0], 'publish', [room, { n: 1 }]);
  for (const client of clients) {
    await expectEvent(admin, `event_sent message ${client.id}`,
      (e, a) => e === 'event_sent' && a[1] === client.id && a[2][0] === 'message' && a[2][1]?.n === 1);
  }

  // all_sockets on a new admin connection covers every shard, with client and transport.
  const viewer = adminSocket({ sessionId });
  await viewer.connected;
  const [all] = await expectEvent(viewer, 'all_sockets', (e) => e === 'all_sockets');
  for (const client of clients) {
    const entry = all.find((s) => s.id === client.id);
    check(entry !== undefined, `all_sockets has ${client.id}: ${show(all.map((s) => s.id))}`);
    checkEqual(entry.transport, 'websocket', 'transport in all_sockets');
    check(client.io.engine.id.startsWith(entry.clientId), 'clientId in all_sockets');
    check(entry.rooms.includes(room), 'rooms in all_sockets');
  }
  check(all.some((s) => s.nsp === '/admin'), 'admin sockets in all_sockets');

  // Commands, acting on sockets of both shards.
  const [a, b] = clients;
  // socket.io-client forgets its id on disconnect: keep them.
  const aId = a.id;
  const bId = b.id;
  const room2 = uniqueName('room2');
  admin.socket.emit('join', '/', room2, b.id);
  await expectEvent(admin, 'room_joined by command', (e, x) => e === 'room_joined' && x[1] === room2 && x[2] === b.id);
  admin.socket.emit('leave', '/', room, a.id);
  await expectEvent(admin, 'room_left by command', (e, x) => e === 'room_left' && x[1] === room && x[2] === a.id);
  const got = waitFor(b, 'from-admin', 5000, 'the admin emit');
  admin.socket.emit('emit', '/', room2, 'from-admin', 1, 'two');
  checkEqual(await got, [1, 'two'], 'admin emit arguments');
  await expectEvent(admin, 'event_sent of the admin emit', (e, x) => e === 'event_sent' && x[1] === b.id && x[2][0] === 'from-admin');
  // Every socket of "/" joins with no filter.
  const room3 = uniqueName('room3');
  admin.socket.emit('join', '/', room3);
  for (const client of clients) {
    await expectEvent(admin, `room_joined ${room3} ${client.id}`, (e, x) => e === 'room_joined' && x[1] === room3 && x[2] === client.id);
  }
  const gone = waitFor(a, 'disconnect', 5000, 'disconnect by command');
  admin.socket.emit('_disconnect', '/', false, a.id);
  checkEqual((await gone)[0], 'io server disconnect', 'client side reason');
  await expectEvent(admin, 'socket_disconnected', (e, x) => e === 'socket_disconnected' && x[0] === '/' && x[1] === aId && x[2] === 'server namespace disconnect');
  await expectEvent(admin, 'room_left own room after disconnect', (e, x) => e === 'room_left' && x[1] === aId && x[2] === aId);
  await expectEvent(admin, 'room_left room3 after disconnect', (e, x) => e === 'room_left' && x[1] === room3 && x[2] === aId);
  // A whole room disconnected, closing the connection.
  const closed = waitFor(b, 'disconnect', 5000, 'disconnect of a room');
  admin.socket.emit('_disconnect', '/', true, room2);
  await closed;
  await expectEvent(admin, 'socket_disconnected of the room', (e, x) => e === 'socket_disconnected' && x[1] === bId && x[2] === 'forced server close');

  const [stats] = await expectEvent(admin, 'server_stats', (e) => e === 'server_stats', 5000);
  check(typeof stats.serverId === 'string' && stats.serverId.length > 0, 'serverId');
  check(typeof stats.uptime === 'number' && typeof stats.pid === 'number', 'uptime and pid');
  check(stats.clientsCount >= 3, `clientsCount ${stats.clientsCount}`);
  check(stats.namespaces.some((n) => n.name === '/admin' && n.socketsCount >= 3), `namespaces ${show(stats.namespaces)}`);
  // Traffic is bucketed by second.
  const later = await expectEvent(admin, 'server_stats with events',
    (e, x) => e === 'server_stats' && x[0].aggregatedEvents.some((ev) => ev.type === 'packetsIn'), 7000);
  for (const event of later[0].aggregatedEvents) {
    check(event.timestamp % 1000 === 0 && event.count > 0, `bucket ${show(event)}`);
  }
  check(later[0].aggregatedEvents.some((ev) => ev.type === 'rawConnection'), 'rawConnection counted');
}

async function production() {
  const admin = adminSocket({});
  await admin.connected;
  const [config] = await expectEvent(admin, 'config', (e) => e === 'config');
  checkEqual(config.supportedFeatures, DEV_FEATURES.slice(0, 8), 'production features');
  const client = await connectV4('/');
  await emitAck(client, 'join', ['r']);
  await expectEvent(admin, 'server_stats', (e) => e === 'server_stats', 5000);
  await expectNone(admin, 'per-socket events in production',
    (e) => ['all_sockets', 'socket_connected', 'room_joined', 'event_received', 'session'].includes(e));
  // The commands still act.
  const gone = waitFor(client, 'disconnect', 5000, 'disconnect by command');
  admin.socket.emit('_disconnect', '/', false, client.id);
  await gone;
}

async function readOnly() {
  const admin = adminSocket({});
  await admin.connected;
  const [config] = await expectEvent(admin, 'config', (e) => e === 'config');
  checkEqual(config.supportedFeatures, ['AGGREGATED_EVENTS', 'ALL_EVENTS'], 'read-only features');
  const client = await connectV4('/');
  await expectEvent(admin, 'socket_connected', (e, a) => e === 'socket_connected' && a[0].id === client.id);
  admin.socket.emit('join', '/', 'nope', client.id);
  admin.socket.emit('_disconnect', '/', false, client.id);
  await expectNone(admin, 'commands in read-only mode',
    (e, a) => (e === 'room_joined' && a[1] === 'nope') || e === 'socket_disconnected');
  check(client.connected, 'client still connected');
}

// Against a library-built server whose "/" has `set(value)`: socket.set_data(value), acked.
async function dataChanges() {
  const admin = adminSocket({});
  await admin.connected;
  const client = await connectV4('/', { transports: ['websocket'] });
  await expectEvent(admin, 'socket_connected', (e, a) => e === 'socket_connected' && a[0].id === client.id);
  await emitAck(client, 'set', [{ user: { name: 'bob' } }]);
  const [update] = await expectEvent(admin, 'socket_updated with data',
    (e, a) => e === 'socket_updated' && a[0].id === client.id && a[0].data !== undefined);
  checkEqual(update, { id: client.id, nsp: '/', data: { user: { name: 'bob' } } }, 'socket_updated');
  // The client id survives the application replacing the data.
  const viewer = adminSocket({});
  await viewer.connected;
  const [all] = await expectEvent(viewer, 'all_sockets', (e) => e === 'all_sockets');
  const entry = all.find((s) => s.id === client.id);
  check(entry && client.io.engine.id.startsWith(entry.clientId), `all_sockets entry ${show(entry)}`);
  checkEqual(entry.data, { user: { name: 'bob' } }, 'data in all_sockets');
}

const scenarios = { dev: development, production, readonly: readOnly, data: dataChanges };
const scenario = scenarios[SCENARIO] || (() => fail(`unknown scenario ${SCENARIO}`));
run(`admin ${SCENARIO}`, scenario, 40000);
