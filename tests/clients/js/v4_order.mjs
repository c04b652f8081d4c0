// Scenario 7 (socket.io-client 4): per-sender order. Six members spread over the shards; two of
// them (on different shards) each publish 500 sequenced messages without waiting; every member
// must receive each publisher's messages strictly in order, none lost, none duplicated.
// Usage: node v4_order.mjs [default|polling|websocket]
import { run, openSpread, pickPerShard, join, emitAck, until, sleep, check, checkEqual, fail, shardOf, EXTERNAL, SHARDS, uniqueName } from './lib.mjs';

const PER_PUBLISHER = 500;

run(
  'v4 per-sender order',
  async () => {
    const perShard = Math.ceil(6 / SHARDS);
    const members = pickPerShard(await openSpread(perShard, 40), perShard);
    const room = uniqueName('order');
    const state = new Map();
    for (const socket of members) {
      const next = [0, 0];
      state.set(socket, { next, errors: [] });
      socket.on('message', (m) => {
        const st = state.get(socket);
        if (!m || typeof m.p !== 'number' || typeof m.seq !== 'number' || !(m.p in next)) {
          st.errors.push(`unexpected message ${JSON.stringify(m)}`);
        } else if (m.seq !== next[m.p]) {
          st.errors.push(`publisher ${m.p}: got seq ${m.seq}, expected ${next[m.p]}`);
          next[m.p] = m.seq + 1;
        } else {
          next[m.p] += 1;
        }
      });
    }
    await Promise.all(members.map((s) => join(s, room)));

    // Publishers on the first and the last shard (any two members when external).
    const publishers = EXTERNAL
      ? [members[0], members[members.length - 1]]
      : [members.find((s) => shardOf(s.id) === 0), members.find((s) => shardOf(s.id) === SHARDS - 1)];
    check(publishers.every(Boolean), 'no member on the first or the last shard');
    for (let seq = 0; seq < PER_PUBLISHER; seq++) {
      publishers.forEach((p, i) => p.emit('publish', room, { p: i, seq, pad: 'é€😀' }));
    }
    // A final acked publish from each, so a lost ack path shows up too.
    await Promise.all(publishers.map((p) => emitAck(p, 'echo', ['flush'], 15000)));

    await until(
      () => members.every((s) => state.get(s).errors.length > 0 || state.get(s).next.every((n) => n >= PER_PUBLISHER)),
      15000,
      `every member to receive ${PER_PUBLISHER} messages from each publisher`,
    ).catch((err) => {
      const progress = members.map((s) => state.get(s).next.join('/')).join(', ');
      fail(`${err.message}; progress per member: ${progress}`);
    });
    await sleep(200);
    for (const [i, s] of members.entries()) {
      const st = state.get(s);
      const where = EXTERNAL ? '' : ` (shard ${shardOf(s.id)})`;
      if (st.errors.length) fail(`member ${i}${where}: ${st.errors.slice(0, 5).join('; ')}`);
      checkEqual(st.next, [PER_PUBLISHER, PER_PUBLISHER], `messages per publisher at member ${i}${where}`);
    }
  },
  30000,
);
