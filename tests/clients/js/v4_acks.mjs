// Scenario 4 (socket.io-client 4): events with acks: echo of strings, numbers, nested objects,
// unicode, control characters, a 100 KB string, many acks in flight, and emitWithAck.
// Usage: node v4_acks.mjs [default|polling|websocket]
import { run, connectV4, echo, checkEqual, check, show, withTimeout } from './lib.mjs';

const PAYLOADS = [
  ['empty string', ''],
  ['ascii string', 'hello world'],
  ['unicode', 'é€😀 — ünïcödé ✓ 中文'],
  ['lone emoji', '😀'],
  ['json-looking string', '["echo",{"a":1}]'],
  ['quotes, backslashes, control chars', 'a"b\\c\n\t\r\u0000\u001e\u001f/</script>'],
  ['zero', 0],
  ['negative integer', -7],
  ['float', 3.5],
  ['max safe integer', Number.MAX_SAFE_INTEGER],
  ['small float', 1.5e-10],
  ['true', true],
  ['false', false],
  ['null', null],
  ['empty object', {}],
  ['empty array', []],
  ['nested object', { a: [1, { b: null, c: true, d: 'é€😀' }], s: 'x', deep: { x: { y: { z: [[], [{}]] } } } }],
  ['array of mixed', [1, 'two', { three: 3 }, [4], null, false]],
  ['100 KB string', 'x'.repeat(50 * 1024) + 'é€😀'.repeat(1) + 'y'.repeat(50 * 1024)],
  ['100 KB unicode string', '€'.repeat(34 * 1024)],
];

run('v4 events and acks', async () => {
  const socket = await connectV4('/');
  for (const [what, payload] of PAYLOADS) {
    checkEqual(await echo(socket, payload), payload, `echo of ${what}`);
  }

  // Many acks in flight at once: each must come back to its own callback.
  const inFlight = await Promise.all(Array.from({ length: 100 }, (_, i) => echo(socket, { i, s: `n${i}` })));
  inFlight.forEach((r, i) => checkEqual(r, { i, s: `n${i}` }, `concurrent echo #${i}`));

  // emitWithAck (promise API) and the timeout() flavour.
  const viaPromise = await withTimeout(socket.emitWithAck('echo', { via: 'emitWithAck' }), 5000, 'emitWithAck');
  checkEqual(viaPromise, { via: 'emitWithAck' }, 'emitWithAck result');
  const viaTimeout = await socket.timeout(5000).emitWithAck('echo', 'timed');
  checkEqual(viaTimeout, 'timed', 'timeout().emitWithAck result');

  // join/leave ack with no arguments; publish's ack too.
  const joined = await withTimeout(socket.emitWithAck('join', 'acks-room'), 5000, 'join ack');
  check(joined === undefined, `join ack carried ${show(joined)}`);
  const published = await withTimeout(socket.emitWithAck('publish', 'acks-room-nobody', 1), 5000, 'publish ack');
  check(published === undefined, `publish ack carried ${show(published)}`);
  const left = await withTimeout(socket.emitWithAck('leave', 'acks-room'), 5000, 'leave ack');
  check(left === undefined, `leave ack carried ${show(left)}`);

  // The same on /chat.
  const chat = await connectV4('/chat');
  checkEqual(await echo(chat, { nsp: 'chat', u: 'é€😀' }), { nsp: 'chat', u: 'é€😀' }, 'echo on /chat');
});
