// Scenario 6 (socket.io-client 4): rooms across shards. Opens clients (at most 40) until at least
// two sit on each shard (by the shard in socket.id), joins them all to one room, and publishes
// from a member on each shard and from a non-member: every member receives each message exactly
// once, a client that joined then left receives nothing, a client that never joined receives
// nothing, and a publisher that is not a member does not receive its own message.
// Usage: node v4_rooms.mjs [default|polling|websocket]
import { run, openSpread, connectV4, join, leave, emitAck, until, sleep, checkEqual, check, shardOf, EXTERNAL, SHARDS, uniqueName } from './lib.mjs';

run('v4 rooms across shards', async () => {
  const members = await openSpread(2, 40);
  const leaver = await connectV4('/');
  const outsider = await connectV4('/');
  const outsidePublisher = await connectV4('/');
  const room = uniqueName('room');

  const received = new Map();
  for (const socket of [...members, leaver, outsider, outsidePublisher]) {
    received.set(socket, []);
    socket.on('message', (m) => received.get(socket).push(m));
  }
  await Promise.all(members.map((s) => join(s, room)));
  await join(leaver, room);
  await leave(leaver, room);

  // One member publisher per shard (any two members when external), then a non-member.
  const publishers = [];
  for (let shard = 0; shard < SHARDS; shard++) {
    const p = EXTERNAL ? members[shard] : members.find((s) => shardOf(s.id) === shard);
    check(p, `no member on shard ${shard}`);
    publishers.push(p);
  }
  publishers.push(outsidePublisher);
  const sent = [];
  for (const [i, p] of publishers.entries()) {
    const msg = { from: i, id: p.id, text: `hello from publisher ${i}` };
    sent.push(msg);
    await emitAck(p, 'publish', [room, msg]);
  }

  await until(
    () => members.every((s) => received.get(s).length >= sent.length),
    5000,
    `every member to receive ${sent.length} messages`,
  );
  await sleep(300); // room for duplicates or strays to show up
  for (const [i, s] of members.entries()) {
    const where = EXTERNAL ? '' : ` (shard ${shardOf(s.id)})`;
    // Publishers on different connections have no mutual order: compare sorted by publisher.
    const got = [...received.get(s)].sort((x, y) => (x?.from ?? -1) - (y?.from ?? -1));
    checkEqual(got, sent, `messages received by member ${i}${where}`);
  }
  checkEqual(received.get(leaver), [], 'messages received by the client that left');
  checkEqual(received.get(outsider), [], 'messages received by the client that never joined');
  checkEqual(received.get(outsidePublisher), [], 'messages received by the publisher that is not a member');
});
