"""Reach the clients of a ringcast cluster (and of Node socket.io servers on the same Redis)
from a Python backend: what `@socket.io/redis-emitter` publishes, written by hand.

    pip install redis msgpack
    python examples/redis_emitter.py redis://127.0.0.1:6379 lobby "hello from Python"

A broadcast is MessagePack `["emitter", packet, opts]` on `<prefix>#<nsp>#` (or
`<prefix>#<nsp>#<room>#` for exactly one room); socketsJoin, socketsLeave and
disconnectSockets are JSON requests on `<prefix>-request#<nsp>#`. Bytes cross as binary.
"""

import json
import sys

import msgpack
import redis


class Emitter:
    """Publishes to every Socket.IO server of one namespace on a Redis."""

    def __init__(self, client, nsp="/", prefix="socket.io"):
        self.client = client
        self.nsp = nsp
        self.prefix = prefix

    def emit(self, event, *args, rooms=(), except_rooms=()):
        """Emits to the clients in any of `rooms` (all if none) and in none of `except_rooms`."""
        rooms = list(dict.fromkeys(rooms))
        packet = {"type": 2, "data": [event, *args], "nsp": self.nsp}
        opts = {"rooms": rooms, "except": list(except_rooms), "flags": {}}
        message = msgpack.packb(["emitter", packet, opts], use_bin_type=True)
        channel = f"{self.prefix}#{self.nsp}#"
        if len(rooms) == 1:
            channel += f"{rooms[0]}#"
        self.client.publish(channel, message)

    def sockets_join(self, join, rooms=(), except_rooms=()):
        """Makes the selected clients join the rooms `join`."""
        self._request({"type": 2, "opts": self._opts(rooms, except_rooms), "rooms": list(join)})

    def sockets_leave(self, leave, rooms=(), except_rooms=()):
        """Makes the selected clients leave the rooms `leave`."""
        self._request({"type": 3, "opts": self._opts(rooms, except_rooms), "rooms": list(leave)})

    def disconnect_sockets(self, close=False, rooms=(), except_rooms=()):
        """Disconnects the selected clients (with `close`, their whole connection)."""
        self._request({"type": 4, "opts": self._opts(rooms, except_rooms), "close": close})

    @staticmethod
    def _opts(rooms, except_rooms):
        return {"rooms": list(rooms), "except": list(except_rooms)}

    def _request(self, request):
        self.client.publish(f"{self.prefix}-request#{self.nsp}#", json.dumps(request))


if __name__ == "__main__":
    url, room, text = sys.argv[1:4]
    Emitter(redis.Redis.from_url(url)).emit("message", text, rooms=[room])
