"""python-socketio with serializer='msgpack' against `ringcast --parser msgpack`
(tests/msgpack.rs): connects to "/" and "/chat" (python-socketio writes `data: nil` where
socket.io-msgpack-parser leaves the key out), echoes text, a dict and bytes (acks), joins a room
with a socket.io-client peer's messages in mind, publishes bytes into it and receives them.

Usage: msgpack_client.py [default|polling|websocket]; the server URL comes from RINGCAST_URL.
Exits 0 on success, 1 with a message on failure. Every wait is bounded.
"""

import os
import secrets
import sys
import threading

import socketio

DEADLINE_S = 20
TIMEOUT_S = 5
URL = os.environ.get("RINGCAST_URL")
MODE = sys.argv[1] if len(sys.argv) > 1 else "default"
TRANSPORTS = {"default": None, "polling": ["polling"], "websocket": ["websocket"]}


def fail(message):
    print(f"FAIL python-socketio msgpack ({MODE}): {message}", file=sys.stderr, flush=True)
    os._exit(1)


def check_equal(actual, expected, what):
    if actual != expected:
        fail(f"{what}: expected {expected!r}, got {actual!r}")


def step(what):
    """Marks progress on stdout, so a failure shows how far the scenario got."""
    print(f"step: {what}", flush=True)


def main():
    if not URL or MODE not in TRANSPORTS:
        print("RINGCAST_URL unset or unknown mode", file=sys.stderr)
        sys.exit(2)
    threading.Timer(DEADLINE_S, lambda: fail("scenario exceeded its deadline")).start()
    client = socketio.Client(reconnection=False, serializer="msgpack")
    got = []
    arrived = threading.Event()

    @client.on("message")
    def on_message(*args):
        got.append(list(args))
        arrived.set()

    step("connect")
    client.connect(URL, namespaces=["/", "/chat"], transports=TRANSPORTS[MODE],
                   wait_timeout=TIMEOUT_S)
    step("echo")
    check_equal(client.call("echo", "héllo", timeout=TIMEOUT_S), "héllo", "echo of a string")
    value = {"n": 1, "list": [1, "two", None], "bin": b"\x00\x01\xff"}
    check_equal(client.call("echo", value, namespace="/chat", timeout=TIMEOUT_S), value,
                "echo of a dict with bytes on /chat")
    check_equal(client.call("echo", b"\xde\xad", timeout=TIMEOUT_S), b"\xde\xad", "echo of bytes")
    step("join and publish")
    room = "py-" + secrets.token_hex(4)
    check_equal(client.call("join", room, timeout=TIMEOUT_S), None, "join ack")
    client.emit("publish", (room, b"\x01\x02"))
    if not arrived.wait(TIMEOUT_S):
        fail("the published message did not come back")
    check_equal(got, [[b"\x01\x02"]], "the room's message")
    step("disconnect")
    # Bounded: a disconnect that never finishes fails the scenario instead of hanging it.
    leaving = threading.Thread(target=client.disconnect, daemon=True)
    leaving.start()
    leaving.join(TIMEOUT_S)
    if leaving.is_alive():
        fail("disconnect did not finish")
    print(f"ok python-socketio msgpack ({MODE})", flush=True)
    os._exit(0)


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # every failure ends the scenario with its message
        fail(repr(error))
