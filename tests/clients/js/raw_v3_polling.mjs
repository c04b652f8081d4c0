// Scenario 11b (raw HTTP, Engine.IO v3): the XHR2 binary polling framing that browser
// socket.io-client 2.x uses (Node's v2 client always falls back to base64, so it can't cover it).
// Every request is on a fresh TCP connection, so many land on a non-owner shard. Opens an EIO=3
// session without b64, waits for the implicit "/" CONNECT, then 10 rounds (alternating "/" and
// "/chat") of a binary echo POSTed as a binary payload, whose binary ack is read back from a
// binary GET payload.
// Usage: node raw_v3_polling.mjs
import { run, check, checkEqual, checkRingcastId, fail, show, freshRequest } from './lib.mjs';

const ROUNDS = 10;

const request = freshRequest;

let t = 0;
const q = (sid) => `EIO=3&transport=polling&t=${(t++).toString(36)}${sid ? `&sid=${sid}` : ''}`;

/** Engine.IO v3 payload: text ("<len>:<packet>", len in UTF-16 units) or binary framing. */
function decodePayload(res) {
  const packets = [];
  if (res.type.startsWith('application/octet-stream')) {
    const buf = res.body;
    let i = 0;
    while (i < buf.length) {
      const isBinary = buf[i++];
      check(isBinary === 0 || isBinary === 1, `bad binary payload marker ${isBinary} in ${show(buf)}`);
      let len = 0;
      while (i < buf.length && buf[i] !== 0xff) {
        check(buf[i] <= 9, `bad length digit ${buf[i]} in binary payload`);
        len = len * 10 + buf[i++];
      }
      i += 1; // 0xff
      const data = buf.subarray(i, i + len);
      check(data.length === len, 'truncated binary payload');
      i += len;
      packets.push(isBinary ? data : data.toString('utf8'));
    }
    return packets;
  }
  const text = res.body.toString('utf8');
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    check(colon > i, `bad text payload ${show(text)}`);
    const len = Number(text.slice(i, colon));
    check(Number.isInteger(len), `bad length in text payload ${show(text)}`);
    packets.push(text.slice(colon + 1, colon + 1 + len));
    i = colon + 1 + len;
  }
  return packets;
}

/** A binary payload of one text packet then one binary packet (the XHR2 framing). */
function encodeBinaryPayload(textPacket, binary) {
  const frame = (marker, data) => {
    const digits = String(data.length).split('').map(Number);
    return Buffer.concat([Buffer.from([marker, ...digits, 0xff]), data]);
  };
  return Buffer.concat([frame(0, Buffer.from(textPacket, 'utf8')), frame(1, Buffer.concat([Buffer.from([4]), binary]))]);
}

async function poll(sid, what) {
  const res = await request('GET', q(sid));
  check(res.status === 200, `${what}: GET answered ${res.status} ${show(res.body.toString())}`);
  return decodePayload(res);
}

run('raw EIO=3 binary polling', async () => {
  const hs = await request('GET', q());
  check(hs.status === 200, `handshake answered ${hs.status}`);
  const first = decodePayload(hs);
  check(first[0]?.startsWith?.('0{'), `handshake payload ${show(first)}`);
  const open = JSON.parse(first[0].slice(1));
  const sid = open.sid;
  checkRingcastId(sid, 'EIO=3 sid');
  checkEqual([typeof open.pingInterval, typeof open.pingTimeout], ['number', 'number'], 'handshake ping fields');

  // The implicit "/" CONNECT comes with the handshake or on the next GET.
  let pending = first.slice(1);
  for (let i = 0; !pending.includes('40') && i < 3; i++) pending = pending.concat(await poll(sid, 'implicit CONNECT'));
  check(pending.includes('40'), `no implicit CONNECT "40" for EIO=3: ${show(pending)}`);

  // Join /chat (protocol v4: "40/chat" with no payload; the reply is "40/chat").
  let res = await request('POST', q(sid), Buffer.from('8:40/chat,'), 'text/plain;charset=UTF-8');
  check(res.status === 200, `CONNECT /chat POST answered ${res.status}`);
  let got = [];
  for (let i = 0; !got.some((p) => typeof p === 'string' && p.startsWith('40/chat')) && i < 3; i++) got = got.concat(await poll(sid, 'CONNECT /chat'));
  check(got.some((p) => typeof p === 'string' && p.startsWith('40/chat')), `no CONNECT reply for /chat: ${show(got)}`);

  for (let round = 1; round <= ROUNDS; round++) {
    const nsp = round % 2 ? '' : '/chat,';
    const what = `round ${round} (${nsp || '/'})`;
    const bytes = Buffer.from([round, 0, 0xff, 0x1e, 0x3a, 4, round * 7]);
    const body = encodeBinaryPayload(`451-${nsp}${round}["echo",{"_placeholder":true,"num":0}]`, bytes);
    res = await request('POST', q(sid), body, 'application/octet-stream');
    check(res.status === 200 && res.body.toString() === 'ok', `${what}: POST answered ${res.status} ${show(res.body.toString())}`);
    let packets = [];
    for (let i = 0; packets.length < 2 && i < 5; i++) {
      packets = packets.concat((await poll(sid, what)).filter((p) => p !== '6' && p !== '3'));
    }
    check(packets.length === 2, `${what}: expected the ack and its attachment, got ${show(packets)}`);
    const head = `461-${nsp}${round}[`;
    check(typeof packets[0] === 'string' && packets[0].startsWith(head), `${what}: expected a BINARY_ACK starting ${head}, got ${show(packets[0])}`);
    checkEqual(JSON.parse(packets[0].slice(head.length - 1)), [{ _placeholder: true, num: 0 }], `${what}: BINARY_ACK arguments`);
    check(Buffer.isBuffer(packets[1]), `${what}: attachment is not binary: ${show(packets[1])}`);
    checkEqual(packets[1][0], 4, `${what}: attachment's Engine.IO packet type`);
    check(packets[1].subarray(1).equals(bytes), `${what}: attachment differs: ${show(packets[1])}`);
  }
  await request('POST', q(sid), Buffer.from('1:1'), 'text/plain;charset=UTF-8').catch(() => fail('close POST failed'));
});
