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
// Usage: node server.mjs [--port N] [--host H]   (or env PORT / HOST; defaults 3000, 0.0.0.0)
// Prints "listening on <port>" once listening.

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
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`bad port: ${port}`);
  process.exit(2);
}

const httpServer = createServer();
const io = new Server(httpServer, {
  // Off by default in socket.io 4 (engine.io leaves it undefined); stated here so that the
  // comparison never depends on that default.
  perMessageDeflate: false,
});

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
