#!/usr/bin/env bash
# Runs the official conformance suites (Engine.IO v4, Socket.IO v5, Engine.IO v3, from a
# checkout of socketio/socket.io) against `ringcast --conformance` on 127.0.0.1:3000, where
# the suites expect their server (see docs of the project: conformance.md §1-2).
#
# Usage: .ci/official-suites.sh <path-to-a-checkout-of-socketio/socket.io>
#
# Environment:
#   SKIP_SERVER=1  don't build or start ringcast; test whatever already listens on port 3000
#                  (e.g. a reference server)
#   REPEAT=N       run each suite N times (default 1), to measure flakiness
#
# Nothing is written into the checkout or the repository: each suite is copied into a temporary
# directory and installed there with `npm ci`. Needs node (>= 18) and npm, and network access to
# the npm registry (or a warm npm cache).
set -euo pipefail

SUITES=(
  docs/engine.io-protocol/v4-test-suite
  docs/socket.io-protocol/v5-test-suite
  docs/engine.io-protocol/v3-test-suite
)
PORT=3000
HOST=127.0.0.1

usage() {
  echo "usage: $0 <path-to-a-checkout-of-socketio/socket.io>" >&2
  exit 2
}

[[ $# -eq 1 ]] || usage
checkout=$(cd "$1" 2>/dev/null && pwd) || { echo "error: no such directory: $1" >&2; exit 2; }
for suite in "${SUITES[@]}"; do
  if [[ ! -f "$checkout/$suite/package.json" ]]; then
    echo "error: $checkout/$suite/package.json not found (is this a socketio/socket.io checkout?)" >&2
    exit 2
  fi
done
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "error: $tool is required" >&2; exit 2; }
done
node_major=$(node -p 'process.versions.node.split(".")[0]')
if (( node_major < 18 )); then
  echo "error: node >= 18 is required (found $(node --version))" >&2
  exit 2
fi
repeat=${REPEAT:-1}
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || { echo "error: REPEAT must be a positive integer" >&2; exit 2; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/ringcast-suites.XXXXXX")
server_pid=""

cleanup() {
  # Stop only the server this script started.
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() {
  (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

# The suites connect to "localhost"; ringcast is bound to 127.0.0.1 only.
resolved=$(node -e 'require("dns").lookup("localhost", (e, a) => console.log(e ? "?" : a))')
if [[ "$resolved" != "127.0.0.1" ]]; then
  echo "warning: node resolves localhost to $resolved, but the server listens on $HOST" >&2
fi

if [[ "${SKIP_SERVER:-}" == "1" ]]; then
  port_open || { echo "error: SKIP_SERVER=1 but nothing listens on $HOST:$PORT" >&2; exit 2; }
  echo "== using the server already listening on $HOST:$PORT"
else
  if port_open; then
    echo "error: port $PORT is already in use; stop that server first (or set SKIP_SERVER=1)" >&2
    exit 2
  fi
  echo "== building ringcast (release)"
  (cd "$repo_root" && cargo build --release)
  echo "== starting ringcast --conformance on $HOST:$PORT"
  "$repo_root/target/release/ringcast" --conformance --port "$PORT" --host "$HOST" \
    >"$work/ringcast.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 200); do
    port_open && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/ringcast.log" >&2; echo "error: ringcast exited" >&2; exit 1; }
    sleep 0.1
  done
  port_open || { echo "error: ringcast is not listening on $HOST:$PORT after 20 s" >&2; exit 1; }
fi

# Reads "<n> passing" / "failing" / "pending" from mocha's spec-reporter summary.
count() {
  local word=$1 log=$2
  grep -Eo "^ +[0-9]+ $word" "$log" | tail -n 1 | grep -Eo '[0-9]+' || echo 0
}

summary=()
failed_suites=0
for suite in "${SUITES[@]}"; do
  name=$(basename "$(dirname "$suite")")/$(basename "$suite")
  dir="$work/$(basename "$suite")"
  echo
  echo "== $name: installing"
  mkdir -p "$dir"
  # Copy the suite without any node_modules the checkout may hold.
  (cd "$checkout/$suite" && tar --exclude=node_modules -cf - .) | (cd "$dir" && tar -xf -)
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)

  # The test file is whatever the suite's `npm test` hands to mocha (test-suite.js today).
  test_cmd=$(cd "$dir" && node -p 'require("./package.json").scripts.test || ""')
  if [[ "$test_cmd" == mocha\ * ]]; then
    test_args=${test_cmd#mocha }
  else
    test_args=test-suite.js
  fi

  for run in $(seq 1 "$repeat"); do
    log="$work/$(basename "$suite")-$run.log"
    echo "== $name: run $run/$repeat (mocha --exit $test_args)"
    # --exit: some tests leave WebSockets open, which would keep mocha alive (conformance.md §2).
    set +e
    # shellcheck disable=SC2086 # test_args is a word list by design
    (cd "$dir" && npx --no-install mocha --exit --reporter spec $test_args) 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    set -e
    passing=$(count passing "$log")
    failing=$(count failing "$log")
    pending=$(count pending "$log")
    if (( status != 0 || failing > 0 || passing == 0 )); then
      verdict=FAIL
      failed_suites=$((failed_suites + 1))
    else
      verdict=ok
    fi
    summary+=("$(printf '%-32s run %-3s %4s passed %4s failed %4s skipped  %s' \
      "$name" "$run" "$passing" "$failing" "$pending" "$verdict")")
    # Failing test titles, as the spec reporter marks them in its tree ("  1) title"), which
    # comes before the "N passing" line (the detailed failure reports come after it).
    awk '/^ +[0-9]+ passing/ { exit } /^ +[0-9]+\) / { sub(/^ +/, "    "); print }' "$log" \
      >"$log.failures"
    if [[ -s "$log.failures" ]]; then
      summary+=("$(cat "$log.failures")")
    fi
  done
done

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
if (( failed_suites > 0 )); then
  echo "== $failed_suites suite run(s) failed"
  exit 1
fi
echo "== all suites passed"
