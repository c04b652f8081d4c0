"""A Python backend reaching a ringcast node's clients through Redis with
examples/redis_emitter.py: a python-socketio client in room "lobby" gets the backend's text and
bytes, is joined to "announcements" by the backend and gets what is sent there, then is
disconnected by it. Prints a JSON report; exits non-zero on a failed check."""

import json
import os
import sys
import threading

import redis
import socketio

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
from redis_emitter import Emitter  # noqa: E402

got = []
arrived = threading.Condition()
disconnected = threading.Event()

client = socketio.Client(reconnection=False)


@client.on("message")
def on_message(*args):
    with arrived:
        got.append(list(args))
        arrived.notify_all()


@client.event
def disconnect(*_reason):
    disconnected.set()


def wait_for(count):
    with arrived:
        assert arrived.wait_for(lambda: len(got) >= count, timeout=5), f"got {got}"


client.connect(os.environ["NODE_A_URL"], transports=["websocket"])
client.call("join", "lobby", timeout=5)
emitter = Emitter(redis.Redis.from_url(os.environ["REDIS_URL"]))

emitter.emit("message", "hello from Python", {"n": 1}, rooms=["lobby"])
wait_for(1)
emitter.emit("message", b"\x01\x02\x03", rooms=["lobby"])
wait_for(2)
emitter.emit("message", "not for lobby", rooms=["elsewhere"])
emitter.sockets_join(["announcements"], rooms=["lobby"])
emitter.emit("message", "to announcements", rooms=["announcements"])
wait_for(3)
emitter.disconnect_sockets(close=True, rooms=["lobby"])
assert disconnected.wait(timeout=5), "the backend disconnected the client"

assert got[0] == ["hello from Python", {"n": 1}], got
assert got[1] == [b"\x01\x02\x03"], got
assert got[2] == ["to announcements"], got
print(json.dumps({"messages": len(got)}))
