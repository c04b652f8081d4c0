// permessage-deflate (socket.io-client 4 over `ws`, which offers it by default), against a server
// started with --per-message-deflate: the server answers the offer; 2 KB messages both ways and
// a 2 KB room broadcast arrive intact at websocket and polling clients; and the frames a raw `ws`
// client reads carry RSV1 for large messages only.
// Usage: node v4_deflate.mjs
import { createRequire } from 'node:module';
import { run, connectV4, echo, join, emitAck, until, check, checkEqual, uniqueName, BASE_URL, withTimeout, track } from './lib.mjs';

const require = createRequire(import.meta.url);
const WebSocket = require('ws');

/** The frames in raw server bytes: [{ rsv1, opcode, length }]. */
function parseFrames(bytes) {
  const frames = [];
  let at = 0;
  while (at + 2 <= bytes.length) {
    const first = bytes[at];
    let len = bytes[at + 1] & 0x7f;
    let header = 2;
    if (len === 126) {
      if (at + 4 > bytes.length) break;
      len = bytes.readUInt16BE(at + 2);
      header = 4;
    } else if (len === 127) {
      if (at + 10 > bytes.length) break;
      len = Number(bytes.readBigUInt64BE(at + 2));
      header = 10;
    }
    if (at + header + len > bytes.length) break;
    frames.push({ rsv1: (first & 0x40) !== 0, opcode: first & 0x0f, length: len });
    at += header + len;
  }
  return frames;
}

run('permessage-deflate', async () => {
  const room = uniqueName('deflate');
  // A 2 KB JSON-like payload (compressible, as real messages are).
  const big = { items: Array.from({ length: 48 }, (_, i) => ({ id: i, name: `item number ${i}`, ok: i % 2 === 0 })) };
  const bigText = JSON.stringify(big);
  check(bigText.length >= 2000, `payload is ${bigText.length} bytes`);

  const wsClient = await connectV4('/', { transports: ['websocket'] });
  const upgraded = await connectV4('/', {});
  const pollClient = await connectV4('/', { transports: ['polling'] });
  const ws = wsClient.io.engine.transport.ws;
  checkEqual(ws.extensions, 'permessage-deflate', 'extension negotiated by socket.io-client');
  await until(() => upgraded.io.engine.transport.name === 'websocket', 5000, 'the default client to upgrade');
  checkEqual(upgraded.io.engine.transport.ws.extensions, 'permessage-deflate', 'extension negotiated after upgrade');

  // Both ways: the client compresses its 2 KB emit, the server its 2 KB ack.
  checkEqual(await echo(wsClient, big), big, '2 KB echo over a compressed websocket');
  checkEqual(await echo(upgraded, bigText), bigText, '2 KB echo after upgrade');
  checkEqual(await echo(wsClient, 'small'), 'small', 'small echo');

  // A broadcast reaches compressed and uncompressed clients intact.
  const got = { wsClient: [], upgraded: [], pollClient: [] };
  const clients = { wsClient, upgraded, pollClient };
  for (const [name, s] of Object.entries(clients)) {
    s.on('message', (m) => got[name].push(m));
    await join(s, room);
  }
  for (let i = 0; i < 3; i++) await emitAck(pollClient, 'publish', [room, { ...big, n: i }]);
  await until(() => Object.values(got).every((l) => l.length === 3), 5000, 'every client to receive 3 broadcasts');
  for (const [name, l] of Object.entries(got)) {
    checkEqual(l, [0, 1, 2].map((n) => ({ ...big, n })), `broadcasts at ${name}`);
  }

  // A raw `ws` client asking for the extension: large frames carry RSV1, small ones don't.
  const url = `${BASE_URL.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`;
  const raw = new WebSocket(url, { perMessageDeflate: { threshold: 0 } });
  track({ disconnect: () => raw.terminate() });
  const rawBytes = [];
  const messages = [];
  raw.on('upgrade', (res) => {
    checkEqual(
      res.headers['sec-websocket-extensions'],
      'permessage-deflate; server_no_context_takeover; client_no_context_takeover',
      'the 101 answer',
    );
  });
  raw.on('message', (data) => messages.push(data.toString()));
  await withTimeout(new Promise((resolve, reject) => { raw.once('open', resolve); raw.once('error', reject); }), 5000, 'raw ws open');
  raw._socket.prependListener('data', (chunk) => rawBytes.push(chunk));
  raw.send('40');
  await until(() => messages.some((m) => m.startsWith('40{')), 5000, 'raw CONNECT ack');
  raw.send(`421["echo",${JSON.stringify(bigText)}]`);
  raw.send('422["echo","tiny"]');
  await until(() => messages.some((m) => m.startsWith('432')), 5000, 'raw echoes');
  checkEqual(messages.find((m) => m.startsWith('431')), `431[${JSON.stringify(bigText)}]`, 'raw large echo');
  const frames = parseFrames(Buffer.concat(rawBytes)).filter((f) => f.opcode === 1);
  // (The open packet may or may not be among them, and the CONNECT ack is:) the last two are
  // the large echo and the small one, and only the large one is compressed.
  checkEqual(frames.slice(-2).map((f) => f.rsv1), [true, false], 'RSV1 on the large echo, not the small one');
  checkEqual(frames.filter((f) => f.rsv1).length, 1, 'compressed frames');
  const large = frames[frames.length - 2];
  check(large.length < bigText.length / 2, `the large echo went as ${large.length} bytes for ${bigText.length}`);
  raw.close();
});
