// socket.io-client 4 with socket.io-msgpack-parser against a library-built server speaking
// msgpack (tests/msgpack.rs): the server asks with an ack and the client answers (binary both
// ways); middleware refuses with CONNECT_ERROR and data; the server disconnects a socket
// (DISCONNECT); an unknown namespace is refused. Every wait is bounded.
// Usage: node msgpack_library.mjs [default|polling|websocket]
import parser from 'socket.io-msgpack-parser';
import { run, io, BASE_URL, transportOptions, connectV4, track, waitFor, withTimeout, check, checkBuffer, checkEqual, show } from './lib.mjs';

/** Resolves with the connect_error a socket gets (bounded). */
function refusal(nsp, auth) {
  const socket = track(io(BASE_URL + nsp, { parser, forceNew: true, reconnection: false, auth, ...transportOptions() }));
  return withTimeout(new Promise((resolve, reject) => {
    socket.once('connect', () => reject(new Error(`${nsp} connected`)));
    socket.once('connect_error', resolve);
  }), 5000, `connect_error on ${nsp}`);
}

run('msgpack library server', async () => {
  const opts = { parser, auth: { token: 'secret' } };
  // The server asks at connect: ["q", <Buffer 01 02>] with an ack.
  const socket = track(io(BASE_URL + '/private', { forceNew: true, reconnection: false, ...opts, ...transportOptions() }));
  const asked = waitFor(socket, 'question');
  await waitFor(socket, 'connect');
  const [text, bytes, answer] = await asked;
  checkEqual(text, 'q', 'question text');
  checkBuffer(bytes, Buffer.from([1, 2]), 'question bytes');
  check(typeof answer === 'function', `no ack callback: ${show(answer)}`);
  const result = waitFor(socket, 'ack-result');
  answer('answer', Buffer.from([3, 4, 5]));
  const [summary, echoed] = await result;
  checkEqual(summary, { answer: 'answer', count: 2 }, 'what the server got');
  checkBuffer(echoed, Buffer.from([3, 4, 5]), 'the binary the server got back');

  const denied = await refusal('/private', { token: 'wrong' });
  checkEqual(denied.message, 'not authorized', 'refusal message');
  checkEqual(denied.data, { code: 42 }, 'refusal data');
  const unknown = await refusal('/nowhere', undefined);
  checkEqual(unknown.message, 'Invalid namespace', 'unknown namespace');

  // The server disconnects the socket that asks for it.
  const bye = await connectV4('/private', opts);
  const gone = waitFor(bye, 'disconnect');
  bye.emit('bye');
  checkEqual((await gone)[0], 'io server disconnect', 'disconnect reason');
});
