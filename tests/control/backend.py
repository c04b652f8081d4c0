#!/usr/bin/env python3
"""Scripted webhook / hook backend for ringcast's control-plane tests.

Stdlib only. See control-plane spec, Part 3 "Harness", and sections 2.3 / 2.4.

CLI:
    backend.py --log FILE --secret SECRET [--previous-secret S] [--script FILE]
               [--port N] [--host H] [--lifetime SECONDS]
               [--tls-cert FILE --tls-key FILE]

With --tls-cert and --tls-key (PEM: the certificate chain, its key) it serves
HTTPS instead of HTTP.

Prints exactly "PORT <n>" on stdout once listening. Stops on SIGTERM/SIGINT,
or by itself after --lifetime seconds (default 120).

Every request is appended to --log as one JSON line:
    {"at", "method", "path", "headers" (lower-case names), "body" (raw text),
     "signature_ok", "events" (always a list), "status" (null when the
     connection was closed without an answer), "rule" (index of the rule used,
     or null), "delay_ms" (the delay applied before answering)}

The script file (JSON) is re-read on every request; a missing or unparsable
file counts as {}:
    {"rules": [{"match": {"type": ..., "<data key>": ...},
                "status": 200, "body": {...} | "raw text",
                "delay_ms": 0, "delay_ms_random": [0, 20],
                "content_type": "application/json",
                "headers": {"Retry-After": "1"},
                "close": false, "repeat_body_bytes": 0, "echo": false,
                "times": null}],
     "default_status": 204, "down": false, "ignore_signature": false}

Importable: verify(secret, header, body, now) and sign(secret, t, body).
"""

import argparse
import hashlib
import hmac
import http.server
import json
import os
import random
import signal
import socketserver
import ssl
import sys
import threading
import time

__all__ = ["verify", "sign", "make_server", "main"]


# --------------------------------------------------------------------------
# Signatures (spec 2.4)
# --------------------------------------------------------------------------

def verify(secret: bytes, header: str, body: bytes, now: int) -> bool:
    """The spec's verifier, verbatim in behaviour (raises on a malformed header)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if not p.startswith("v1="))
    sigs = [p[3:] for p in header.split(",") if p.startswith("v1=")]
    t = int(parts["t"])
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return abs(now - t) <= 300 and any(hmac.compare_digest(mac, s) for s in sigs)


def sign(secret: bytes, t: int, body: bytes) -> str:
    """The Ringcast-Signature header value for body at time t: "t=<t>,v1=<hex>"."""
    t = int(t)
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _check_signature(header, body, secret, previous_secret, now):
    if not header:
        return False
    for s in (secret, previous_secret):
        if s is None:
            continue
        try:
            if verify(s, header, body, now):
                return True
        except Exception:
            return False
    return False


# --------------------------------------------------------------------------
# Script handling
# --------------------------------------------------------------------------

class Script:
    """Reads the script file on every request; keeps per-rule `times` counters.

    Counters are reset whenever the script's content changes (a test that
    rewrites the script starts its rules afresh)."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.last_text = None
        self.counts = {}

    def load(self):
        if not self.path:
            return {}
        try:
            with open(self.path, "r", encoding="utf-8") as f:
                text = f.read()
            script = json.loads(text)
        except Exception:
            return {}
        if not isinstance(script, dict):
            return {}
        with self.lock:
            if text != self.last_text:
                self.last_text = text
                self.counts = {}
        return script

    def pick(self, script, first_event):
        """Returns (index, rule) of the first applicable rule, or (None, None)."""
        rules = script.get("rules") or []
        if not isinstance(rules, list):
            return None, None
        for i, rule in enumerate(rules):
            if not isinstance(rule, dict):
                continue
            if not _matches(rule.get("match"), first_event):
                continue
            times = rule.get("times")
            with self.lock:
                used = self.counts.get(i, 0)
                if times is not None and used >= times:
                    continue
                self.counts[i] = used + 1
            return i, rule
        return None, None


def _matches(match, event):
    if not match:
        return True
    if not isinstance(match, dict):
        return False
    if not isinstance(event, dict):
        return False
    data = event.get("data")
    if not isinstance(data, dict):
        data = {}
    for key, want in match.items():
        if key == "type":
            if event.get("type") != want:
                return False
        else:
            if key not in data or data[key] != want:
                return False
    return True


def _default_answer(is_batch, first_event, script):
    """(status, body) when no rule applies. body: None = empty."""
    etype = first_event.get("type") if isinstance(first_event, dict) else None
    if not is_batch:
        if etype in ("io.ringcast.connect", "io.ringcast.refresh", "io.ringcast.join"):
            return 200, {"allow": True}
        if etype == "io.ringcast.event":
            return 200, {"ack": []}
    return int(script.get("default_status", 204)), None


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, addr, log_path, secret, previous_secret, script_path):
        self.log_path = log_path
        self.secret = secret
        self.previous_secret = previous_secret
        self.script = Script(script_path)
        self.log_lock = threading.Lock()
        # Create/truncate nothing: append mode so a test can pre-create the file.
        open(log_path, "a").close()
        super().__init__(addr, Handler)

    def write_log(self, record):
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"
        with self.log_lock:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ringcast-test-backend/1"
    timeout = None

    def log_message(self, format, *args):  # silence the default stderr log
        pass

    # All methods go through one path.
    def do_POST(self):
        self._serve()

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_POST

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            for _ in range(1 << 20):
                line = self.rfile.readline(65537)
                if not line:
                    break
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers
                    for _ in range(1024):
                        t = self.rfile.readline(65537)
                        if not t or t in (b"\r\n", b"\n"):
                            break
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self):
        at = time.time()
        srv = self.server
        try:
            body = self._read_body()
        except Exception:
            self.close_connection = True
            return
        headers = {}
        for name, value in self.headers.items():
            k = name.lower()
            headers[k] = headers[k] + ", " + value if k in headers else value

        # Parse events.
        events = []
        parsed = None
        try:
            parsed = json.loads(body.decode("utf-8"))
        except Exception:
            parsed = None
        if isinstance(parsed, list):
            events = parsed
        elif isinstance(parsed, dict):
            events = [parsed]
        ctype = (headers.get("content-type") or "").lower()
        is_batch = "cloudevents-batch" in ctype or isinstance(parsed, list)
        first = events[0] if events and isinstance(events[0], dict) else {}

        sig_ok = _check_signature(headers.get("ringcast-signature"), body,
                                  srv.secret, srv.previous_secret, int(time.time()))
        script = srv.script.load()

        record = {
            "at": at,
            "method": self.command,
            "path": self.path,
            "headers": headers,
            "body": body.decode("utf-8", errors="replace"),
            "signature_ok": sig_ok,
            "events": events,
            "status": None,
            "rule": None,
            "delay_ms": 0,
        }

        # Down: close at once, no answer.
        if script.get("down"):
            srv.write_log(record)
            self.close_connection = True
            return

        if not sig_ok and not script.get("ignore_signature"):
            record["status"] = 401
            srv.write_log(record)
            self._send(401, b'{"error":"bad signature"}', "application/json", {})
            return

        index, rule = srv.script.pick(script, first)
        record["rule"] = index
        delay = 0.0
        close = False
        extra_headers = {}
        if rule is None:
            status, body_value = _default_answer(is_batch, first, script)
            payload, content_type = _encode(body_value, None)
        else:
            delay = float(rule.get("delay_ms") or 0)
            rnd = rule.get("delay_ms_random")
            if isinstance(rnd, list) and len(rnd) == 2:
                delay += random.uniform(float(rnd[0]), float(rnd[1]))
            close = bool(rule.get("close"))
            extra_headers = rule.get("headers") or {}
            d_status, d_body = _default_answer(is_batch, first, script)
            status = int(rule["status"]) if rule.get("status") is not None else d_status
            data = first.get("data") if isinstance(first.get("data"), dict) else {}
            if rule.get("repeat_body_bytes"):
                payload = b"x" * int(rule["repeat_body_bytes"])
                content_type = rule.get("content_type") or "text/plain"
            elif rule.get("echo") and first.get("type") == "io.ringcast.event":
                ans = {"ack": data.get("args", [])}
                if "attachments" in data:
                    ans["attachments"] = data["attachments"]
                payload, content_type = _encode(ans, rule.get("content_type"))
            elif "body" in rule:
                payload, content_type = _encode(rule["body"], rule.get("content_type"))
            elif rule.get("status") is None:
                # Neither status nor body: the default answer, with the rule's delay etc.
                payload, content_type = _encode(d_body, rule.get("content_type"))
            else:
                payload, content_type = _encode(None, rule.get("content_type"))
        record["status"] = None if close else status
        record["delay_ms"] = delay
        srv.write_log(record)

        if delay > 0:
            time.sleep(delay / 1000.0)
        if close:
            self.close_connection = True
            return
        self._send(status, payload, content_type, extra_headers)

    def _send(self, status, payload, content_type, extra_headers):
        if status in (204, 304) or 100 <= status < 200:
            payload = b""  # bodyless statuses (Content-Length: 0 is still sent)
        try:
            self.send_response(status)
            if content_type and payload:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for k, v in extra_headers.items():
                self.send_header(str(k), str(v))
            self.end_headers()
            if payload and self.command != "HEAD":
                view = memoryview(payload)
                for off in range(0, len(payload), 65536):
                    self.wfile.write(view[off:off + 65536])
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True


def _encode(value, content_type):
    """(bytes, content type) for a rule body. None -> empty."""
    if value is None:
        return b"", content_type
    if isinstance(value, str):
        return value.encode("utf-8"), content_type or "text/plain; charset=utf-8"
    return (json.dumps(value, separators=(",", ":")).encode("utf-8"),
            content_type or "application/json")


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def make_server(log, secret, previous_secret=None, script=None, port=0, host="127.0.0.1"):
    prev = previous_secret.encode() if isinstance(previous_secret, str) else previous_secret
    sec = secret.encode() if isinstance(secret, str) else secret
    return Server((host, port), log, sec, prev, script)


def main(argv=None):
    ap = argparse.ArgumentParser(description="ringcast test webhook backend")
    ap.add_argument("--log", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--previous-secret", default=None)
    ap.add_argument("--script", default=None)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--lifetime", type=float, default=120.0)
    ap.add_argument("--tls-cert", default=None)
    ap.add_argument("--tls-key", default=None)
    args = ap.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        ap.error("--tls-cert and --tls-key go together")

    server = make_server(args.log, args.secret, args.previous_secret, args.script,
                         args.port, args.host)
    if args.tls_cert is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True)
    t.start()
    sys.stdout.write(f"PORT {server.server_address[1]}\n")
    sys.stdout.flush()

    deadline = time.monotonic() + args.lifetime
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        stop.wait(min(left, 0.5))
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
