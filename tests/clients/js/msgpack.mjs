// socket.io-client 4 with npm socket.io-msgpack-parser against `ringcast --parser msgpack`:
// connect on two namespaces over one connection; acks from the server (echo of text, objects,
// numbers, Buffers, a large Buffer, Buffers nested in objects); join and publish into a room with
// members on every shard (text, objects, Buffers: events from the server); a JSON client is
// refused cleanly and the server goes on serving. Every wait is bounded.
// Usage: node msgpack.mjs [default|polling|websocket]
import parser from 'socket.io-msgpack-parser';
import {
  run, io, Manager, BASE_URL, transportOptions, connectV4, track, echo, join, emitAck, waitFor, until,
  sleep, check, checkBuffer, checkEqual, checkRingcastId, shardOf, show, uniqueName, withTimeout,
  SHARDS, EXTERNAL,
} from './lib.mjs';

const connect = (nsp = '/') => connectV4(nsp, { parser });

/** Clients until two sit on each shard (every one a room member later). */
async function spread() {
  const clients = [];
  const counts = new Array(SHARDS).fill(0);
  while (EXTERNAL ? clients.length < 2 * SHARDS : counts.some((n) => n < 2)) {
    check(clients.length < 40, `40 clients but shards hold ${show(counts)}`);
    const socket = await connect();
    checkRingcastId(socket.id, 'socket.id');
    if (!EXTERNAL) counts[shardOf(socket.id)] += 1;
    clients.push(socket);
  }
  return clients;
}

run('msgpack parser', async () => {
  // Two namespaces multiplexed on one Engine.IO session.
  const manager = new Manager(BASE_URL, { parser, reconnection: false, timeout: 5000, ...transportOptions() });
  const main = track(manager.socket('/'));
  const chat = track(manager.socket('/chat'));
  await withTimeout(Promise.all([waitFor(main, 'connect'), waitFor(chat, 'connect')]), 5000, 'both namespaces');
  checkRingcastId(main.id, 'main socket id');
  checkRingcastId(chat.id, 'chat socket id');
  check(main.id !== chat.id, 'one id for two namespaces');

  // Acks from the server, values unchanged.
  checkEqual(await echo(main, 'hello é ✓'), 'hello é ✓', 'echo of a string');
  checkEqual(await echo(chat, { n: -12, f: 1.5, big: 2 ** 40, t: true, z: null, list: [1, 'a'] }),
    { n: -12, f: 1.5, big: 2 ** 40, t: true, z: null, list: [1, 'a'] }, 'echo of an object on /chat');
  checkEqual(await emitAck(main, 'echo', [1, 'two', [3]]), [1, 'two', [3]], 'echo of several arguments');
  const small = Buffer.from([0, 1, 2, 0xfe, 0xff]);
  checkBuffer(await echo(main, small), small, 'echo of a Buffer');
  checkBuffer(await echo(main, Buffer.alloc(0)), Buffer.alloc(0), 'echo of an empty Buffer');
  const large = Buffer.alloc(200 * 1024);
  for (let i = 0; i < large.length; i++) large[i] = (i * 31 + 7) & 0xff;
  checkBuffer(await echo(chat, large), large, 'echo of a 200 KB Buffer');
  const a = Buffer.from('first é', 'utf8');
  const b = Buffer.from([9, 8, 7]);
  const obj = await echo(main, { a, nested: { list: ['text', b, 42] } });
  checkBuffer(obj?.a, a, 'object.a');
  checkBuffer(obj?.nested?.list?.[1], b, 'object.nested.list[1]');
  checkEqual(obj.nested.list[0], 'text', 'object.nested.list[0]');
  // An error ack (an object) for a refused join.
  const [refused] = await emitAck(main, 'join', ['ringcast:own']);
  checkEqual(refused?.error?.code, 'forbidden', 'the reserved room refused');

  // Rooms and broadcasts across shards, binary included.
  const members = await spread();
  const outsider = await connect();
  const room = uniqueName('mp');
  await Promise.all(members.map((s) => join(s, room)));
  const got = new Map(members.map((s) => [s, []]));
  for (const s of members) s.on('message', (...args) => got.get(s).push(args));
  outsider.on('message', (m) => { throw new Error(`outsider got ${show(m)}`); });
  const sent = ['text', { from: 'obj', list: [1, 2] }, Buffer.from([0xde, 0xad, 0xbe, 0xef]), { bin: Buffer.from('xyz') }];
  // Publishers on different shards have no mutual order: one message at a time.
  for (const [i, value] of sent.entries()) {
    await emitAck(members[i % members.length], 'publish', [room, value]);
    await until(() => members.every((s) => got.get(s).length > i), 5000, `every member to get message ${i}`);
  }
  await sleep(200);
  for (const [i, s] of members.entries()) {
    const values = got.get(s);
    checkEqual(values.length, sent.length, `messages to member ${i}`);
    checkEqual(values[0], ['text'], `member ${i} text`);
    checkEqual(values[1], [{ from: 'obj', list: [1, 2] }], `member ${i} object`);
    checkBuffer(values[2][0], sent[2], `member ${i} Buffer`);
    checkBuffer(values[3][0]?.bin, sent[3].bin, `member ${i} nested Buffer`);
  }

  // A JSON client (the default parser) is refused: no connect, the session closed.
  const json = track(io(BASE_URL, { forceNew: true, reconnection: false, timeout: 3000, ...transportOptions() }));
  const outcome = await withTimeout(new Promise((resolve) => {
    json.once('connect', () => resolve('connected'));
    json.once('connect_error', (err) => resolve(`connect_error: ${err.message}`));
    json.once('disconnect', (reason) => resolve(`disconnect: ${reason}`));
  }), 5000, 'the JSON client to be refused');
  check(outcome !== 'connected', 'a JSON client connected to a msgpack server');
  console.log(`JSON client: ${outcome}`);
  // The msgpack clients were not disturbed.
  checkEqual(await echo(main, 'still here'), 'still here', 'echo after the JSON client');
  checkEqual(await echo((await connect()), 'new'), 'new', 'a new msgpack client');
});
