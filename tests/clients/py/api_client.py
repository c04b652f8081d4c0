"""A python-socketio client for tests/api.rs: connects to "/" at RINGCAST_URL, joins the rooms
named in API_ROOMS (comma-separated), prints {"ready": "py", "id": sid}, then prints every event
it receives as one JSON line (bytes as {"$binary": base64}) and acks "ask". Runs until stdin
closes or its deadline; every wait is bounded; loopback only.
"""

import base64
import json
import os
import sys
import threading

import socketio

URL = os.environ["RINGCAST_URL"]
ROOMS = [r for r in os.environ.get("API_ROOMS", "").split(",") if r]
EVENTS = ["news", "ask", "bin", "hello", "ringcast:disconnect"]
LOCK = threading.Lock()


def plain(value):
    if isinstance(value, (bytes, bytearray)):
        return {"$binary": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def emit_line(line):
    with LOCK:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


sio = socketio.Client(reconnection=False)


def handler(event):
    def on_event(*args):
        emit_line({"client": "py", "nsp": "/", "event": event, "args": plain(list(args))})
        if event == "ask":
            return {"from": "py"}
        return None

    return on_event


for name in EVENTS:
    sio.on(name, handler(name))


@sio.event
def disconnect(*args):
    emit_line({"client": "py", "nsp": "/", "event": "$disconnect", "args": [str(a) for a in args]})


def main():
    threading.Timer(40, lambda: os._exit(3)).start()
    sio.connect(URL, transports=["websocket"], wait_timeout=5)
    for room in ROOMS:
        sio.call("join", room, timeout=5)
    emit_line({"ready": "py", "nsp": "/", "id": sio.get_sid()})
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # noqa: BLE001 - any failure ends the client with a message
        print(f"python client failed: {error}", file=sys.stderr, flush=True)
        os._exit(1)
