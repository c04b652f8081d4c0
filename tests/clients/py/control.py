"""The control plane with python-socketio (run by tests/control.rs): JWT auth at CONNECT,
each token's verdict (connected, or refused with its code), and a refresh before expiry. Tokens come minted from the test in
RINGCAST_TOKENS (a JSON object); refusal cases in RINGCAST_CASES ([[token name, code], ...]).

Usage: control.py <auth|verdicts|refresh>; the server URL comes from RINGCAST_URL.
Exits 0 on success, 1 with a message on failure. Every wait is bounded.
"""

import json
import os
import sys
import threading
import time

import socketio

TIMEOUT_S = 5
URL = os.environ.get("RINGCAST_URL")
SCENARIO = sys.argv[1] if len(sys.argv) > 1 else ""
TOKENS = json.loads(os.environ.get("RINGCAST_TOKENS", "{}"))


def fail(message):
    print(f"FAIL python-socketio control {SCENARIO}: {message}", file=sys.stderr, flush=True)
    os._exit(1)


class Waiter:
    """One event's arguments, with a bounded wait."""

    def __init__(self):
        self.event = threading.Event()
        self.value = None

    def set(self, value):
        self.value = value
        self.event.set()

    def wait(self, what, timeout=TIMEOUT_S):
        if not self.event.wait(timeout):
            fail(f"timed out waiting for {what}")
        return self.value


def client():
    return socketio.Client(reconnection=False)


def auth():
    sio = client()
    sio.connect(URL, namespaces=["/chat"], auth={"token": TOKENS["user42"]}, wait_timeout=TIMEOUT_S)
    answer = sio.call("echo", "hi", namespace="/chat", timeout=TIMEOUT_S)
    if answer != "hi":
        fail(f"echo answered {answer!r}")
    answer = sio.call("join", "team:8:x", namespace="/chat", timeout=TIMEOUT_S)
    if not (isinstance(answer, dict) and answer.get("error", {}).get("code") == "forbidden"):
        fail(f"a forbidden join answered {answer!r}")
    sio.disconnect()


def verdicts():
    for name, code in json.loads(os.environ["RINGCAST_CASES"]):
        sio = client()
        if code == "ok":
            sio.connect(URL, namespaces=["/chat"], auth={"token": TOKENS[name]}, wait_timeout=TIMEOUT_S)
            sio.disconnect()
            continue
        refusal = Waiter()
        sio.on("connect_error", lambda data: refusal.set(data), namespace="/chat")
        auth_payload = {} if name == "none" else {"token": TOKENS[name]}
        try:
            sio.connect(URL, namespaces=["/chat"], auth=auth_payload, wait_timeout=TIMEOUT_S)
        except socketio.exceptions.ConnectionError:
            pass
        else:
            fail(f"connected with {name}")
        data = refusal.wait(f"the connect_error for {name}")
        if not isinstance(data, dict) or data.get("data", {}).get("code") != code:
            fail(f"{name}: expected code {code}, got {data!r}")
        if data["data"].get("retryable") is not False:
            fail(f"{name}: retryable is not false: {data!r}")
        sio.disconnect()


def minted(lifetime):
    """A token for user 42 living `lifetime` seconds from now, minted here (RINGCAST_JWT:
    {key, iss, aud}) so that this interpreter's start-up does not eat into its life."""
    import jwt

    spec = json.loads(os.environ["RINGCAST_JWT"])
    with open(spec["key"], "rb") as f:
        key = f.read().rstrip(b"\r\n")
    now = int(time.time())
    claims = {"sub": "42", "iat": now, "exp": now + lifetime, "iss": spec["iss"], "aud": spec["aud"]}
    return jwt.encode(claims, key, algorithm="HS256")


def refresh():
    if "RINGCAST_JWT" in os.environ:
        TOKENS["short"], TOKENS["long"] = minted(4), minted(300)
    sio = client()
    warning = Waiter()
    sio.on("ringcast:expiring", lambda data: warning.set(data), namespace="/chat")
    started = time.monotonic()
    sio.connect(URL, namespaces=["/chat"], auth={"token": TOKENS["short"]}, wait_timeout=TIMEOUT_S)
    told = warning.wait("ringcast:expiring")
    elapsed = time.monotonic() - started
    if not 0.2 <= elapsed <= 3.0:
        fail(f"ringcast:expiring came after {elapsed:.2f} s")
    answer = sio.call("ringcast:refresh", {"token": TOKENS["long"]}, namespace="/chat", timeout=TIMEOUT_S)
    if not (isinstance(answer, dict) and answer.get("ok") is True and answer.get("exp", 0) > told["exp"]):
        fail(f"the refresh answered {answer!r}")
    # Past the old exp (+ leeway 1 s) by 2 s.
    time.sleep(max(0.0, told["exp"] + 3 - time.time()))
    if sio.call("echo", "still", namespace="/chat", timeout=TIMEOUT_S) != "still":
        fail("no echo after the old expiry")
    sio.disconnect()


SCENARIOS = {"auth": auth, "verdicts": verdicts, "refresh": refresh}

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
    print(f"ok python-socketio control {SCENARIO}")
    os._exit(0)
