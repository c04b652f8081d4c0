// Server-side emit with ack: on connect the server asks "question" (ack timeout 2 s) and
// reports each outcome back as "ack-result". One client answers, one stays silent (timeout),
// one disconnects instead of answering.
import assert from 'node:assert/strict';
import { connect, connected, once, run } from './common.mjs';

run(async () => {
  const answering = connect();
  answering.on('question', (question, ack) => ack(`answer:${question}`));
  const silent = connect();
  silent.on('question', () => {});
  const leaving = connect();
  leaving.on('question', () => leaving.disconnect());

  const [answer] = await once(answering, 'ack-result');
  assert.deepEqual(answer, { answer: 'answer:q' });

  await connected(silent);
  const asked = Date.now();
  const [timeout] = await once(silent, 'ack-result', 5000);
  assert.deepEqual(timeout, { error: 'operation has timed out' });
  const waited = Date.now() - asked;
  assert.ok(waited >= 1500 && waited < 4000, `timed out after ${waited} ms`);
});
