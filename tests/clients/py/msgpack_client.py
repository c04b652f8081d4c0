"""python-socketio with serializer='msgpack' against `ringcast --parser msgpack`
(tests/msgpack.rs): connects to "/" and "/chat" (python-socketio writes `data: nil` where
socket.io-msgpack-parser leaves the key out), echoes text, a dict and bytes (acks), joins a room
with a socket.io-client peer's messages in mind, publishes bytes into it and receives them,
and disconnects once the publish is sent (over polling, with that POST held in flight: a
disconnect before then would hang).

Usage: msgpack_client.py [default|polling|websocket]; the server URL comes from RINGCAST_URL.
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


def wait_until_sent(client):
    """Waits (bounded) until every packet queued so far has been written out.

    python-engineio's disconnect() queues DISCONNECT and CLOSE and sets its state to
    'disconnecting' at once, and its polling write loop goes round only while the state is
    'connected': a disconnect() while a POST is in flight drops what it queued, CLOSE
    included. The server never hears of the close and keeps the pending GET, so disconnect()
    waits for it until the next ping (25 s). Here the room's message comes back on the GET,
    which the server may answer before the publish POST's `ok`, so that POST can still be in
    flight. The queue counts a packet done once its POST is answered (or its frame written).
    """
    sent = threading.Thread(target=client.eio.queue.join, daemon=True)
    sent.start()
    sent.join(TIMEOUT_S)
    if sent.is_alive():
        fail("the queued packets were not sent")


class PublishInFlight:
    """Pins the state in which a disconnect() loses its CLOSE (see `wait_until_sent`): the
    publish POST still in flight (its answer held back 0.2 s) while the read loop, having
    received the room's message, waits on its next GET. Left to chance, that takes a server
    that answers the GET before the POST's `ok` (ringcast may, as Node's engine.io does) and
    the right thread timing, so the scenario failed now and then; pinned, a scenario that
    disconnects without waiting fails every time. Polling only: it wraps the client's one
    request function, called by one GET and one POST thread."""

    def __init__(self, client):
        self.armed = threading.Event()
        self.posted = threading.Event()
        self.message_polled = threading.Event()
        self.polling_again = threading.Event()
        send_request = client.eio._send_request

        def send(method, url, *args, **kwargs):
            hold = method == "POST" and self.armed.is_set() and not self.posted.is_set()
            if hold:
                self.posted.set()
            if method == "GET" and self.message_polled.is_set():
                self.polling_again.set()
            answer = send_request(method, url, *args, **kwargs)
            if method == "GET" and self.posted.is_set():
                # What follows the publish on the GET is the room's message.
                self.message_polled.set()
            if hold:
                self.polling_again.wait(TIMEOUT_S)
                time.sleep(0.2)
            return answer

        client.eio._send_request = send

    def arm(self):
        """The next POST is the publish."""
        self.armed.set()

    def wait_polling_again(self):
        if not self.polling_again.wait(TIMEOUT_S):
            fail("no GET after the room's message")


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

    in_flight = PublishInFlight(client)
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
    if MODE == "polling":
        in_flight.arm()
    client.emit("publish", (room, b"\x01\x02"))
    if not arrived.wait(TIMEOUT_S):
        fail("the published message did not come back")
    check_equal(got, [[b"\x01\x02"]], "the room's message")
    if MODE == "polling":
        in_flight.wait_polling_again()
    step("wait until the publish is sent")
    wait_until_sent(client)
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
