// Disconnects from both sides. Prints the ids of the sockets so that the test can match them
// with the reasons the server's disconnect handler saw.
import assert from 'node:assert/strict';
import { connect, connected, once, run } from './common.mjs';

run(async () => {
  const kicked = await connected(connect());
  const left = await connected(connect());
  const clientClose = await connected(connect('/', { transports: ['polling'] }));
  const wsClose = await connected(connect());
  const dropped = await connected(connect());
  const serverClose = await connected(connect());
  const ids = {
    kicked: kicked.id,
    left: left.id,
    clientClose: clientClose.id,
    wsClose: wsClose.id,
    dropped: dropped.id,
    serverClose: serverClose.id,
  };

  kicked.emit('kick');
  const [kickedReason] = await once(kicked, 'disconnect');
  assert.equal(kickedReason, 'io server disconnect');

  const leftReason = once(left, 'disconnect');
  left.disconnect();
  assert.equal((await leftReason)[0], 'io client disconnect');

  // Over polling the client sends an Engine.IO close packet; over websocket a close frame.
  clientClose.io.engine.close();
  wsClose.io.engine.close();
  // The TCP connection dies without a close packet or frame.
  dropped.io.engine.transport.ws.terminate();

  serverClose.emit('close-me');
  const [serverCloseReason] = await once(serverClose, 'disconnect');
  assert.equal(serverCloseReason, 'transport close');

  console.log(JSON.stringify(ids));
});
