// Reference server for loadtest/compare: socket.io (Node) with the ringcast bench contract on
// namespace "/":
//   join(room) + ack      -> joins the room, acks with no arguments
//   leave(room) + ack     -> leaves the room, acks with no arguments
//   publish(room, ...p)   -> emits message(...p) to every socket in the room (sender included
//                            when it is a member), acks with no arguments if asked
//   echo(...args) + ack   -> acks the same arguments back unchanged
//
// socket.io's defaults otherwise (ws engine, pingInterval 25 s, pingTimeout 20 s,
// maxHttpBufferSize 1e6). bufferutil / utf-8-validate are installed next to ws, which picks
// them up by itself (see README.md).
//
// Usage: node server.mjs [--port N] [--host H] [--redis URL] [--per-message-deflate 1]
//        (or env PORT / HOST / REDIS_URL / PER_MESSAGE_DEFLATE; defaults 3000, 0.0.0.0, none, 0)
//
// With --per-message-deflate 1: `ws`'s permessage-deflate with Node's defaults (threshold
// 1024 bytes, zlib level 6, context takeover both ways), for ringcast's --per-message-deflate.
// Prints "listening on <port>" once listening.
//
// With --redis (opt-in), the server is a cluster node: @socket.io/redis-adapter (classic
// pub/sub mode) on a `redis` v4 pub client and its duplicate as the sub client, so a publish
// reaches the room's members on every node sharing that Redis. The adapter is installed, and
// both clients connected, before the server listens. Without it, nothing changes: the
// in-memory adapter, no Redis modules loaded.

import { createServer } from "node:http";
import { Server } from "socket.io";

function option(name, envName, fallback) {
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}` && i + 1 < argv.length) return argv[i + 1];
    if (argv[i].startsWith(`--${name}=`)) return argv[i].slice(name.length + 3);
  }
  return process.env[envName] ?? fallback;
}

const port = Number.parseInt(option("port", "PORT", "3000"), 10);
const host = option("host", "HOST", "0.0.0.0");
const redisUrl = option("redis", "REDIS_URL", "");
const deflate = option("per-message-deflate", "PER_MESSAGE_DEFLATE", "0") === "1";
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`bad port: ${port}`);
  process.exit(2);
}

const httpServer = createServer();
const io = new Server(httpServer, {
  // Off by default in socket.io 4 (engine.io leaves it undefined); stated here so that the
  // comparison never depends on that default.
  perMessageDeflate: deflate ? { threshold: 1024 } : false,
});

if (redisUrl !== "") {
  // Loaded only here, so that a single-process run stays exactly what it was.
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const { createClient } = await import("redis");
  const pubClient = createClient({ url: redisUrl });
  const subClient = pubClient.duplicate();
  for (const client of [pubClient, subClient]) {
    // Without a listener, a lost connection would be an uncaught error; the run's checks
    // (loss, errors) tell whether it mattered.
    client.on("error", (error) => console.error(`redis: ${error.message}`));
  }
  await Promise.all([pubClient.connect(), subClient.connect()]);
  io.adapter(createAdapter(pubClient, subClient));
}

// Splits a trailing ack callback off the event arguments.
function splitAck(args) {
  if (args.length > 0 && typeof args[args.length - 1] === "function") {
    return [args.slice(0, -1), args[args.length - 1]];
  }
  return [args, undefined];
}

io.on("connection", (socket) => {
  socket.on("join", (...raw) => {
    const [args, ack] = splitAck(raw);
    if (typeof args[0] === "string") socket.join(args[0]);
    if (ack) ack();
  });
  socket.on("leave", (...raw) => {
    const [args, ack] = splitAck(raw);
    if (typeof args[0] === "string") socket.leave(args[0]);
    if (ack) ack();
  });
  socket.on("publish", (...raw) => {
    const [args, ack] = splitAck(raw);
    if (typeof args[0] === "string") io.to(args[0]).emit("message", ...args.slice(1));
    if (ack) ack();
  });
  socket.on("echo", (...raw) => {
    const [args, ack] = splitAck(raw);
    if (ack) ack(...args);
  });
});

httpServer.listen(port, host, () => {
  console.log(`listening on ${httpServer.address().port}`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => process.exit(0));
}
