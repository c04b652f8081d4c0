// Scenario 11 (socket.io-client 2.x: Engine.IO v3, Socket.IO protocol v4): implicit "/" and
// "/chat" on one Manager, echo with acks, binary echo both ways, an unknown namespace gives an
// `error` event "Invalid namespace", and a v2 and a v4 client in one room both receive a publish
// from either (text and binary).
// Usage: node v2_basic.mjs [default|polling|polling-b64|websocket|websocket-b64]
import { createRequire } from 'node:module';
import { run, track, MODE, BASE_URL, waitFor, withTimeout, check, checkEqual, checkBuffer, checkRingcastId, connectV4, join, emitAck, until, sleep, show, uniqueName, toBuffer } from './lib.mjs';

const ioV2 = createRequire(import.meta.url)('socket.io-client-v2');

function v2Options(mode) {
  const base = { reconnection: false, timeout: 5000 };
  switch (mode) {
    case 'default':
      return base;
    case 'polling':
      return { ...base, transports: ['polling'] };
    case 'polling-b64':
      return { ...base, transports: ['polling'], forceBase64: true };
    case 'websocket':
      return { ...base, transports: ['websocket'] };
    case 'websocket-b64':
      return { ...base, transports: ['websocket'], forceBase64: true };
    default:
      throw new Error(`unknown v2 mode ${mode}`);
  }
}

function connected(socket, nsp) {
  if (socket.connected) return Promise.resolve();
  return withTimeout(
    new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', (err) => reject(new Error(`v2 connect_error on ${nsp}: ${err && err.message}`)));
      socket.once('error', (err) => reject(new Error(`v2 error on ${nsp}: ${show(err)}`)));
    }),
    5000,
    `v2 connect on ${nsp}`,
  );
}

function v2Echo(socket, payload) {
  return withTimeout(
    new Promise((resolve) => socket.emit('echo', payload, (...args) => resolve(args))),
    5000,
    `the v2 ack of "echo" with ${show(payload)}`,
  ).then((args) => {
    check(args.length === 1, `v2 echo ack carried ${args.length} arguments: ${show(args)}`);
    return args[0];
  });
}

function v2Ack(socket, event, args) {
  return withTimeout(
    new Promise((resolve) => socket.emit(event, ...args, (...ackArgs) => resolve(ackArgs))),
    5000,
    `v2 ack of "${event}"`,
  );
}

run('v2 client basics', async () => {
  const manager = ioV2.Manager(BASE_URL, v2Options(MODE));
  const main = track(manager.socket('/'));
  const chat = track(manager.socket('/chat'));
  await connected(main, '/');
  await connected(chat, '/chat');

  const sid = manager.engine.id;
  checkRingcastId(sid, 'v2 engine sid');
  checkEqual(main.id, sid, 'v2 socket id on /');
  checkEqual(chat.id, `/chat#${sid}`, 'v2 socket id on /chat');
  if (MODE.startsWith('websocket')) checkEqual(manager.engine.transport.name, 'websocket', 'transport');
  if (MODE.startsWith('polling')) checkEqual(manager.engine.transport.name, 'polling', 'transport');

  // Text echoes on both namespaces.
  for (const [what, payload] of [
    ['string', 'hello v2'],
    ['unicode', 'é€😀'],
    ['number', 42.5],
    ['nested object', { a: [1, { b: null }], s: 'é€😀' }],
    ['10 KB string', 'z'.repeat(10 * 1024)],
  ]) {
    checkEqual(await v2Echo(main, payload), payload, `v2 echo on / of ${what}`);
    checkEqual(await v2Echo(chat, payload), payload, `v2 echo on /chat of ${what}`);
  }
  const concurrent = await Promise.all(Array.from({ length: 20 }, (_, i) => v2Echo(i % 2 ? chat : main, i)));
  checkEqual(concurrent, Array.from({ length: 20 }, (_, i) => i), 'v2 concurrent echoes');

  // Binary echoes.
  const buf = Buffer.from([0, 1, 2, 0x1e, 0x3a, 0xfe, 0xff]);
  checkBuffer(await v2Echo(main, buf), buf, 'v2 binary echo on /');
  checkBuffer(await v2Echo(chat, buf), buf, 'v2 binary echo on /chat');
  const big = Buffer.alloc(50 * 1024, 0xab);
  checkBuffer(await v2Echo(main, big), big, 'v2 50 KB binary echo');
  const a = Buffer.from('alpha');
  const b = Buffer.from([7, 7, 7]);
  const obj = await v2Echo(main, { a, list: [b, 'text'], n: 3 });
  check(obj && typeof obj === 'object', `v2 echo of an object with buffers gave ${show(obj)}`);
  checkBuffer(obj.a, a, 'v2 object.a');
  checkBuffer(obj.list?.[0], b, 'v2 object.list[0]');
  checkEqual([obj.list[1], obj.n], ['text', 3], 'v2 object text fields');

  // Unknown namespace: an `error` event carrying "Invalid namespace" (a string, or an object
  // with that message as newer servers send).
  const nope = track(manager.socket('/nope'));
  const [err] = await waitFor(nope, 'error', 5000, 'v2 error event on /nope');
  const message = typeof err === 'string' ? err : err && err.message;
  checkEqual(message, 'Invalid namespace', 'v2 error on /nope');
  checkEqual(await v2Echo(main, 'still'), 'still', 'v2 echo on / after the refused namespace');

  // Rooms shared by a v2 and a v4 client.
  const v4Transports = MODE.startsWith('polling') ? ['polling'] : MODE.startsWith('websocket') ? ['websocket'] : ['polling', 'websocket'];
  const v4 = await connectV4('/', { transports: v4Transports });
  const room = uniqueName('mixed');
  const got = { v2: [], v4: [] };
  main.on('message', (m) => got.v2.push(m));
  v4.on('message', (m) => got.v4.push(m));
  checkEqual(await v2Ack(main, 'join', [room]), [], 'v2 join ack arguments');
  await join(v4, room);
  checkEqual(await v2Ack(main, 'publish', [room, 'from v2']), [], 'v2 publish ack arguments');
  await emitAck(v4, 'publish', [room, 'from v4']);
  const bin = Buffer.from([1, 2, 3, 0]);
  await emitAck(v4, 'publish', [room, { bin }]);
  checkEqual(await v2Ack(main, 'publish', [room, bin]), [], 'v2 binary publish ack arguments');
  await until(() => got.v2.length >= 4 && got.v4.length >= 4, 5000, 'both clients to receive 4 messages');
  await sleep(200);
  // Publishers on different connections (maybe different shards) have no mutual order.
  for (const who of ['v2', 'v4']) {
    const l = got[who];
    checkEqual(l.length, 4, `${who} message count`);
    const texts = l.filter((m) => typeof m === 'string').sort();
    checkEqual(texts, ['from v2', 'from v4'], `${who} text messages`);
    const objs = l.filter((m) => m && typeof m === 'object' && 'bin' in m);
    checkEqual(objs.length, 1, `${who} count of binary objects published by v4`);
    checkBuffer(objs[0].bin, bin, `${who} binary object published by v4`);
    const raw = l.filter((m) => toBuffer(m) !== null);
    checkEqual(raw.length, 1, `${who} count of raw binaries published by v2`);
    checkBuffer(raw[0], bin, `${who} binary published by v2`);
  }

  if (MODE === 'default') {
    await until(() => manager.engine.transport.name === 'websocket', 5000, 'the v2 upgrade from polling to websocket');
    checkEqual(await v2Echo(chat, 'upgraded'), 'upgraded', 'v2 echo on /chat after the upgrade');
  }

  const dropped = waitFor(main, 'disconnect');
  main.close();
  checkEqual((await dropped)[0], 'io client disconnect', 'v2 disconnect reason');
});
