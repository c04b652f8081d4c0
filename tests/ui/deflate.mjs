// permessage-deflate in the system's headless Chromium: a page (of the server's origin, with
// socket.io-client's browser build injected) connects over WebSocket only to a server started
// with --per-message-deflate. The handshake seen through the DevTools protocol must carry the
// server's extension answer; a 117 KB message must make the round trip intact, and a 2 KB
// broadcast must reach the page. Nothing but the loopback server is reached.
//
// Env: RINGCAST_URL (the server), CHROMIUM (default /usr/bin/chromium).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

// The browser build, by path: the package's exports name no dist files.
const CLIENT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules/socket.io-client/dist/socket.io.min.js');
const BASE = process.env.RINGCAST_URL;
const deadline = setTimeout(() => {
  console.error('FAIL: the deflate scenario ran past 45 s');
  process.exit(1);
}, 45000);

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
});
let failed = false;
try {
  const page = await browser.newPage();
  const cdp = await page.createCDPSession();
  await cdp.send('Network.enable');
  const handshakes = [];
  cdp.on('Network.webSocketHandshakeResponseReceived', (event) => handshakes.push(event.response));
  // A page of the server's own origin (its 404 answer will do): Chromium refuses a WebSocket
  // from about:blank to the loopback.
  await page.goto(`${BASE}/deflate-test`);
  await page.addScriptTag({ path: CLIENT });
  const result = await page.evaluate(async (base) => {
    const socket = io(base, { transports: ['websocket'], reconnection: false });
    const within = (promise, ms, what) =>
      Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))]);
    await within(new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', reject);
    }), 10000, 'connect');
    // 117 KB of text a browser would send (JSON-ish, compressible).
    const big = Array.from({ length: 4000 }, (_, i) => `{"id":${i},"name":"row ${i}"}`).join(',');
    const echoed = await within(new Promise((resolve) => socket.emit('echo', big, resolve)), 10000, 'echo');
    await within(new Promise((resolve) => socket.emit('join', 'browser-room', resolve)), 5000, 'join');
    const broadcast = 'b'.repeat(1000) + 'c'.repeat(1048);
    const received = within(new Promise((resolve) => socket.once('message', resolve)), 5000, 'broadcast');
    socket.emit('publish', 'browser-room', broadcast);
    const message = await received;
    socket.disconnect();
    return {
      bigLength: big.length,
      echoIntact: echoed === big,
      broadcastIntact: message === broadcast,
    };
  }, BASE);
  const extensions = handshakes
    .map((response) => Object.entries(response.headers).find(([name]) => name.toLowerCase() === 'sec-websocket-extensions')?.[1])
    .filter(Boolean);
  console.log(`handshake extensions: ${JSON.stringify(extensions)}; ${JSON.stringify(result)}`);
  if (extensions.length !== 1 || !extensions[0].startsWith('permessage-deflate')) {
    throw new Error(`the server did not answer permessage-deflate: ${JSON.stringify(handshakes)}`);
  }
  if (!result.echoIntact || !result.broadcastIntact || result.bigLength < 100000) {
    throw new Error(`messages did not arrive intact: ${JSON.stringify(result)}`);
  }
  console.log('OK permessage-deflate in headless Chromium');
} catch (error) {
  failed = true;
  console.error(`FAIL: ${error.stack || error}`);
} finally {
  await browser.close();
  clearTimeout(deadline);
}
process.exit(failed ? 1 : 0);
