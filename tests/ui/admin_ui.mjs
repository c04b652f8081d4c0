// The real Socket.IO Admin UI (0.5.1's ui/dist, served by ringcast itself under /admin-ui/) in
// the system's headless Chromium: a wrong password shows "Invalid credentials"; the right one
// logs in, the session id is kept (ringcast sends it after CONNECT, where the UI listens), the
// Sockets page lists a client on each shard, the Servers page names this server healthy, the
// Rooms page shows a room, a reload needs no password, and a click on a socket's disconnect
// button disconnects that client. Every request leaving the loopback (the UI's CDN fonts and icons) is
// refused, so nothing but the server under test is reached.
//
// Hosted case (as at admin.socket.io): with UI_PORT set, the script serves the same ui/dist
// itself on that loopback port, another origin than the server's, and the UI reaches the
// server cross-origin (long-polling first, with credentials), which works only when the server
// allows exactly that origin with credentials (--cors-origin … --cors-credentials).
//
// A screenshot of each step goes to SCREENSHOT_DIR (when set), one `screenshot: <path>` line
// each; on a failure, one of the page as it was.
//
// Env: RINGCAST_URL (the server), CHROMIUM (default /usr/bin/chromium), SERVER_ID, UI_PORT,
// UI_DIST (the folder UI_PORT serves), SCREENSHOT_DIR.
import { mkdirSync, readFile } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import puppeteer from 'puppeteer-core';
import { io } from 'socket.io-client';

const BASE = process.env.RINGCAST_URL;
const SERVER_ID = process.env.SERVER_ID;
const UI_PORT = process.env.UI_PORT;
// Where the browser loads the UI from: the server itself, or the other origin.
const UI = UI_PORT ? `http://127.0.0.1:${UI_PORT}/` : `${BASE}/admin-ui/`;
const SCREENSHOTS = process.env.SCREENSHOT_DIR;
const deadline = setTimeout(() => {
  console.error('FAIL: the UI scenario ran past 60 s');
  process.exit(1);
}, 60000);

function loopback(url) {
  try {
    const { hostname, protocol } = new URL(url);
    return protocol === 'data:' || hostname === '127.0.0.1' || hostname === 'localhost';
  } catch {
    return false;
  }
}

/** Waits until the page's visible text contains `text` (bounded). */
async function waitText(page, text, ms = 10000) {
  try {
    await page.waitForFunction((t) => document.body && document.body.innerText.includes(t), { timeout: ms }, text);
  } catch {
    const body = await page.evaluate(() => document.body?.innerText ?? '');
    throw new Error(`page never showed ${JSON.stringify(text)}; it shows:\n${body.slice(0, 1500)}`);
  }
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png', '.svg': 'image/svg+xml', '.map': 'application/json' };

/** Serves `dist` on 127.0.0.1:`port` (no listing, nothing outside it). */
function serveUi(dist, port) {
  const root = path.resolve(dist);
  const server = createServer((req, res) => {
    const wanted = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = path.resolve(root, `.${wanted === '/' ? '/index.html' : wanted}`);
    if (!file.startsWith(root + path.sep)) {
      res.writeHead(404).end();
      return;
    }
    readFile(file, (error, body) => {
      if (error) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
      res.end(body);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(port), '127.0.0.1', () => resolve(server));
  });
}

let shots = 0;
/** Keeps a screenshot of `page` as `<n>-<name>.png` in SCREENSHOT_DIR, and names it. */
async function shot(page, name) {
  if (!SCREENSHOTS) return;
  mkdirSync(SCREENSHOTS, { recursive: true });
  // The UI fades pages in: let it settle, for a readable picture.
  await new Promise((resolve) => setTimeout(resolve, 500));
  shots += 1;
  const file = path.join(SCREENSHOTS, `${String(shots).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

async function login(page, password) {
  await page.waitForSelector('.v-dialog input[type="password"]', { visible: true, timeout: 10000 });
  const inputs = await page.$$('.v-dialog input[type="text"], .v-dialog input:not([type]), .v-dialog input[type="password"]');
  // The form's fields in order: server URL, username, password.
  const fill = async (handle, value) => {
    // Whatever the field holds is selected, so typing replaces it.
    await handle.focus();
    await handle.evaluate((input) => input.select());
    await handle.type(value);
  };
  await fill(inputs[0], BASE);
  await fill(inputs[1], 'admin');
  await fill(inputs[2], password);
  await page.keyboard.press('Enter');
}

async function main() {
  const clients = [];
  // Clients on both shards (ids name their shard in the first two bytes).
  for (let i = 0; i < 40 && new Set(clients.map((c) => c.id.slice(0, 3))).size < 2; i += 1) {
    const socket = io(BASE, { forceNew: true, reconnection: false, transports: ['websocket'] });
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', reject);
    });
    clients.push(socket);
  }
  const ui = UI_PORT ? await serveUi(process.env.UI_DIST, UI_PORT) : null;
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
  const page = await browser.newPage();
  try {
    await page.setViewport({ width: 1280, height: 900 });
    await page.setRequestInterception(true);
    page.on('request', (request) => (loopback(request.url()) ? request.continue() : request.abort()));
    console.log(`the UI from ${UI}, the server at ${BASE}`);
    await page.goto(UI, { waitUntil: 'domcontentloaded', timeout: 15000 });

    console.log('login with a wrong password');
    await login(page, 'wrong');
    await waitText(page, 'Invalid credentials');
    await shot(page, 'invalid-credentials');

    console.log('login with the right password');
    await login(page, 'changeit');
    await page.waitForSelector('.v-dialog input[type="password"]', { hidden: true, timeout: 10000 });
    const session = await page.evaluate(() => localStorage.getItem('session_id'));
    if (!/^[0-9a-f]{16}$/.test(session ?? '')) throw new Error(`session_id kept by the UI: ${session}`);

    await page.goto(`${UI}#/sockets/`, { waitUntil: 'domcontentloaded' });
    for (const client of clients.slice(-2)) await waitText(page, client.id);
    await shot(page, 'sockets');
    await page.goto(`${UI}#/servers/`, { waitUntil: 'domcontentloaded' });
    await waitText(page, SERVER_ID);
    // The status column shows HEALTHY (upper-cased by the UI's style), and the client count:
    // the test's clients and the UI's own connection.
    await waitText(page, 'HEALTHY');
    await waitText(page, `\t${clients.length + 1}\t`);
    await shot(page, 'servers');

    // A room with a member.
    await new Promise((resolve) => clients[0].emit('join', 'lobby', resolve));
    await page.goto(`${UI}#/rooms/`, { waitUntil: 'domcontentloaded' });
    await waitText(page, 'lobby');
    await shot(page, 'rooms');

    // A full reload logs in with the kept session: no password asked.
    await page.reload({ waitUntil: 'domcontentloaded' });
    await page.goto(`${UI}#/sockets/`, { waitUntil: 'domcontentloaded' });
    await waitText(page, clients[clients.length - 1].id);
    const asked = await page.$('.v-dialog--active input[type="password"]');
    if (asked !== null && (await asked.isVisible())) throw new Error('the login came back after a reload');
    await shot(page, 'sockets-after-reload');

    // The disconnect button of a socket's row disconnects that client.
    const victim = clients[clients.length - 1];
    const gone = new Promise((resolve) => victim.once('disconnect', resolve));
    const clicked = await page.evaluate((id) => {
      const row = [...document.querySelectorAll('tr')].find((r) => r.innerText.includes(id));
      const buttons = row ? row.querySelectorAll('button') : [];
      buttons[buttons.length - 1]?.click();
      return buttons.length;
    }, victim.id);
    if (clicked === 0) throw new Error(`no button in the row of ${victim.id}`);
    const reason = await Promise.race([gone, new Promise((resolve) => setTimeout(() => resolve('none'), 5000))]);
    if (reason !== 'io server disconnect') throw new Error(`the clicked socket's disconnect: ${reason}`);
    await page.waitForFunction((id) => !document.body.innerText.includes(id), { timeout: 10000 }, victim.id);
    await shot(page, 'after-disconnect');
    console.log(`ok: the Admin UI logged in, kept session ${session}, listed ${clients.length} clients`);
  } catch (error) {
    await shot(page, 'failure').catch(() => {});
    throw error;
  } finally {
    await browser.close();
    ui?.close();
    for (const client of clients) client.close();
  }
}

main().then(
  () => {
    clearTimeout(deadline);
    process.exit(0);
  },
  (error) => {
    console.error(`FAIL: ${error?.stack ?? error}`);
    process.exit(1);
  },
);
