// Scenario 1 (socket.io-client 4): connect with auth, socket.id is set and has ringcast's shape,
// an echo works, and a client-side disconnect is clean. Usage: node v4_connect.mjs [default|polling|websocket]
import { run, until, connectV4, checkRingcastId, check, checkEqual, echo, waitFor, EXTERNAL, shardOf, MODE } from './lib.mjs';

run('v4 connect with auth', async () => {
  for (const nsp of ['/', '/chat']) {
    const socket = await connectV4(nsp, { auth: { token: 'x' } });
    checkRingcastId(socket.id, `socket.id on ${nsp}`);
    const engine = socket.io.engine;
    checkRingcastId(engine.id, 'engine sid');
    check(socket.id !== engine.id, `socket.id equals the engine sid ${engine.id} (v5 ids must differ)`);
    if (!EXTERNAL) {
      checkEqual(shardOf(socket.id), shardOf(engine.id), 'shard of socket.id vs shard of engine sid');
    }
    if (MODE === 'websocket') checkEqual(engine.transport.name, 'websocket', 'transport');
    if (MODE === 'default') {
      // The client probes and upgrades to WebSocket on its own; it must get there.
      await until(() => engine.transport.name === 'websocket', 5000, 'the upgrade from polling to websocket');
    }
    if (MODE === 'polling') checkEqual(engine.transport.name, 'polling', 'transport');
    checkEqual(await echo(socket, 'hello'), 'hello', `echo on ${nsp}`);

    const closed = waitFor(socket, 'disconnect');
    socket.disconnect();
    const [reason] = await closed;
    checkEqual(reason, 'io client disconnect', 'disconnect reason');
    check(!socket.connected, 'socket still connected after disconnect()');
    check(socket.id === undefined, 'socket.id still set after disconnect()');
  }
});
