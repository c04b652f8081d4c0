// Connect, echo, close, again: each WebSocket connection is closed cleanly before the next one
// opens, so the server reuses the freed connection slots at once.
import assert from 'node:assert/strict';
import { connect, connected, request, run } from './common.mjs';

const CYCLES = 200;

run(async () => {
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const socket = connect();
    try {
      await connected(socket, 'connect_error', 2000);
      assert.deepEqual(await request(socket, 'echo', cycle), [cycle]);
    } catch (error) {
      throw new Error(`cycle ${cycle}: ${error.message}`);
    }
    socket.close();
  }
});
