// Dynamic namespaces: /dyn-1 and /dyn-2 are created on first use (also multiplexed on one
// connection), each with its own "room"; /other is not admitted.
import assert from 'node:assert/strict';
import { connect, once, run, sleep, until } from './common.mjs';

run(async () => {
  const a1 = connect('/dyn-1');
  const a2 = connect('/dyn-1');
  const b1 = connect('/dyn-2');
  // A second namespace on a1's connection.
  const b2 = a1.io.socket('/dyn-2');
  b2.connect();

  const sockets = [a1, a2, b1, b2];
  const names = ['/dyn-1', '/dyn-1', '/dyn-2', '/dyn-2'];
  const hellos = await Promise.all(sockets.map((socket) => once(socket, 'hello')));
  assert.deepEqual(hellos.map(([nsp]) => nsp), names);

  const said = sockets.map((socket) => {
    const got = [];
    socket.on('said', (nsp, text) => got.push([nsp, text]));
    return got;
  });
  a1.emit('say', 'x');
  b1.emit('say', 'y');
  await until(() => said.every((got) => got.length >= 1), 'every socket to hear its room');
  // Give a leak across namespaces the time to show up.
  await sleep(200);
  const heard = ['x', 'x', 'y', 'y'];
  said.forEach((got, i) => assert.deepEqual(got, [[names[i], heard[i]]], `socket ${i}`));

  const other = connect('/other');
  const [err] = await once(other, 'connect_error');
  assert.equal(err.message, 'Invalid namespace');
});
