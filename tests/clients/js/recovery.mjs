// Connection state recovery from socket.io-client 4.x's side (run by tests/recovery.rs): a
// client whose connection goes away while others keep emitting comes back with the same id,
// its rooms, and exactly the non-volatile events it missed, in order, before `connect`
// (`socket.recovered`); a bogus pid, or a real pid with a bogus offset, gets a fresh session.
// Usage: node recovery.mjs <polling|websocket> <scenario>
import { run, track, io, BASE_URL, withTimeout, check, checkEqual, emitAck, sleep, show, waitFor, transportOptions } from './lib.mjs';

const SCENARIO = process.argv[3];

async function connect(extra = {}) {
  const socket = track(io(BASE_URL, { forceNew: true, reconnection: false, timeout: 5000, ...transportOptions(), ...extra }));
  await waitFor(socket, 'connect', 5000, 'connect');
  return socket;
}

/** The arguments of every `name` event `socket` gets from now on (the trailing offset cut). */
function record(socket, name) {
  const got = [];
  socket.on(name, (...args) => got.push(args.slice(0, -1)));
  return got;
}

/** Waits until `list` holds `count` entries. */
async function until(list, count, what) {
  await withTimeout((async () => { while (list.length < count) await sleep(10); })(), 3000, what);
}

/** Two clients, `lost` in room red and recording its `message` events, which has got
 * `before` from `other` (so it holds an offset to come back with). */
async function inRed() {
  const lost = await connect();
  const other = await connect();
  checkEqual(await emitAck(lost, 'join', ['red']), [], 'join red');
  const messages = record(lost, 'message');
  checkEqual(await emitAck(other, 'publish', ['red', 'before']), [], 'publish before');
  await until(messages, 1, 'the first message');
  return { lost, other, messages };
}

const scenarios = {
  async 'recovered'() {
    const { lost, other, messages } = await inRed();
    const everyone = record(lost, 'everyone');
    const id = lost.id;
    // The connection goes away (no namespace disconnect: the server keeps the session).
    const gone = waitFor(lost, 'disconnect', 5000, 'the disconnect');
    lost.io.engine.close();
    await gone;
    await sleep(200);
    // Meanwhile: to its room (binary too), to another room, to everyone but its room, to
    // everyone, and volatile to everyone.
    checkEqual(await emitAck(other, 'publish', ['red', 'missed 1']), [], 'publish missed 1');
    checkEqual(await emitAck(other, 'publish', ['red', Buffer.from([1, 2, 3])]), [], 'publish binary');
    checkEqual(await emitAck(other, 'publish', ['blue', 'not for it']), [], 'publish blue');
    checkEqual(await emitAck(other, 'publish', ['red', 'missed 2']), [], 'publish missed 2');
    await sleep(100);
    lost.connect();
    await waitFor(lost, 'connect', 5000, 'the reconnect');
    checkEqual(lost.recovered, true, 'socket.recovered');
    checkEqual(lost.id, id, 'the same id');
    checkEqual(messages.length, 4, `messages ${show(messages)}`);
    checkEqual(messages[1], ['missed 1'], 'the first missed event');
    check(Buffer.isBuffer(messages[2][0]) && messages[2][0].equals(Buffer.from([1, 2, 3])), `binary ${show(messages[2])}`);
    checkEqual(messages[3], ['missed 2'], 'the last missed event');
    checkEqual(everyone.length, 0, 'nothing else');
    // Still in its room.
    checkEqual(await emitAck(other, 'publish', ['red', 'after']), [], 'publish after');
    await until(messages, 5, 'the event after');
    checkEqual(messages[4], ['after'], 'in its room again');
  },

  // The connection dies under the client, as a network drop does; the server keeps emitting
  // to it meanwhile. WebSocket: the TCP connection is destroyed (no close frame). Polling:
  // nothing more reaches the server (no close packet, no poll), which notices by its ping
  // timeout (300 ms + 300 ms in tests/recovery.rs).
  async 'killed'() {
    const { lost, other, messages } = await inRed();
    const id = lost.id;
    const gone = waitFor(lost, 'disconnect', 5000, 'the disconnect');
    const engine = lost.io.engine;
    if (engine.transport.name === 'websocket') {
      engine.transport.ws._socket.destroy();
      checkEqual((await gone)[0], 'transport close', 'the client side reason');
      await sleep(200);
    } else {
      engine.transport.close = () => {};
      engine._onClose('transport error');
      checkEqual((await gone)[0], 'transport error', 'the client side reason');
      await sleep(1200);
    }
    checkEqual(await emitAck(other, 'publish', ['red', 'missed']), [], 'publish missed');
    lost.connect();
    await waitFor(lost, 'connect', 5000, 'the reconnect');
    checkEqual(lost.recovered, true, 'socket.recovered');
    checkEqual(lost.id, id, 'the same id');
    checkEqual(messages, [['before'], ['missed']], 'the messages');
  },

  async 'bogus'() {
    const socket = await connect({ auth: { pid: 'nobody-has-this-pid', offset: '1.0' } });
    checkEqual(socket.recovered, false, 'a bogus pid is not recovered');
    check(typeof socket.id === 'string' && socket.id.length === 20, `a fresh id ${socket.id}`);
    // A real session's pid with an offset the server never gave: a fresh session too.
    const { lost } = await inRed();
    const gone = waitFor(lost, 'disconnect', 5000, 'the disconnect');
    lost.io.engine.close();
    await gone;
    await sleep(200);
    const again = await connect({ auth: { pid: lost._pid, offset: 'not-an-offset' } });
    checkEqual(again.recovered, false, 'a bogus offset is not recovered');
    check(again.id !== lost.id, `a fresh id ${again.id}`);
  },
};

const scenario = scenarios[SCENARIO];
if (!scenario) {
  console.error(`unknown scenario ${SCENARIO}`);
  process.exit(2);
}
run(`recovery ${SCENARIO}`, scenario, 20000);
