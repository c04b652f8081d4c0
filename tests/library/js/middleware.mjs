// Connect middleware: auth.token must be "secret". v4 clients get connect_error with message
// and data; v2 clients (Engine.IO 3) on a namespace with a query get an "error" event.
import assert from 'node:assert/strict';
import { connect, connectV2, connected, once, run } from './common.mjs';

async function refusal(socket) {
  const [err] = await once(socket, 'connect_error');
  return err;
}

run(async () => {
  const bad = await refusal(connect('/', { auth: { token: 'bad' } }));
  assert.equal(bad.message, 'not authorized');
  assert.deepEqual(bad.data, { code: 42 });

  const anonymous = await refusal(connect('/'));
  assert.equal(anonymous.message, 'not authorized');

  const malformed = await refusal(connect('/', { auth: { token: 5 } }));
  assert.equal(malformed.message, 'invalid auth');
  assert.equal(malformed.data, undefined);

  const auth = { token: 'secret', user: 'ann' };
  const good = connect('/', { auth });
  const [welcome] = await once(good, 'welcome');
  assert.deepEqual(welcome, auth);
  assert.ok(good.connected);

  const v2Bad = connectV2('/private?token=bad');
  const [v2Error] = await once(v2Bad, 'error');
  assert.equal(v2Error, 'not authorized');

  const v2Good = connectV2('/private?token=secret');
  const [v2Welcome] = await once(v2Good, 'welcome');
  assert.deepEqual(v2Welcome, { token: 'secret' });
  await connected(v2Good, 'error');
});
