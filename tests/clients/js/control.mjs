// The control plane's client side (run by tests/control.rs): JWT auth at CONNECT, room
// patterns, live expiry and refresh, the event rate, reserved events; socket.io-client 4.x and,
// for `v2-*`, 2.x. Tokens come minted from the test in RINGCAST_TOKENS (a JSON object).
// Usage: node control.mjs <default|polling|websocket> <scenario>
import { createHmac } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { run, track, io, Manager, BASE_URL, withTimeout, check, checkEqual, emitAck, sleep, show, waitFor, transportOptions } from './lib.mjs';

const ioV2 = createRequire(import.meta.url)('socket.io-client-v2');
const SCENARIO = process.argv[3];
const TOKENS = JSON.parse(process.env.RINGCAST_TOKENS || '{}');

/**
 * A token for user 42 living `lifetime` seconds from now, minted here (HS256 over the key file
 * RINGCAST_JWT names, with its iss and aud) so that this process's start-up does not eat into
 * its life; the test's own token when RINGCAST_JWT is not set.
 */
function minted(lifetime, fallback) {
  if (!process.env.RINGCAST_JWT) return token(fallback);
  const spec = JSON.parse(process.env.RINGCAST_JWT);
  const key = readFileSync(spec.key).toString().replace(/[\r\n]+$/, '');
  const now = Math.floor(Date.now() / 1000);
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub: '42', iat: now, exp: now + lifetime, iss: spec.iss, aud: spec.aud })}`;
  return `${body}.${createHmac('sha256', key).update(body).digest('base64url')}`;
}

function token(name) {
  const value = TOKENS[name];
  check(value !== undefined, `the test gave no token "${name}"`);
  return value;
}

/** A v4 socket on its own Manager; resolves with it once connected. */
async function connect(nsp, auth, extra = {}) {
  const socket = track(io(BASE_URL + nsp, { forceNew: true, reconnection: false, timeout: 5000, auth, ...transportOptions(), ...extra }));
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', (err) => reject(new Error(`connect_error on ${nsp}: ${err.message} ${show(err.data)}`)));
    }),
    5000,
    `connect on ${nsp}`,
  );
  return socket;
}

/** Resolves with the connect_error of a CONNECT that must be refused. */
async function refused(nsp, auth) {
  const socket = track(io(BASE_URL + nsp, { forceNew: true, reconnection: false, timeout: 5000, auth, ...transportOptions() }));
  return withTimeout(
    new Promise((resolve, reject) => {
      socket.once('connect', () => reject(new Error(`connected to ${nsp} with ${show(auth)}`)));
      socket.once('connect_error', (err) => resolve(err));
    }),
    5000,
    `the refusal on ${nsp}`,
  );
}

function checkErrorAck(reply, code, what) {
  check(reply.length === 1 && reply[0] && reply[0].error && reply[0].error.code === code,
    `${what}: expected an error ack ${code}, got ${show(reply)}`);
  check(typeof reply[0].error.message === 'string', `${what}: the error has a message`);
}

const scenarios = {
  // A valid token connects; the token's rooms are joined; join patterns, allow_rooms and the
  // reserved prefix decide joins.
  async 'auth'() {
    const a = await connect('/chat', { token: token('user42'), room: 'lobby' });
    const b = await connect('/chat', { token: token('user13') });
    checkEqual(await emitAck(a, 'join', ['team:7:x']), [], 'join allowed by the token\'s allow_rooms');
    checkEqual(await emitAck(a, 'join', ['public:a']), [], 'join allowed by the namespace\'s join');
    checkEqual(await emitAck(a, 'join', ['dm:42:13']), [], 'join allowed by dm:{user}:*');
    checkErrorAck(await emitAck(a, 'join', ['dm:13:42']), 'forbidden', 'another user\'s dm room');
    checkErrorAck(await emitAck(a, 'join', ['team:8:x']), 'forbidden', 'a room no pattern allows');
    checkErrorAck(await emitAck(a, 'join', ['ringcast:user:13']), 'forbidden', 'a reserved room');
    checkErrorAck(await emitAck(a, 'join', ['']), 'invalid_room', 'an empty room name');
    // Both tokens name the room team:7: a publish there reaches both, with no join.
    const got = waitFor(b, 'message', 5000, 'the publish to team:7 at b');
    const gotA = waitFor(a, 'message', 5000, 'the publish to team:7 at a');
    checkEqual(await emitAck(a, 'publish', ['team:7', 'hello']), [], 'publish to team:7');
    checkEqual(await got, ['hello'], 'b received');
    checkEqual(await gotA, ['hello'], 'a received');
    checkErrorAck(await emitAck(a, 'publish', ['secret:1', 'x']), 'forbidden', 'publish outside the patterns');
    checkErrorAck(await emitAck(a, 'ringcast:foo', []), 'reserved_event', 'a reserved event');
    // The Engine.IO sids, for the test that checks no log line holds one.
    console.log(`sids ${a.io.engine.id} ${b.io.engine.id}`);
  },

  // Each token's verdict: "ok" connects, anything else is the refusal's code (token "none":
  // no token at all).
  async 'verdicts'() {
    const cases = JSON.parse(process.env.RINGCAST_CASES);
    for (const [name, code] of cases) {
      const auth = name === 'none' ? {} : { token: token(name) };
      if (code === 'ok') {
        (await connect('/chat', auth)).disconnect();
        continue;
      }
      const err = await refused('/chat', auth);
      checkEqual(err.data && err.data.code, code, `the code for ${name} (message ${err.message})`);
      checkEqual(err.data.retryable, false, `retryable for ${name}`);
      check(typeof err.message === 'string' && err.message.length > 0, `a message for ${name}`);
    }
  },

  // The token's namespaces claim on one Manager: /chat connects, /other is refused.
  async 'namespaces'() {
    const manager = new Manager(BASE_URL, { forceNew: true, reconnection: false, timeout: 5000, ...transportOptions() });
    const chat = track(manager.socket('/chat', { auth: { token: token('chatOnly') } }));
    const other = track(manager.socket('/other', { auth: { token: token('chatOnly') } }));
    const connected = waitFor(chat, 'connect', 5000, 'connect on /chat');
    const refusal = waitFor(other, 'connect_error', 5000, 'the refusal on /other');
    chat.connect();
    other.connect();
    await connected;
    const [err] = await refusal;
    checkEqual(err.data && err.data.code, 'namespace_forbidden', 'the code on /other');
    check(chat.connected, '/chat stays connected');
  },

  // exp = now+3 s, refresh_before = 2 s: the warning comes; a refresh extends the socket.
  async 'refresh'() {
    const started = Date.now();
    const socket = await connect('/chat', { token: minted(4, 'short') });
    const [warning] = await waitFor(socket, 'ringcast:expiring', 4000, 'ringcast:expiring');
    const at = Date.now() - started;
    check(at >= 200 && at <= 3000, `ringcast:expiring came after ${at} ms`);
    check(typeof warning.exp === 'number' && typeof warning.expires_in_ms === 'number', `warning ${show(warning)}`);
    const [answer] = await emitAck(socket, 'ringcast:refresh', [{ token: minted(300, 'long') }]);
    checkEqual(answer.ok, true, `the refresh answer ${show(answer)}`);
    check(typeof answer.exp === 'number' && answer.exp > warning.exp, 'the new exp is later');
    // Past the old exp (+ leeway 1 s) by 2 s: still connected and answering.
    const oldExpiry = warning.exp * 1000 + 1000;
    await sleep(Math.max(0, oldExpiry + 2000 - Date.now()));
    check(socket.connected, 'still connected after the old expiry');
    checkEqual(await emitAck(socket, 'echo', ['still here']), ['still here'], 'echo after the old expiry');
  },

  // No refresh: ringcast:disconnect, then io server disconnect, no reconnection by itself; a new
  // token through an auth function connects again as a new socket.
  async 'expire'() {
    let current = minted(4, 'short');
    const socket = track(io(BASE_URL + '/chat', {
      forceNew: true, reconnection: true, reconnectionDelay: 100, timeout: 5000,
      auth: (cb) => cb({ token: current }), ...transportOptions(),
    }));
    await waitFor(socket, 'connect', 5000, 'connect');
    const firstId = socket.id;
    const told = waitFor(socket, 'ringcast:disconnect', 7000, 'ringcast:disconnect');
    const gone = waitFor(socket, 'disconnect', 7000, 'disconnect');
    checkEqual(await told, [{ reason: 'token expired', code: 'token_expired' }], 'the reason');
    checkEqual((await gone)[0], 'io server disconnect', 'the client side reason');
    await sleep(500);
    check(!socket.connected, 'the client did not reconnect by itself');
    current = token('long');
    socket.connect();
    await waitFor(socket, 'connect', 5000, 'connect again');
    check(socket.id !== firstId, 'a new socket id');
  },

  // Refresh errors: another user's token, then the per-minute allowance.
  async 'refresh-errors'() {
    const socket = await connect('/chat', { token: token('user42') });
    const [mismatch] = await emitAck(socket, 'ringcast:refresh', [{ token: token('user13') }]);
    checkEqual(mismatch.ok, false, `the mismatch answer ${show(mismatch)}`);
    checkEqual(mismatch.error && mismatch.error.code, 'user_mismatch', 'user_mismatch');
    const [bad] = await emitAck(socket, 'ringcast:refresh', [{ token: 'not.a.token' }]);
    checkEqual(bad.error && bad.error.code, 'token_invalid', 'a malformed token');
    for (let i = 0; i < 4; i += 1) {
      const [ok] = await emitAck(socket, 'ringcast:refresh', [{ token: token('user42') }]);
      checkEqual(ok.ok, true, `refresh ${i + 3}`);
    }
    const [limited] = await emitAck(socket, 'ringcast:refresh', [{ token: token('user42') }]);
    checkEqual(limited.error && limited.error.code, 'rate_limited', 'the seventh refresh in a minute');
    check(socket.connected, 'still connected');
  },

  // event_rate 10/s, burst 20: 25 events at once get 5 rate_limited acks.
  async 'rate'() {
    const socket = await connect('/limited', {});
    const replies = await Promise.all(Array.from({ length: 25 }, (_, i) => emitAck(socket, 'echo', [i])));
    const limited = replies.filter((r) => r[0] && r[0].error && r[0].error.code === 'rate_limited').length;
    checkEqual(limited, 5, `rate_limited acks among ${show(replies)}`);
  },

  // socket.io-client 2.x: the token in the handshake query when the server reads it there.
  async 'v2-query'() {
    const good = track(ioV2(BASE_URL + '/chat', { forceNew: true, reconnection: false, timeout: 5000, query: { token: token('user42') } }));
    await withTimeout(new Promise((resolve, reject) => {
      good.once('connect', resolve);
      good.once('error', (err) => reject(new Error(`v2 refused: ${show(err)}`)));
    }), 5000, 'v2 connect');
    const bad = track(ioV2(BASE_URL + '/chat', { forceNew: true, reconnection: false, timeout: 5000, query: { token: token('expired') } }));
    const err = await withTimeout(new Promise((resolve, reject) => {
      bad.once('connect', () => reject(new Error('v2 connected with an expired token')));
      bad.once('error', resolve);
    }), 5000, 'v2 refusal');
    checkEqual(err, 'token expired', 'v2 sees the message only');
  },

  // socket.io-client 2.x without the query parameter configured: refused, token missing.
  async 'v2-refused'() {
    const bad = track(ioV2(BASE_URL + '/chat', { forceNew: true, reconnection: false, timeout: 5000, query: { token: token('user42') } }));
    const err = await withTimeout(new Promise((resolve, reject) => {
      bad.once('connect', () => reject(new Error('v2 connected with no token read')));
      bad.once('error', resolve);
    }), 5000, 'v2 refusal');
    checkEqual(err, 'token missing', 'v2 sees the message only');
  },

  // Connected until the server revokes the user: told why, then disconnected.
  async 'revoked'() {
    const socket = await connect('/chat', { token: token('user42'), room: 'lobby' });
    const told = waitFor(socket, 'ringcast:disconnect', 15000, 'ringcast:disconnect');
    const gone = waitFor(socket, 'disconnect', 15000, 'disconnect');
    checkEqual(await told, [{ reason: 'revoked', code: 'revoked' }], 'the reason');
    checkEqual((await gone)[0], 'io server disconnect', 'the client side reason');
  },

  // Stays connected and answering for the given seconds (a key rotation happens meanwhile).
  async 'stay'() {
    const socket = await connect('/chat', { token: token('user42') });
    // The test rotates the key once this file exists.
    if (process.env.RINGCAST_READY_FILE) writeFileSync(process.env.RINGCAST_READY_FILE, 'connected');
    const seconds = Number(process.env.RINGCAST_STAY || '3');
    const gone = new Promise((resolve) => socket.once('disconnect', (reason) => resolve(reason)));
    const outcome = await Promise.race([sleep(seconds * 1000).then(() => 'stayed'), gone]);
    checkEqual(outcome, 'stayed', 'the socket through the rotation');
    checkEqual(await emitAck(socket, 'echo', ['after']), ['after'], 'echo after');
  },
};

const scenario = scenarios[SCENARIO];
if (!scenario) {
  console.error(`unknown scenario ${SCENARIO}`);
  process.exit(2);
}
run(`control ${SCENARIO}`, scenario, 20000);
