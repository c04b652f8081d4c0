// Backend hooks from the client's side (run by tests/hooks.rs): the connect hook's allow, deny
// and failures as connect_error, forwarded events whose ack is the backend's answer (binary
// too), the order of a socket's calls, actions applied before the ack, and the error acks of a
// failing backend; socket.io-client 4.x and, for `v2-*`, 2.x. The test sets the backend's
// answers before each scenario.
// Usage: node hooks.mjs <default|polling|websocket> <scenario>
import { createRequire } from 'node:module';
import { run, track, io, BASE_URL, withTimeout, check, checkEqual, emitAck, sleep, show, waitFor, transportOptions } from './lib.mjs';

const ioV2 = createRequire(import.meta.url)('socket.io-client-v2');
const SCENARIO = process.argv[3];

/** A v4 socket on its own Manager; resolves with it once connected. */
async function connect(nsp = '/', auth = {}, extra = {}) {
  const socket = track(io(BASE_URL + nsp, { forceNew: true, reconnection: false, timeout: 8000, auth, ...transportOptions(), ...extra }));
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', (err) => reject(new Error(`connect_error on ${nsp}: ${err.message} ${show(err.data)}`)));
    }),
    8000,
    `connect on ${nsp}`,
  );
  return socket;
}

/** The connect_error of a CONNECT that must be refused, and how long it took. */
async function refused(nsp = '/', auth = {}) {
  const started = Date.now();
  const socket = track(io(BASE_URL + nsp, { forceNew: true, reconnection: false, timeout: 8000, auth, ...transportOptions() }));
  const err = await withTimeout(
    new Promise((resolve, reject) => {
      socket.once('connect', () => reject(new Error(`connected to ${nsp}`)));
      socket.once('connect_error', (error) => resolve(error));
    }),
    8000,
    `the refusal on ${nsp}`,
  );
  return { err, ms: Date.now() - started };
}

function checkErrorAck(reply, code, what) {
  check(reply.length === 1 && reply[0] && reply[0].error && reply[0].error.code === code,
    `${what}: expected an error ack ${code}, got ${show(reply)}`);
}

const scenarios = {
  // The hook allows: connected, and the hook's data is the socket's.
  async 'allow'() {
    const socket = await connect('/', { room: 'lobby', token: 'not-forwarded-as-is' }, {
      extraHeaders: { 'x-tenant': 't1', cookie: 'sid=secret' },
    });
    checkEqual(await emitAck(socket, 'echo', ['hi']), ['hi'], 'echo once allowed');
    socket.disconnect();
  },

  // The hook denies: the backend's message and data reach connect_error.
  async 'deny'() {
    const { err } = await refused('/', { who: 'mallory' });
    checkEqual(err.message, 'banned', 'the message');
    checkEqual(err.data, { code: 'banned', until: 1767300000, retryable: false }, 'the data');
  },

  // socket.io-client 2.x gets the deny's message.
  async 'v2-deny'() {
    const socket = ioV2(BASE_URL + '/', { forceNew: true, reconnection: false, transports: ['websocket'] });
    track(socket);
    const message = await withTimeout(new Promise((resolve, reject) => {
      socket.once('connect', () => reject(new Error('v2 connected')));
      socket.once('error', (error) => resolve(error));
    }), 8000, 'the v2 refusal');
    checkEqual(message, 'banned', 'the v2 message');
  },

  // A failing hook: the code the test expects, within the time it says.
  async 'fail'() {
    const code = process.env.HOOK_CODE;
    const maxMs = Number(process.env.HOOK_MAX_MS || '5000');
    const { err, ms } = await refused('/');
    check(err.data && err.data.code === code, `expected ${code}, got ${err.message} ${show(err.data)}`);
    checkEqual(err.data.retryable, true, 'a backend failure is retryable');
    check(ms <= maxMs, `the refusal took ${ms} ms (at most ${maxMs})`);
  },

  // The hook fails with on_failure = "anonymous": connected all the same.
  async 'anonymous'() {
    const socket = await connect('/');
    checkEqual(await emitAck(socket, 'echo', ['anon']), ['anon'], 'echo as anonymous');
  },

  // A forwarded call's answer is the ack; binary goes both ways; a socket's calls keep their
  // order; actions are applied before the ack.
  async 'calls'() {
    const socket = await connect('/');
    checkEqual(await emitAck(socket, 'chat:send', [{ text: 'hi' }]), [{ text: 'hi' }], 'the echoed ack');
    const bytes = Buffer.from([0, 1, 2, 250]);
    const [back] = await emitAck(socket, 'chat:bin', [bytes]);
    check(Buffer.isBuffer(back) && back.equals(bytes), `binary back: ${show(back)}`);
    const count = Number(process.env.HOOK_ORDER || '100');
    const answers = await Promise.all(
      Array.from({ length: count }, (_, i) => emitAck(socket, 'order:n', [i], 10000)),
    );
    answers.forEach((answer, i) => checkEqual(answer, [i], `the ack of call ${i}`));
    const joined = waitFor(socket, 'joined', 5000, 'the action\'s emit');
    let seenBeforeAck = false;
    socket.once('joined', () => { seenBeforeAck = true; });
    const reply = await emitAck(socket, 'chat:join', ['room:7']);
    check(seenBeforeAck, 'the emit action arrived before the ack');
    checkEqual(reply, [{ ok: true }], 'the join\'s ack');
    checkEqual(await joined, ['42'], 'the emit action\'s args');
  },

  // A failing backend: each failure's error ack, and `overloaded` past the socket's FIFO.
  async 'call-errors'() {
    const socket = await connect('/');
    checkErrorAck(await emitAck(socket, 'chat:500', []), 'backend_error', 'a 500');
    const started = Date.now();
    checkErrorAck(await emitAck(socket, 'slow:one', []), 'backend_timeout', 'a slow backend');
    const took = Date.now() - started;
    check(took >= 400 && took < 3000, `the timeout took ${took} ms`);
    checkErrorAck(await emitAck(socket, 'gone:x', []), 'backend_unavailable', 'a closed port');
    const denied = await emitAck(socket, 'chat:deny', []);
    checkEqual(denied, [{ error: { code: 'nope', message: 'not allowed' } }], 'a 4xx with an error');
    const other = await connect('/');
    // Six slow calls at once with max_pending 2: one in flight, two waiting, three refused.
    const slow = Promise.all(
      Array.from({ length: 6 }, () => emitAck(socket, 'slow:many', [], 10000)),
    );
    // Meanwhile another socket's calls are not held up.
    const quick = Date.now();
    checkEqual(await emitAck(other, 'chat:send', ['x']), ['x'], 'another socket\'s call');
    check(Date.now() - quick < 400, `another socket's call took ${Date.now() - quick} ms`);
    const replies = await slow;
    const overloaded = replies.filter((r) => r[0] && r[0].error && r[0].error.code === 'overloaded').length;
    checkEqual(overloaded, 3, `overloaded acks among ${show(replies)}`);
  },

  // on_error = "disconnect": a failing call disconnects only its socket.
  async 'call-disconnect'() {
    const victim = await connect('/');
    const bystander = await connect('/');
    const gone = waitFor(victim, 'disconnect', 5000, 'the disconnect');
    victim.emit('fatal:x', 1);
    checkEqual((await gone)[0], 'io server disconnect', 'the victim\'s reason');
    checkEqual(await emitAck(bystander, 'echo', ['still']), ['still'], 'the bystander');
  },

  // socket.io-client 2.x: a forwarded call's ack.
  async 'v2-call'() {
    const socket = ioV2(BASE_URL + '/', { forceNew: true, reconnection: false, transports: ['websocket'] });
    track(socket);
    await withTimeout(new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    }), 8000, 'the v2 connect');
    const reply = await withTimeout(new Promise((resolve) => socket.emit('chat:send', 'v2', (...args) => resolve(args))), 5000, 'the v2 ack');
    checkEqual(reply, ['v2'], 'the v2 ack');
  },

  // A hook-granted socket outlives its first expiry: the refresh hook renewed it.
  async 'refreshed'() {
    const socket = await connect('/');
    const gone = new Promise((resolve) => socket.once('disconnect', (reason) => resolve(reason)));
    const stay = Number(process.env.HOOK_STAY_MS || '3000');
    const outcome = await Promise.race([sleep(stay).then(() => 'stayed'), gone]);
    checkEqual(outcome, 'stayed', 'the socket past its first expiry');
    checkEqual(await emitAck(socket, 'echo', ['after']), ['after'], 'echo after the renewal');
  },

  // With the refresh hook failing, the socket is kept past its expiry by at most
  // refresh_max_extension, then told why and disconnected.
  async 'expired'() {
    const started = Date.now();
    const socket = await connect('/');
    const told = waitFor(socket, 'ringcast:disconnect', 15000, 'ringcast:disconnect');
    const gone = waitFor(socket, 'disconnect', 15000, 'disconnect');
    checkEqual(await told, [{ reason: 'token expired', code: 'token_expired' }], 'the notice');
    checkEqual((await gone)[0], 'io server disconnect', 'the reason');
    const after = Date.now() - started;
    const atLeast = Number(process.env.HOOK_MIN_MS || '0');
    check(after >= atLeast, `expired after ${after} ms (at least ${atLeast})`);
  },

  // The join hook decides joins that pass the patterns.
  async 'join-hook'() {
    const socket = await connect('/');
    checkEqual(await emitAck(socket, 'join', ['ok:1']), [], 'a join the backend allows');
    checkEqual(
      await emitAck(socket, 'join', ['no:1']),
      [{ error: { code: 'closed', message: 'room closed' } }],
      'a join the backend denies',
    );
  },

  // Sockets that stay until the server ends them (an API disconnect, a shutdown).
  async 'hold'() {
    const count = Number(process.env.HOOK_SOCKETS || '3');
    const sockets = [];
    for (let i = 0; i < count; i += 1) sockets.push(await connect('/'));
    const reasons = await Promise.all(sockets.map((socket) => waitFor(socket, 'disconnect', 20000, 'the server\'s disconnect')));
    for (const [reason] of reasons) {
      check(reason === 'io server disconnect' || reason === 'transport close', `reason ${reason}`);
    }
  },

  // A rule's limits: calls in flight together, a 503 retried, an event too large to forward.
  async 'rule-limits'() {
    const socket = await connect('/');
    const started = Date.now();
    const answers = await Promise.all([0, 1, 2, 3].map((i) => emitAck(socket, 'wide:x', [i], 8000)));
    const took = Date.now() - started;
    answers.forEach((answer, i) => checkEqual(answer, [i], `wide call ${i}`));
    check(took < 1500, `four 500 ms calls four at a time took ${took} ms`);
    checkEqual(await emitAck(socket, 'retry:x', ['again'], 8000), ['again'], 'the retried call');
    checkErrorAck(await emitAck(socket, 'big:x', ['x'.repeat(200)]), 'too_large', 'a large event');
  },

  // A crowd connects at once, then leaves.
  async 'crowd'() {
    const count = Number(process.env.HOOK_SOCKETS || '300');
    const sockets = await Promise.all(Array.from({ length: count }, () => connect('/')));
    for (const socket of sockets) socket.disconnect();
    await sleep(200);
  },

  // Lifecycle: each socket connects, joins, leaves and disconnects; one more closes its
  // transport; a notify-mode event is queued with an ok ack.
  async 'lifecycle'() {
    const count = Number(process.env.HOOK_SOCKETS || '4');
    for (let i = 0; i < count; i += 1) {
      const socket = await connect('/');
      checkEqual(await emitAck(socket, 'join', [`room:${i}`]), [], 'join');
      checkEqual(await emitAck(socket, 'leave', [`room:${i}`]), [], 'leave');
      checkEqual(await emitAck(socket, 'join', ['kept']), [], 'join kept');
      checkEqual(await emitAck(socket, 'note:x', [i]), [{ ok: true }], 'a notification');
      socket.disconnect();
    }
    const closed = await connect('/');
    checkEqual(await emitAck(closed, 'join', ['kept']), [], 'join before the close');
    closed.io.engine.close();
    await sleep(300);
  },
};

const scenario = scenarios[SCENARIO];
if (!scenario) {
  console.error(`unknown scenario ${SCENARIO}`);
  process.exit(2);
}
run(`hooks ${SCENARIO}`, scenario, 25000);
