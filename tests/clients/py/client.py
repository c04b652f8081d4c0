"""Scenario 13 (python-socketio client): connect with auth to "/" and "/chat", call('echo') with
str / dict / bytes / unicode / nested binary, publish and receive "message" in a room shared by
two clients, an unknown namespace fails to connect, then disconnect.

Usage: client.py [default|polling|websocket]; the server URL comes from RINGCAST_URL.
Exits 0 on success, 1 with a message on failure. Every wait is bounded.
"""

import os
import secrets
import sys
import threading
import time

import socketio

DEADLINE_S = 20
TIMEOUT_S = 5


def fail(message):
    print(f"FAIL python-socketio ({MODE}): {message}", file=sys.stderr, flush=True)
    os._exit(1)


def check_equal(actual, expected, what):
    if actual != expected:
        fail(f"{what}: expected {short(expected)}, got {short(actual)}")


def short(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + f"... ({len(text)} chars)"


URL = os.environ.get("RINGCAST_URL")
MODE = sys.argv[1] if len(sys.argv) > 1 else "default"
TRANSPORTS = {"default": None, "polling": ["polling"], "websocket": ["websocket"]}
if not URL:
    print("RINGCAST_URL is not set", file=sys.stderr)
    sys.exit(2)
if MODE not in TRANSPORTS:
    print(f"unknown mode {MODE}", file=sys.stderr)
    sys.exit(2)


class Inbox:
    """Collects "message" events of one namespace, with a bounded wait."""

    def __init__(self):
        self.items = []
        self.cond = threading.Condition()

    def push(self, item):
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def wait_for(self, count, what):
        end = time.monotonic() + TIMEOUT_S
        with self.cond:
            while len(self.items) < count:
                left = end - time.monotonic()
                if left <= 0:
                    fail(f"timed out waiting for {what}; have {short(self.items)}")
                self.cond.wait(left)
            return list(self.items)


def make_client():
    sio = socketio.Client(reconnection=False, request_timeout=TIMEOUT_S)
    inboxes = {"/": Inbox(), "/chat": Inbox()}
    for nsp, inbox in inboxes.items():
        sio.on("message", inbox.push, namespace=nsp)
    sio.connect(
        URL,
        auth={"token": "x"},
        namespaces=["/", "/chat"],
        transports=TRANSPORTS[MODE],
        wait_timeout=TIMEOUT_S,
    )
    return sio, inboxes


def call(sio, event, data, namespace):
    try:
        return sio.call(event, data, namespace=namespace, timeout=TIMEOUT_S)
    except socketio.exceptions.TimeoutError:
        fail(f"no ack for {event} with {short(data)} on {namespace} within {TIMEOUT_S} s")


def main():
    sio, inboxes = make_client()
    other, other_inboxes = make_client()
    for nsp in ("/", "/chat"):
        sid = sio.get_sid(nsp)
        if not sid:
            fail(f"no socket id on {nsp}")
    if sio.get_sid("/") == sio.get_sid("/chat"):
        fail("the same socket id on / and /chat")
    if MODE != "default":
        check_equal(sio.transport(), MODE, "transport")

    payloads = [
        ("str", "hello"),
        ("unicode", "é€😀"),
        ("int", 42),
        ("dict", {"a": [1, {"b": None, "c": True}], "s": "é€😀"}),
        ("bytes", b"\x00\x01\xfe\xff\x1e"),
        ("dict with bytes", {"bin": b"\x01\x02\x03", "n": 1, "list": [b"\xff", "t"]}),
        ("100 KB str", "p" * 100 * 1024),
    ]
    for nsp in ("/", "/chat"):
        for what, payload in payloads:
            check_equal(call(sio, "echo", payload, nsp), payload, f"echo of {what} on {nsp}")

    for nsp in ("/", "/chat"):
        room = "py-" + secrets.token_hex(6)
        check_equal(call(sio, "join", room, nsp), None, f"join ack on {nsp}")
        check_equal(call(other, "join", room, nsp), None, f"join ack of the other client on {nsp}")
        check_equal(call(sio, "publish", (room, {"from": "py", "nsp": nsp}), nsp), None, f"publish ack on {nsp}")
        sio.emit("publish", (room, b"\xde\xad\xbe\xef"), namespace=nsp)
        expected = [{"from": "py", "nsp": nsp}, b"\xde\xad\xbe\xef"]
        check_equal(inboxes[nsp].wait_for(2, f"2 messages on {nsp}"), expected, f"messages at the publisher on {nsp}")
        check_equal(other_inboxes[nsp].wait_for(2, f"2 messages at the other client on {nsp}"), expected, f"messages at the other client on {nsp}")
        check_equal(call(other, "leave", room, nsp), None, f"leave ack on {nsp}")
        call(sio, "publish", (room, "after leave"), nsp)
        check_equal(inboxes[nsp].wait_for(3, f"3 messages on {nsp}")[2], "after leave", f"message after leave on {nsp}")
        time.sleep(0.2)
        check_equal(len(other_inboxes[nsp].items), 2, f"messages at the client that left {nsp}")

    # An unknown namespace refuses the connection.
    refused = socketio.Client(reconnection=False, request_timeout=TIMEOUT_S)
    errors = []
    refused.on("connect_error", errors.append, namespace="/nope")
    try:
        refused.connect(URL, namespaces=["/nope"], transports=TRANSPORTS[MODE], wait_timeout=TIMEOUT_S)
        fail("connecting to /nope succeeded")
    except socketio.exceptions.ConnectionError:
        pass
    check_equal(errors, [{"message": "Invalid namespace"}], "connect_error data for /nope")

    if MODE == "default":
        # The client upgrades from polling to websocket on its own; it must get there.
        end = time.monotonic() + TIMEOUT_S
        while sio.transport() != "websocket":
            if time.monotonic() > end:
                fail(f"no upgrade to websocket within {TIMEOUT_S} s (transport {sio.transport()})")
            time.sleep(0.02)
        check_equal(call(sio, "echo", "upgraded", "/chat"), "upgraded", "echo after the upgrade")

    other.disconnect()
    sio.disconnect()
    if sio.connected:
        fail("still connected after disconnect()")


if __name__ == "__main__":
    watchdog = threading.Timer(DEADLINE_S, lambda: fail(f"scenario exceeded its {DEADLINE_S} s deadline"))
    watchdog.daemon = True
    watchdog.start()
    started = time.monotonic()
    main()
    print(f"ok python-socketio ({MODE}) in {int((time.monotonic() - started) * 1000)} ms", flush=True)
    os._exit(0)
