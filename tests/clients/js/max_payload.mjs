// Scenario 10 (socket.io-client 4), against a server started with --max-payload 2000: a
// websocket client and a polling client each emit a 5000-byte string and are disconnected, while
// a third client in the same room keeps publishing and receiving before and after.
// Usage: node max_payload.mjs
import { run, connectV4, echo, join, emitAck, waitFor, until, sleep, check, checkEqual, uniqueName } from './lib.mjs';

run('max payload', async () => {
  const room = uniqueName('maxp');
  const watcher = await connectV4('/');
  const wsClient = await connectV4('/', { transports: ['websocket'] });
  const pollClient = await connectV4('/', { transports: ['polling'] });
  const clients = { watcher, wsClient, pollClient };
  const got = {};
  for (const [name, s] of Object.entries(clients)) {
    got[name] = [];
    s.on('message', (m) => got[name].push(m));
    await join(s, room);
  }
  checkEqual(pollClient.io.engine.transport.name, 'polling', 'polling client transport');
  checkEqual(wsClient.io.engine.transport.name, 'websocket', 'websocket client transport');

  // Under the limit everything works, for every client.
  const fits = 'f'.repeat(1500);
  for (const [name, s] of Object.entries(clients)) checkEqual(await echo(s, fits), fits, `1500-byte echo by ${name}`);
  await emitAck(watcher, 'publish', [room, 'before']);
  await until(() => Object.values(got).every((l) => l.length === 1), 5000, 'all three to receive "before"');
  for (const [name, l] of Object.entries(got)) checkEqual(l, ['before'], `messages at ${name} before`);

  const tooBig = 'x'.repeat(5000);
  for (const name of ['wsClient', 'pollClient']) {
    const s = clients[name];
    const dropped = waitFor(s, 'disconnect', 5000, `${name} to be disconnected after a 5000-byte emit`);
    let acked = false;
    s.emit('echo', tooBig, () => {
      acked = true;
    });
    const [reason] = await dropped;
    check(!acked, `${name}: the oversize echo was acked`);
    check(reason !== 'io client disconnect', `${name} disconnect reason ${reason}`);

    // The watcher is unaffected.
    checkEqual(await echo(watcher, `alive after ${name}`), `alive after ${name}`, `watcher echo after ${name} was dropped`);
  }

  got.watcher.length = 0;
  await emitAck(watcher, 'publish', [room, 'after']);
  await until(() => got.watcher.length >= 1, 5000, 'the watcher to receive "after"');
  await sleep(200);
  checkEqual(got.watcher, ['after'], 'messages at the watcher after');
  checkEqual(got.wsClient, ['before'], 'messages at the dropped websocket client');
  checkEqual(got.pollClient, ['before'], 'messages at the dropped polling client');
});
