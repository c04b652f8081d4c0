// Connect middleware: auth.token must be "secret". v4 clients get connect_error with message
// and data; v2 clients (Engine.IO 3) on a namespace with a query get an "error" event.
// Every client connects at once, before any refusal closes a connection.
import assert from 'node:assert/strict';
import { connect, connectV2, connected, once, run } from './common.mjs';

run(async () => {
  const auth = { token: 'secret', user: 'ann' };
  const good = connect('/', { auth });
  const refused = [
    connect('/', { auth: { token: 'bad' } }),
    connect('/'),
    connect('/', { auth: { token: 5 } }),
  ];
  const v2Bad = connectV2('/private?token=bad');
  const v2Good = connectV2('/private?token=secret');
  const welcome = once(good, 'welcome');
  const refusals = Promise.all(refused.map((socket) => once(socket, 'connect_error')));
  const v2Refusal = once(v2Bad, 'error');
  const v2Welcome = once(v2Good, 'welcome');

  assert.deepEqual((await welcome)[0], auth);
  assert.ok(good.connected);

  const [[bad], [anonymous], [malformed]] = await refusals;
  assert.equal(bad.message, 'not authorized');
  assert.deepEqual(bad.data, { code: 42 });
  assert.equal(anonymous.message, 'not authorized');
  assert.deepEqual(anonymous.data, { code: 42 });
  assert.equal(malformed.message, 'invalid auth');
  assert.equal(malformed.data, undefined);

  assert.equal((await v2Refusal)[0], 'not authorized');
  assert.deepEqual((await v2Welcome)[0], { token: 'secret' });
  await connected(v2Good, 'error');
});
