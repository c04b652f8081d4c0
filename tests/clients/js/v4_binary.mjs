// Scenario 5 (socket.io-client 4): binary both ways: echo of a Buffer, of an object holding two
// Buffers, of a large Buffer; publish a Buffer (and an object with one) to a room and receive it.
// Usage: node v4_binary.mjs [default|polling|websocket]
import { run, connectV4, echo, check, checkBuffer, checkEqual, join, emitAck, waitFor, uniqueName, show } from './lib.mjs';

run('v4 binary', async () => {
  const socket = await connectV4('/');
  const small = Buffer.from([0, 1, 2, 3, 0xfe, 0xff]);
  checkBuffer(await echo(socket, small), small, 'echo of a Buffer');

  const empty = Buffer.alloc(0);
  checkBuffer(await echo(socket, empty), empty, 'echo of an empty Buffer');

  const large = Buffer.alloc(200 * 1024);
  for (let i = 0; i < large.length; i++) large[i] = (i * 31 + 7) & 0xff;
  checkBuffer(await echo(socket, large), large, 'echo of a 200 KB Buffer');

  const a = Buffer.from('first buffer é', 'utf8');
  const b = Buffer.from([9, 8, 7, 0x1e, 0x0a, 0x00]);
  const obj = await echo(socket, { a, nested: { list: ['text', b, 42] }, n: 1 });
  check(obj && typeof obj === 'object', `echo of an object with buffers gave ${show(obj)}`);
  checkBuffer(obj.a, a, 'object.a');
  checkBuffer(obj.nested?.list?.[1], b, 'object.nested.list[1]');
  checkEqual(obj.n, 1, 'object.n');
  checkEqual(obj.nested.list[0], 'text', 'object.nested.list[0]');
  checkEqual(obj.nested.list[2], 42, 'object.nested.list[2]');

  // Publish binary into a room; both members receive it (the sender included).
  const other = await connectV4('/');
  const room = uniqueName('bin');
  await join(socket, room);
  await join(other, room);
  const payload = Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0x1e]);
  const gotSelf = waitFor(socket, 'message');
  const gotOther = waitFor(other, 'message');
  await emitAck(socket, 'publish', [room, payload]);
  checkBuffer((await gotSelf)[0], payload, 'published Buffer received by the sender');
  checkBuffer((await gotOther)[0], payload, 'published Buffer received by the other member');

  const mixed = { kind: 'mixed', data: Buffer.from('xyz') };
  const gotMixed = waitFor(socket, 'message');
  const gotMixedOther = waitFor(other, 'message');
  other.emit('publish', room, mixed);
  for (const [who, p] of [['publisher', gotMixedOther], ['other member', gotMixed]]) {
    const [m] = await p;
    checkEqual(m?.kind, 'mixed', `published object kind (${who})`);
    checkBuffer(m.data, mixed.data, `published object data (${who})`);
  }
});
