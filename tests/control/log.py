#!/usr/bin/env python3
"""Reads the JSONL log written by backend.py.

    read(path)                       -> list of request dicts (one per line)
    events(path, type_prefix=None)   -> list of (request_index, event), batches flattened

CLI: log.py FILE [--type PREFIX]   prints one event JSON per line.
"""

import argparse
import json
import sys

__all__ = ["read", "events"]


def read(path):
    """All request records, in log order. A missing file gives []; a partial or
    malformed line (e.g. one being written) is skipped."""
    out = []
    try:
        with open(path, "r", encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    out.append(rec)
    except FileNotFoundError:
        pass
    return out


def events(path, type_prefix=None):
    """(request_index, event) for every event of every request, in order;
    only events whose type starts with type_prefix when it is given."""
    out = []
    for i, rec in enumerate(read(path)):
        for ev in rec.get("events") or []:
            if not isinstance(ev, dict):
                continue
            if type_prefix is not None and not str(ev.get("type", "")).startswith(type_prefix):
                continue
            out.append((i, ev))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="print events from a backend.py log")
    ap.add_argument("file")
    ap.add_argument("--type", default=None, help="only events whose type starts with this")
    args = ap.parse_args(argv)
    for _, ev in events(args.file, args.type):
        sys.stdout.write(json.dumps(ev, separators=(",", ":"), ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
