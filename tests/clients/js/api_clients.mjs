// Clients for tests/api.rs: connects the clients described by API_CLIENTS (JSON: [{name, version:
// 4|2, nsps: ["/", "/chat"], rooms: ["game:1", "ringcast:user:42"], ack: true}]), joins each to
// its rooms in every namespace, prints one `{"ready": ...}` line per socket, then prints every
// event it receives as one JSON line (binary as {"$binary": base64}) and answers acks when told
// to. Runs until stdin closes or its deadline; every wait is bounded; loopback only.
import { createRequire } from 'node:module';
import { Manager } from 'socket.io-client';

const ioV2 = createRequire(import.meta.url)('socket.io-client-v2');

const URL_ = process.env.RINGCAST_URL;
const CLIENTS = JSON.parse(process.env.API_CLIENTS || '[]');
const DEADLINE_MS = 40000;
const EVENTS = ['news', 'ask', 'bin', 'hello', 'ringcast:disconnect'];

function print(line) {
  process.stdout.write(JSON.stringify(line) + '\n');
}

function plain(value) {
  if (Buffer.isBuffer(value)) return { $binary: value.toString('base64') };
  if (value instanceof ArrayBuffer) return { $binary: Buffer.from(value).toString('base64') };
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function connectSocket(client, nsp) {
  if (client.version === 2) {
    const url = nsp === '/' ? URL_ : URL_ + nsp;
    return ioV2(url, { reconnection: false, forceNew: false, transports: ['websocket'] });
  }
  if (!client.manager) {
    client.manager = new Manager(URL_, { reconnection: false, query: client.query || {} });
  }
  return client.manager.socket(nsp);
}

async function start(client) {
  for (const nsp of client.nsps || ['/']) {
    const socket = connectSocket(client, nsp);
    for (const event of EVENTS) {
      socket.on(event, (...args) => {
        const ack = typeof args[args.length - 1] === 'function' ? args.pop() : null;
        print({ client: client.name, nsp, event, args: plain(args) });
        if (ack && client.ack !== false) ack({ from: client.name });
      });
    }
    socket.on('disconnect', (reason) => {
      print({ client: client.name, nsp, event: '$disconnect', args: [reason] });
    });
    await withTimeout(new Promise((resolve, reject) => {
      socket.on('connect', resolve);
      socket.on('connect_error', reject);
      socket.on('error', reject);
    }), 5000, `${client.name} connecting to ${nsp}`);
    for (const room of client.rooms || []) {
      await withTimeout(new Promise((resolve) => socket.emit('join', room, resolve)), 5000, `join ${room}`);
    }
    print({ ready: client.name, nsp, id: socket.id });
  }
}

const deadline = setTimeout(() => {
  console.error('deadline reached');
  process.exit(3);
}, DEADLINE_MS);
process.stdin.on('end', () => {
  clearTimeout(deadline);
  process.exit(0);
});
process.stdin.resume();

try {
  for (const client of CLIENTS) {
    await start(client);
  }
  print({ all_ready: true });
} catch (error) {
  console.error(String(error));
  process.exit(1);
}
