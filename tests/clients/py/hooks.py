"""Backend hooks with python-socketio (run by tests/hooks.rs): a connect hook's deny reaching
connect_error with the backend's message and data, and a forwarded call whose ack is the
backend's answer. The test sets the backend's answers before each scenario.

Usage: hooks.py <deny|call>; the server URL comes from RINGCAST_URL.
Exits 0 on success, 1 with a message on failure. Every wait is bounded.
"""

import os
import sys
import threading

import socketio

TIMEOUT_S = 5
URL = os.environ.get("RINGCAST_URL")
SCENARIO = sys.argv[1] if len(sys.argv) > 1 else ""


def fail(message):
    print(f"FAIL python-socketio hooks {SCENARIO}: {message}", file=sys.stderr, flush=True)
    os._exit(1)


def deny():
    sio = socketio.Client(reconnection=False)
    refusal = {}
    told = threading.Event()

    def on_error(data):
        refusal["data"] = data
        told.set()

    sio.on("connect_error", on_error)
    try:
        sio.connect(URL, auth={"who": "mallory"}, wait_timeout=TIMEOUT_S)
    except socketio.exceptions.ConnectionError:
        pass
    else:
        fail("connected although the hook denies")
    if not told.wait(TIMEOUT_S):
        fail("no connect_error")
    data = refusal["data"]
    # python-socketio hands the CONNECT_ERROR's payload to the handler: {message, data}.
    if data.get("message") != "banned":
        fail(f"the message: {data!r}")
    if data.get("data") != {"code": "banned", "until": 1767300000, "retryable": False}:
        fail(f"the data: {data!r}")
    sio.disconnect()


def call():
    sio = socketio.Client(reconnection=False)
    sio.connect(URL, wait_timeout=TIMEOUT_S)
    # A tuple is several arguments; the backend echoes them as the ack.
    answer = sio.call("chat:send", ({"text": "py"}, 2), timeout=TIMEOUT_S)
    if answer != ({"text": "py"}, 2):
        fail(f"the ack: {answer!r}")
    sio.disconnect()


SCENARIOS = {"deny": deny, "call": call}

if __name__ == "__main__":
    if not URL:
        print("RINGCAST_URL is not set", file=sys.stderr)
        sys.exit(2)
    if SCENARIO not in SCENARIOS:
        print(f"unknown scenario {SCENARIO}", file=sys.stderr)
        sys.exit(2)
    watchdog = threading.Timer(20, lambda: fail("scenario exceeded 20 s"))
    watchdog.daemon = True
    watchdog.start()
    SCENARIOS[SCENARIO]()
    print(f"ok python-socketio hooks {SCENARIO}")
    os._exit(0)
