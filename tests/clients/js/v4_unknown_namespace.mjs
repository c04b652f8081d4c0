// Scenario 2 (socket.io-client 4): connecting to an unknown namespace yields connect_error with
// the message "Invalid namespace", while the main namespace on the same Manager still works.
// Usage: node v4_unknown_namespace.mjs [default|polling|websocket]
import { run, track, Manager, BASE_URL, transportOptions, waitFor, checkEqual, check, connectV4, echo } from './lib.mjs';

run('v4 unknown namespace', async () => {
  // Alone on its own connection.
  const lone = await connectV4('/nope').then(
    () => null,
    (err) => err,
  );
  check(lone !== null, 'connecting to /nope succeeded');
  checkEqual(lone.message, 'connect_error on /nope: Invalid namespace', 'connect_error');

  // Beside a working namespace on one multiplexed Manager.
  const manager = new Manager(BASE_URL, { reconnection: false, ...transportOptions() });
  const main = track(manager.socket('/'));
  const nope = track(manager.socket('/nope'));
  const [err] = await waitFor(nope, 'connect_error');
  checkEqual(err.message, 'Invalid namespace', 'connect_error message on /nope');
  check(!nope.connected, '/nope reports connected');
  if (!main.connected) await waitFor(main, 'connect');
  checkEqual(await echo(main, 'still here'), 'still here', 'echo on / beside a refused namespace');
});
