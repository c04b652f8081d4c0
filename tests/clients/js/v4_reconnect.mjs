// Scenario 9 (socket.io-client 4): a client-side disconnect then connect() gives a new, working
// socket; an abrupt transport close (engine.close()) is followed by automatic reconnection and a
// working echo (including room membership being re-established by a new join).
// Usage: node v4_reconnect.mjs [default|polling|websocket]
import { run, connectV4, echo, waitFor, check, checkEqual, checkRingcastId, join, emitAck, uniqueName } from './lib.mjs';

run('v4 disconnect and reconnect', async () => {
  const socket = await connectV4('/', {
    reconnection: true,
    reconnectionAttempts: 20,
    reconnectionDelay: 100,
    reconnectionDelayMax: 300,
    randomizationFactor: 0,
  });
  const firstId = socket.id;
  checkEqual(await echo(socket, 'first'), 'first', 'echo before disconnect');

  // Manual disconnect, then connect again.
  const [reason] = await Promise.all([waitFor(socket, 'disconnect').then((a) => a[0]), socket.disconnect()]);
  checkEqual(reason, 'io client disconnect', 'manual disconnect reason');
  socket.connect();
  await waitFor(socket, 'connect', 5000, 'connect after connect()');
  const secondId = socket.id;
  checkRingcastId(secondId, 'socket.id after connect()');
  check(secondId !== firstId, `reconnected socket kept its id ${firstId}`);
  checkEqual(await echo(socket, 'second'), 'second', 'echo after manual reconnect');

  // Abrupt close of the transport: the Manager reconnects by itself.
  const room = uniqueName('reco');
  await join(socket, room);
  const dropped = waitFor(socket, 'disconnect', 5000, 'disconnect after engine.close()');
  const back = waitFor(socket, 'connect', 10000, 'automatic reconnection');
  socket.io.engine.close();
  const [dropReason] = await dropped;
  check(dropReason !== 'io client disconnect' && dropReason !== 'io server disconnect', `abrupt close reported as ${dropReason}`);
  await back;
  check(socket.connected, 'not connected after reconnection');
  const thirdId = socket.id;
  checkRingcastId(thirdId, 'socket.id after automatic reconnection');
  check(thirdId !== secondId, `automatically reconnected socket kept its id ${secondId}`);
  checkEqual(await echo(socket, 'third'), 'third', 'echo after automatic reconnection');

  // The new socket is a new member: rejoin and receive a publish.
  await join(socket, room);
  const got = waitFor(socket, 'message');
  await emitAck(socket, 'publish', [room, 'back']);
  checkEqual((await got)[0], 'back', 'publish after reconnection');
});
