// Scenario 8 (raw HTTP + ws): every request on a fresh TCP connection, so with SO_REUSEPORT many
// land on a shard that does not own the session and must be forwarded.
//  - An EIO=4 polling session: handshake, CONNECT by POST, then 20 rounds of POST echo-with-ack
//    and GET of the ack.
//  - 10 times: polling handshake + CONNECT, then a WebSocket with that sid on a fresh connection,
//    probe and upgrade (2probe -> 3probe, 5), then an echo over the WebSocket. In half of the
//    rounds a long-poll GET is pending during the probe and must be released (noop) before the
//    upgrade completes, as real clients rely on.
// Usage: node raw_polling.mjs
import WebSocket from 'ws';
import { run, BASE_URL, check, checkEqual, checkRingcastId, fail, withTimeout, show, freshRequest } from './lib.mjs';

const ROUNDS = 20;
const UPGRADES = 10;
const REQUEST_MS = 5000;
const RS = '\x1e';
const base = new URL(BASE_URL);

/** One HTTP request on its own TCP connection (agent: false, Connection: close). */
/** One request on its own connection; the body as text. */
async function request(method, query, body) {
  const res = await freshRequest(method, query, body, 'text/plain;charset=UTF-8', REQUEST_MS);
  return { status: res.status, body: res.body.toString('utf8') };
}

let cacheBuster = 0;
const q = (sid) => `EIO=4&transport=polling&t=${(cacheBuster++).toString(36)}${sid ? `&sid=${sid}` : ''}`;

async function post(sid, body, what) {
  const res = await request('POST', q(sid), body);
  check(res.status === 200 && res.body === 'ok', `${what}: POST answered ${res.status} ${show(res.body)}`);
}

/** GETs until a packet matching `want` arrives (pings are answered; at most 5 GETs). */
async function getPacket(sid, want, what) {
  for (let i = 0; i < 5; i++) {
    const res = await request('GET', q(sid));
    check(res.status === 200, `${what}: GET answered ${res.status} ${show(res.body)}`);
    const packets = res.body.split(RS);
    for (const p of packets) {
      if (p === '2') await post(sid, '3', `${what} (pong)`);
    }
    const hit = packets.find(want);
    if (hit !== undefined) return hit;
    if (!packets.every((p) => p === '2' || p === '6')) fail(`${what}: unexpected GET body ${show(res.body)}`);
  }
  fail(`${what}: no matching packet after 5 GETs`);
}

async function openSession(what) {
  const res = await request('GET', q());
  check(res.status === 200 && res.body.startsWith('0{'), `${what}: handshake answered ${res.status} ${show(res.body)}`);
  const open = JSON.parse(res.body.slice(1));
  checkRingcastId(open.sid, `${what}: sid`);
  checkEqual(open.upgrades, ['websocket'], `${what}: upgrades`);
  await post(open.sid, '40', `${what}: CONNECT`);
  const connect = await getPacket(open.sid, (p) => p.startsWith('40'), `${what}: CONNECT reply`);
  const sockId = JSON.parse(connect.slice(2)).sid;
  checkRingcastId(sockId, `${what}: socket id`);
  return open.sid;
}

/** A WebSocket client whose messages are read one at a time with a bound. */
function openWs(sid) {
  const url = `ws://${base.host}/socket.io/?EIO=4&transport=websocket&sid=${sid}`;
  const ws = new WebSocket(url);
  const queue = [];
  const waiters = [];
  let closed = null;
  ws.on('message', (data, isBinary) => {
    const msg = isBinary ? data : data.toString('utf8');
    const w = waiters.shift();
    if (w) w(msg);
    else queue.push(msg);
  });
  ws.on('close', (code) => {
    closed = code;
    while (waiters.length) waiters.shift()(null);
  });
  const opened = withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (_, res) => reject(new Error(`WebSocket upgrade answered HTTP ${res.statusCode}`)));
    }),
    REQUEST_MS,
    'WebSocket open',
  );
  const next = (what) =>
    withTimeout(
      new Promise((resolve) => {
        if (queue.length) resolve(queue.shift());
        else if (closed !== null) resolve(null);
        else waiters.push(resolve);
      }),
      REQUEST_MS,
      what,
    ).then((m) => {
      if (m === null) fail(`${what}: WebSocket closed (code ${closed})`);
      return m;
    });
  return { ws, opened, next };
}

run('raw polling and upgrades on fresh connections', async () => {
  const sid = await openSession('polling session');
  for (let i = 1; i <= ROUNDS; i++) {
    await post(sid, `42${i}["echo","n${i}"]`, `round ${i}`);
    const ack = await getPacket(sid, (p) => p.startsWith(`43${i}[`), `round ${i}: ack`);
    checkEqual(JSON.parse(ack.slice(`43${i}`.length)), [`n${i}`], `round ${i}: ack arguments`);
  }

  for (let i = 1; i <= UPGRADES; i++) {
    const what = `upgrade ${i}`;
    const usid = await openSession(what);
    const pendingPoll = i % 2 === 0 ? request('GET', q(usid)) : null;
    const { ws, opened, next } = openWs(usid);
    try {
      await opened;
      ws.send('2probe');
      checkEqual(await next(`${what}: probe answer`), '3probe', `${what}: probe answer`);
      if (pendingPoll) {
        const res = await pendingPoll;
        check(res.status === 200, `${what}: pending GET answered ${res.status} ${show(res.body)}`);
        check(res.body.split(RS).every((p) => p === '6'), `${what}: pending GET released with ${show(res.body)}, expected noop`);
      }
      ws.send('5');
      ws.send(`42${i}["echo","w${i}"]`);
      let reply = await next(`${what}: echo ack`);
      while (reply === '2' || reply === '6') {
        if (reply === '2') ws.send('3');
        reply = await next(`${what}: echo ack`);
      }
      check(typeof reply === 'string' && reply.startsWith(`43${i}[`), `${what}: expected the echo ack over WebSocket, got ${show(reply)}`);
      checkEqual(JSON.parse(reply.slice(`43${i}`.length)), [`w${i}`], `${what}: echo ack arguments over WebSocket`);
    } finally {
      ws.terminate();
    }
  }
}, 30000);
