// Scenario 3 (socket.io-client 4): "/" and "/chat" multiplexed on one Manager (one Engine.IO
// session): both connect, and events, acks and rooms on each are independent.
// Usage: node v4_multiplex.mjs [default|polling|websocket]
import { run, track, Manager, BASE_URL, transportOptions, waitFor, checkEqual, check, echo, join, emitAck, sleep, uniqueName, checkRingcastId } from './lib.mjs';

run('v4 multiplexed namespaces', async () => {
  const manager = new Manager(BASE_URL, { reconnection: false, ...transportOptions() });
  const main = track(manager.socket('/', { auth: { token: 'main' } }));
  const chat = track(manager.socket('/chat', { auth: { token: 'chat' } }));
  await Promise.all([main.connected || waitFor(main, 'connect'), chat.connected || waitFor(chat, 'connect')]);
  checkRingcastId(main.id, 'socket.id on /');
  checkRingcastId(chat.id, 'socket.id on /chat');
  check(main.id !== chat.id, `both namespaces got the same socket id ${main.id}`);

  // Acks are per namespace: interleave many and check each comes back on its own socket.
  const replies = await Promise.all(
    Array.from({ length: 20 }, (_, i) => (i % 2 ? echo(chat, `chat-${i}`) : echo(main, `main-${i}`))),
  );
  replies.forEach((r, i) => checkEqual(r, i % 2 ? `chat-${i}` : `main-${i}`, `echo #${i}`));

  // The same room name in each namespace is a different room.
  const room = uniqueName('mux');
  const got = { main: [], chat: [] };
  main.on('message', (m) => got.main.push(m));
  chat.on('message', (m) => got.chat.push(m));
  await join(main, room);
  await join(chat, room);
  await emitAck(main, 'publish', [room, 'to-main']);
  await emitAck(chat, 'publish', [room, 'to-chat']);
  await Promise.all([waitIf(main, got.main), waitIf(chat, got.chat)]);
  await sleep(200);
  checkEqual(got.main, ['to-main'], 'messages on /');
  checkEqual(got.chat, ['to-chat'], 'messages on /chat');

  // Disconnecting one namespace leaves the other working.
  main.disconnect();
  checkEqual(await echo(chat, 'after'), 'after', 'echo on /chat after / disconnected');
  check(manager.engine && manager.engine.readyState === 'open', 'engine closed when only / left');
});

function waitIf(socket, list) {
  return list.length ? null : waitFor(socket, 'message');
}
