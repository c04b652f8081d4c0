//! Backend hooks (spec `control-plane.md` §2.3, §2.4, Part 3 tests 15-35): the real binary
//! with a config file, a real backend process (`tests/control/backend.py`, the Python stdlib
//! server that verifies every request's signature and logs it) answering as each test scripts
//! it, and socket.io-client 4.x / 2.x as clients. Every process is bounded and stopped by its
//! own handle.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::script::{self, Runtime};
use common::standalone::{s, Server, TempDir};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const SECRET: &str = "hooks-test-secret";
const SCRIPT_DEADLINE: Duration = Duration::from_secs(40);

/// `tests/control/backend.py` on a free port: its answers scripted by a JSON file, every
/// request logged (one JSON line each).
struct Backend {
    child: Child,
    port: u16,
    log: PathBuf,
    script: PathBuf,
    /// Serving HTTPS.
    tls: bool,
}

impl Backend {
    fn start(dir: &TempDir, name: &str) -> Backend {
        Backend::start_with(dir, name, &[])
    }

    /// Serving HTTPS with this certificate chain and key (PEM files).
    fn start_tls(dir: &TempDir, name: &str, cert: &Path, key: &Path) -> Backend {
        Backend::start_with(dir, name, &["--tls-cert", s(cert), "--tls-key", s(key)])
    }

    fn start_with(dir: &TempDir, name: &str, extra: &[&str]) -> Backend {
        let log = dir.path(&format!("{name}.jsonl"));
        let script_path = dir.path(&format!("{name}.json"));
        std::fs::write(&script_path, "{}").expect("script");
        let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/control/backend.py");
        let mut child = Command::new(script::python())
            .arg(&program)
            .args([
                "--log",
                s(&log),
                "--secret",
                SECRET,
                "--script",
                s(&script_path),
            ])
            .args(["--lifetime", "120"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the backend");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the backend's port");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("the backend said {line:?}"));
        Backend {
            child,
            port,
            log,
            script: script_path,
            tls: !extra.is_empty(),
        }
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/ringcast", self.port)
    }

    /// Sets how the backend answers (written whole, then renamed, so it never reads half).
    fn answer(&self, script: Value) {
        let next = self.script.with_extension("next");
        std::fs::write(&next, script.to_string()).expect("write the script");
        std::fs::rename(&next, &self.script).expect("install the script");
    }

    /// Every request logged so far.
    fn requests(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The first request whose (first) event is of type `kind`.
    fn first_request(&self, kind: &str) -> Value {
        self.requests()
            .into_iter()
            .find(|r| r["events"][0]["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} request"))
    }

    /// Answers every connect hook with an allow for user 42, with a room and data.
    fn allow_user_42(&self) {
        self.answer(json!({ "rules": [{
            "match": { "type": "io.ringcast.connect" },
            "status": 200,
            "body": { "allow": true, "user": "42", "rooms": ["team:7"], "data": { "name": "Ann" } },
        }]}));
    }

    /// Every event received so far whose type starts with `prefix`, batches flattened.
    fn events(&self, prefix: &str) -> Vec<Value> {
        self.events_of(prefix, |_| true)
    }

    /// [`Backend::events`] of the requests it answered with a 2xx: the delivered ones.
    fn delivered(&self, prefix: &str) -> Vec<Value> {
        self.events_of(prefix, |request| {
            request["status"]
                .as_u64()
                .is_some_and(|status| (200..300).contains(&status))
        })
    }

    fn events_of(&self, prefix: &str, take: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|request| take(request))
            .flat_map(|request| request["events"].as_array().cloned().unwrap_or_default())
            .filter(|event| {
                event["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(prefix))
            })
            .collect()
    }

    /// Waits (at most `within`) until `done` holds for the delivered events of `prefix`.
    fn wait_for(
        &self,
        prefix: &str,
        within: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let events = self.delivered(prefix);
            if done(&events) || Instant::now() >= deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    common::free_port()
}

/// The config of the hook tests: `endpoint` is the backend; `extra` adds tables.
fn config(backend: &Backend, cores: usize, extra: &str) -> String {
    format!(
        r#"[server]
cores = {cores}

[endpoints.backend]
url = "{url}"
secret = "{SECRET}"
timeout = "2s"

[endpoints.gone]
url = "http://127.0.0.1:{gone}/x"
secret = "{SECRET}"
startup_check = "off"

{extra}
"#,
        url = backend.url(),
        gone = closed_port(),
    )
}

fn node(server: &Server, scenario: &str, env: &[(&str, String)]) {
    script::run(
        Runtime::Node,
        "js/hooks.mjs",
        &["websocket", scenario],
        &server.url,
        env,
        SCRIPT_DEADLINE,
    )
    .expect_ok();
}

fn python(server: &Server, scenario: &str) {
    script::run(
        Runtime::Python,
        "py/hooks.py",
        &[scenario],
        &server.url,
        &[],
        SCRIPT_DEADLINE,
    )
    .expect_ok();
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

const CONNECT_HOOK: &str = r#"
[hooks]
connect = "backend"
timeout = "1s"
forward_query = ["v"]
forward_headers = ["User-Agent", "x-tenant"]
breaker_failures = 4
breaker_cooldown = "1s"

[lifecycle]
endpoint = "backend"
batch_interval = "20ms"

[namespaces."/"]
auth = "hook"
join = ["*"]
"#;

#[test]
fn the_connect_hook_allows_denies_and_fails_closed() {
    let dir = TempDir::new("hooks-connect");
    let backend = Backend::start(&dir, "backend");
    let server = Server::start(&config(&backend, 1, CONNECT_HOOK), &dir, &[]);
    // The startup ping came first, signed.
    let pings = backend.wait_for("io.ringcast.ping", Duration::from_secs(5), |e| {
        !e.is_empty()
    });
    assert_eq!(pings.len(), 1, "one startup ping");

    // Allow, with a user, rooms and data.
    backend.allow_user_42();
    node(&server, "allow", &[]);
    let connects = backend.events("io.ringcast.connect");
    let request = backend.first_request("io.ringcast.connect");
    assert_eq!(request["signature_ok"], true, "{request}");
    assert_eq!(
        request["headers"]["content-type"],
        "application/cloudevents+json"
    );
    let data = &connects[0]["data"];
    assert_eq!(data["namespace"], "/");
    assert_eq!(data["auth"]["room"], "lobby", "{data}");
    assert_eq!(data["handshake"]["transport"], "websocket", "{data}");
    assert_eq!(data["handshake"]["eio"], 4, "{data}");
    // Only the allowlisted headers: the client's cookie stays out.
    assert_eq!(data["handshake"]["headers"]["x-tenant"], "t1", "{data}");
    assert_eq!(
        data["handshake"]["headers"].as_object().map(|h| h.len()),
        Some(1),
        "{data}"
    );
    assert!(!request["body"]
        .as_str()
        .unwrap_or_default()
        .contains("sid=secret"));
    assert!(
        connects[0]["id"]
            .as_str()
            .is_some_and(|id| id.contains('-')),
        "{}",
        connects[0]
    );
    assert!(connects[0]["source"]
        .as_str()
        .is_some_and(|s| s.starts_with("ringcast://")));
    // The lifecycle event shows the hook's grants.
    let connected = backend.wait_for(
        "io.ringcast.socket.connected",
        Duration::from_secs(5),
        |e| !e.is_empty(),
    );
    let data = &connected[0]["data"];
    assert_eq!(data["user"], "42", "{data}");
    assert_eq!(data["seq"], 1, "{data}");
    assert_eq!(data["data"], json!({ "name": "Ann" }), "{data}");
    let rooms: Vec<&str> = data["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(rooms.contains(&"team:7"), "{rooms:?}");
    assert!(rooms.contains(&"ringcast:user:42"), "{rooms:?}");

    // Deny: the backend's message and data reach the client (v4 and v2).
    backend.answer(json!({ "rules": [{
        "match": { "type": "io.ringcast.connect" },
        "status": 200,
        "body": { "allow": false, "error": { "message": "banned", "data": { "code": "banned", "until": 1767300000u64 } } },
    }]}));
    node(&server, "deny", &[]);
    node(&server, "v2-deny", &[]);
    python(&server, "deny");

    // A slow backend: backend_timeout at about the hook's timeout (1 s); no socket is made.
    backend.answer(json!({ "rules": [{
        "match": { "type": "io.ringcast.connect" }, "delay_ms": 2500,
        "status": 200, "body": { "allow": true },
    }]}));
    let before = backend.events("io.ringcast.socket.connected").len();
    node(
        &server,
        "fail",
        &[
            ("HOOK_CODE", "backend_timeout".into()),
            ("HOOK_MAX_MS", "2000".into()),
        ],
    );
    // Oversized, not JSON, a redirect: each a backend_error. With the timeout above, four
    // failures in a row: the breaker opens.
    for rule in [
        json!({ "status": 200, "repeat_body_bytes": 2 * 1024 * 1024 }),
        json!({ "status": 200, "body": "not json" }),
        json!({ "status": 302, "headers": { "Location": "http://127.0.0.1:1/" } }),
    ] {
        let mut rule = rule;
        rule["match"] = json!({ "type": "io.ringcast.connect" });
        backend.answer(json!({ "rules": [rule] }));
        node(&server, "fail", &[("HOOK_CODE", "backend_error".into())]);
    }
    // Open: the next CONNECT fails at once and the backend sees no request.
    let seen = backend.events("io.ringcast.connect").len();
    node(
        &server,
        "fail",
        &[
            ("HOOK_CODE", "backend_unavailable".into()),
            ("HOOK_MAX_MS", "500".into()),
        ],
    );
    assert_eq!(
        backend.events("io.ringcast.connect").len(),
        seen,
        "no request while the breaker is open"
    );
    // After the cooldown, calls resume.
    std::thread::sleep(Duration::from_millis(1200));
    backend.answer(json!({}));
    node(&server, "allow", &[]);
    assert_eq!(
        backend.events("io.ringcast.connect").len(),
        seen + 1,
        "the hook is asked again after the cooldown"
    );
    std::thread::sleep(Duration::from_millis(200));
    let after = backend.events("io.ringcast.socket.connected").len();
    assert_eq!(after, before + 1, "no socket was made by a failed hook");
    drop(server);
}

#[test]
fn a_failing_connect_hook_can_admit_anonymously_and_a_dead_one_fails_fast() {
    let dir = TempDir::new("hooks-down");
    let backend = Backend::start(&dir, "backend");
    let extra = format!(
        r#"
[endpoints.dead]
url = "http://127.0.0.1:{dead}/"
secret = "{SECRET}"
startup_check = "off"

[hooks]
connect = "dead"

[namespaces."/"]
auth = "hook"
"#,
        dead = closed_port()
    );
    let server = Server::start(&config(&backend, 1, &extra), &dir, &[]);
    node(
        &server,
        "fail",
        &[
            ("HOOK_CODE", "backend_unavailable".into()),
            ("HOOK_MAX_MS", "1000".into()),
        ],
    );
    drop(server);
    let anonymous = extra.replace(
        "connect = \"dead\"",
        "connect = \"dead\"\non_failure = \"anonymous\"",
    );
    let server = Server::start(&config(&backend, 1, &anonymous), &dir, &[]);
    node(&server, "anonymous", &[]);
}

const FORWARDING: &str = r#"
[lifecycle]
endpoint = "backend"
batch_interval = "20ms"

[namespaces."/"]
auth = "none"

[[namespaces."/".events]]
name = "order:*"
endpoint = "backend"
max_pending = 256

[[namespaces."/".events]]
name = "chat:*"
endpoint = "backend"

[[namespaces."/".events]]
name = "slow:*"
endpoint = "backend"
timeout = "500ms"
max_pending = 2

[[namespaces."/".events]]
name = "gone:*"
endpoint = "gone"

[[namespaces."/".events]]
name = "fatal:*"
endpoint = "backend"
on_error = "disconnect"

[[namespaces."/".events]]
name = "note:*"
endpoint = "backend"
mode = "notify"
"#;

/// The backend's answers to the forwarded events of the call tests.
fn call_rules() -> Value {
    json!({ "rules": [
        { "match": { "type": "io.ringcast.event", "event": "order:n" }, "echo": true, "delay_ms_random": [0, 20] },
        { "match": { "type": "io.ringcast.event", "event": "chat:join" }, "status": 200, "body": {
            "ack": [{ "ok": true }],
            "actions": [
                { "op": "join", "rooms": ["room:7"] },
                { "op": "emit", "to": { "rooms": ["room:7"] }, "event": "joined", "args": ["42"] },
            ],
        }},
        { "match": { "type": "io.ringcast.event", "event": "chat:500" }, "status": 500, "body": "boom" },
        { "match": { "type": "io.ringcast.event", "event": "chat:deny" }, "status": 403,
          "body": { "error": { "code": "nope", "message": "not allowed" } } },
        { "match": { "type": "io.ringcast.event", "event": "slow:one" }, "delay_ms": 1500, "echo": true },
        { "match": { "type": "io.ringcast.event", "event": "slow:many" }, "delay_ms": 1500, "echo": true },
        { "match": { "type": "io.ringcast.event", "event": "fatal:x" }, "status": 500 },
        { "match": { "type": "io.ringcast.event" }, "echo": true },
    ]})
}

#[test]
fn forwarded_calls_answer_acks_in_order_with_actions_and_errors() {
    let dir = TempDir::new("hooks-calls");
    let backend = Backend::start(&dir, "backend");
    backend.answer(call_rules());
    let metrics = FORWARDING.replace(
        "[lifecycle]",
        "[metrics]\npath = \"/metrics\"\n\n[lifecycle]",
    );
    let server = Server::start(&config(&backend, 2, &metrics), &dir, &[]);
    node(&server, "calls", &[("HOOK_ORDER", "100".into())]);
    // The backend saw one socket's 100 calls in emit order, each signed, with growing seqs.
    let calls: Vec<Value> = backend
        .requests()
        .into_iter()
        .filter(|r| r["events"][0]["data"]["event"] == "order:n")
        .collect();
    assert_eq!(calls.len(), 100);
    let mut last_seq = 0;
    for (i, call) in calls.iter().enumerate() {
        assert_eq!(call["signature_ok"], true);
        let data = &call["events"][0]["data"];
        assert_eq!(data["args"], json!([i]), "call {i} out of order");
        assert_eq!(data["ack"], true);
        let seq = data["seq"].as_u64().expect("seq");
        assert!(seq > last_seq, "seq grows: {seq} after {last_seq}");
        last_seq = seq;
    }
    // The binary call: a placeholder plus base64.
    let binary = backend
        .events("io.ringcast.event")
        .into_iter()
        .find(|e| e["data"]["event"] == "chat:bin")
        .expect("the binary call");
    assert_eq!(
        binary["data"]["args"],
        json!([{ "_placeholder": true, "num": 0 }])
    );
    assert_eq!(binary["data"]["attachments"], json!(["AAEC+g=="]));

    node(&server, "call-errors", &[]);
    node(&server, "call-disconnect", &[]);
    node(&server, "v2-call", &[]);
    python(&server, "call");
    // Counted for the metrics route, by endpoint, kind and outcome.
    let scrape = http_get(&server.url, "/metrics");
    for series in [
        r#"ringcast_hook_calls_total{endpoint="backend",kind="event",outcome="ok"}"#,
        r#"ringcast_hook_calls_total{endpoint="backend",kind="event",outcome="error"}"#,
        r#"ringcast_hook_calls_total{endpoint="backend",kind="event",outcome="timeout"}"#,
        r#"ringcast_hook_calls_total{endpoint="backend",kind="event",outcome="overloaded"}"#,
        r#"ringcast_hook_calls_total{endpoint="gone",kind="event",outcome="unavailable"}"#,
        r#"ringcast_lifecycle_events_total{endpoint="backend",outcome="delivered"}"#,
        r#"ringcast_hook_seconds_count{endpoint="backend",kind="event"}"#,
        r#"ringcast_hook_seconds_bucket{le="0.01",endpoint="backend",kind="batch"}"#,
        "ringcast_lifecycle_queue_depth ",
    ] {
        assert!(scrape.contains(series), "{series} in\n{scrape}");
    }
    // The disconnect's lifecycle reason is `backend`.
    let disconnected = backend.wait_for(
        "io.ringcast.socket.disconnected",
        Duration::from_secs(5),
        |events| events.iter().any(|e| e["data"]["reason"] == "backend"),
    );
    assert!(
        disconnected
            .iter()
            .any(|e| e["data"]["reason"] == "backend"),
        "{disconnected:?}"
    );
}

#[test]
fn lifecycle_events_arrive_complete_and_in_order_per_socket() {
    let dir = TempDir::new("hooks-lifecycle");
    let backend = Backend::start(&dir, "backend");
    let server = Server::start(&config(&backend, 2, FORWARDING), &dir, &[]);
    node(&server, "lifecycle", &[("HOOK_SOCKETS", "6".into())]);
    let per_socket = |events: &[Value]| -> std::collections::BTreeMap<String, Vec<Value>> {
        let mut sockets = std::collections::BTreeMap::<String, Vec<Value>>::new();
        for event in events {
            if let Some(socket) = event["subject"].as_str() {
                sockets
                    .entry(socket.to_owned())
                    .or_default()
                    .push(event.clone());
            }
        }
        sockets
    };
    let events = backend.wait_for("io.ringcast.", Duration::from_secs(10), |events| {
        events
            .iter()
            .filter(|e| e["type"] == "io.ringcast.socket.disconnected")
            .count()
            >= 7
    });
    let started: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "io.ringcast.node.started")
        .collect();
    assert_eq!(started.len(), 1, "one node.started");
    let boot = started[0]["data"]["boot_id"]
        .as_str()
        .expect("boot id")
        .to_owned();
    let sockets = per_socket(&events);
    assert_eq!(sockets.len(), 7, "seven sockets: {:?}", sockets.keys());
    let mut closes = 0;
    for (socket, events) in &sockets {
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| {
                e["type"]
                    .as_str()
                    .unwrap_or_default()
                    .trim_start_matches("io.ringcast.")
            })
            .collect();
        let seqs: Vec<u64> = events
            .iter()
            .filter_map(|e| e["data"]["seq"].as_u64())
            .collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{socket}: {kinds:?}"
        );
        assert_eq!(
            kinds.first(),
            Some(&"socket.connected"),
            "{socket}: {kinds:?}"
        );
        assert_eq!(
            kinds.last(),
            Some(&"socket.disconnected"),
            "{socket}: {kinds:?}"
        );
        let last = events.last().expect("an event");
        assert_eq!(last["data"]["rooms"], json!(["kept"]), "{socket}: {last}");
        match last["data"]["reason"].as_str() {
            Some("client namespace disconnect") => {
                assert_eq!(
                    kinds,
                    [
                        "socket.connected",
                        "socket.joined",
                        "socket.left",
                        "socket.joined",
                        "event",
                        "socket.disconnected"
                    ],
                    "{socket}"
                );
                assert_eq!(events[1]["data"]["by"], "client");
                assert_eq!(events[4]["data"]["event"], "note:x");
            }
            Some("transport close") => closes += 1,
            other => panic!("{socket}: reason {other:?}"),
        }
        for event in events {
            assert!(event["id"].as_str().is_some_and(|id| id.starts_with(&boot)));
        }
    }
    assert_eq!(closes, 1, "one transport close");
    // Every request was a signed batch of at most batch_max events.
    for request in backend.requests() {
        assert_eq!(request["signature_ok"], true);
        if request["events"][0]["type"] != "io.ringcast.ping" {
            assert_eq!(
                request["headers"]["content-type"],
                "application/cloudevents-batch+json"
            );
        }
    }
    drop(server);
    // A restart announces a new boot.
    let _server = Server::start(&config(&backend, 2, FORWARDING), &dir, &[]);
    let started = backend.wait_for("io.ringcast.node.started", Duration::from_secs(5), |e| {
        e.len() >= 2
    });
    assert_eq!(started.len(), 2);
    assert_ne!(started[1]["data"]["boot_id"], started[0]["data"]["boot_id"]);
}

#[test]
fn a_crowd_is_reported_in_full_batches() {
    let dir = TempDir::new("hooks-crowd");
    let backend = Backend::start(&dir, "backend");
    let extra = r#"
[lifecycle]
endpoint = "backend"
batch_max = 50
batch_interval = "100ms"
events = ["connected", "disconnected"]

[namespaces."/"]
auth = "none"
"#;
    let server = Server::start(&config(&backend, 1, extra), &dir, &[]);
    node(&server, "crowd", &[("HOOK_SOCKETS", "300".into())]);
    let events = backend.wait_for("io.ringcast.socket.", Duration::from_secs(10), |e| {
        e.len() >= 600
    });
    assert_eq!(events.len(), 600, "every connect and disconnect");
    let batches: Vec<Value> = backend
        .requests()
        .into_iter()
        .filter(|r| {
            r["events"][0]["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("io.ringcast.socket."))
        })
        .collect();
    let sizes: Vec<usize> = batches
        .iter()
        .map(|r| r["events"].as_array().map_or(0, Vec::len))
        .collect();
    assert!(sizes.iter().all(|&n| n <= 50), "{sizes:?}");
    let at = |r: &Value| r["at"].as_f64().unwrap_or_default();
    let elapsed = at(&batches[batches.len() - 1]) - at(&batches[0]);
    let bound = 600 / 50 + (elapsed / 0.1).ceil() as usize + 1;
    assert!(
        batches.len() <= bound,
        "{} requests over {elapsed:.2} s (at most {bound}): {sizes:?}",
        batches.len()
    );
}

#[test]
fn lifecycle_batches_are_retried_then_reported_as_a_gap() {
    let dir = TempDir::new("hooks-retry");
    let backend = Backend::start(&dir, "backend");
    let extra = FORWARDING.replace(
        "batch_interval = \"20ms\"",
        "batch_interval = \"20ms\"\nretry_for = \"1500ms\"",
    );
    let server = Server::start(&config(&backend, 1, &extra), &dir, &[]);
    backend.wait_for("io.ringcast.node.started", Duration::from_secs(5), |e| {
        !e.is_empty()
    });
    // 500 for a while: the same batch comes again (same delivery id), then is taken.
    backend.answer(json!({ "rules": [{ "status": 500, "times": 2 }] }));
    node(&server, "lifecycle", &[("HOOK_SOCKETS", "1".into())]);
    let events = backend.wait_for("io.ringcast.socket.", Duration::from_secs(10), |e| {
        e.iter().any(|e| {
            e["type"] == "io.ringcast.socket.disconnected"
                && e["data"]["reason"] == "transport close"
        })
    });
    let requests = backend.requests();
    let failed: Vec<&Value> = requests.iter().filter(|r| r["status"] == 500).collect();
    assert!(!failed.is_empty(), "the backend failed some batches");
    let first = failed[0]["headers"]["ringcast-delivery"].clone();
    let retried: Vec<&Value> = requests
        .iter()
        .filter(|r| r["headers"]["ringcast-delivery"] == first)
        .collect();
    assert!(
        retried.len() >= 2,
        "a failed batch is sent again with the same delivery id"
    );
    assert_eq!(retried[0]["body"], retried[1]["body"], "the same ids");
    let mut ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        8,
        "every event once after deduplication: {ids:?}"
    );

    // Down for longer than retry_for: the batch is dropped and a gap reported next.
    backend.answer(json!({ "down": true }));
    node(&server, "lifecycle", &[("HOOK_SOCKETS", "1".into())]);
    std::thread::sleep(Duration::from_millis(2500));
    backend.answer(json!({}));
    let gaps = backend.wait_for("io.ringcast.gap", Duration::from_secs(15), |e| {
        !e.is_empty()
    });
    assert_eq!(gaps.len(), 1, "one gap: {gaps:?}");
    assert_eq!(gaps[0]["data"]["reason"], "retry_exhausted");
    assert!(gaps[0]["data"]["dropped"].as_u64().is_some_and(|n| n >= 1));
    drop(server);
}

#[test]
fn the_refresh_hook_renews_a_socket_and_a_failing_one_ends_it_after_the_extension() {
    let dir = TempDir::new("hooks-refresh");
    let backend = Backend::start(&dir, "backend");
    let extra = r#"
[hooks]
connect = "backend"
refresh = "backend"
refresh_retry = "300ms"
refresh_max_extension = "2s"

[lifecycle]
endpoint = "backend"
batch_interval = "20ms"

[namespaces."/"]
auth = "hook"
join = ["*"]
join_hook = "backend"
"#;
    let server = Server::start(&config(&backend, 1, extra), &dir, &[]);
    let now = unix_now();
    backend.answer(json!({ "rules": [
        { "match": { "type": "io.ringcast.connect" }, "status": 200,
          "body": { "allow": true, "user": "7", "expires_at": now + 2 } },
        { "match": { "type": "io.ringcast.refresh" }, "status": 200,
          "body": { "allow": true, "expires_at": now + 60 } },
    ]}));
    node(&server, "refreshed", &[("HOOK_STAY_MS", "3000".into())]);
    let refreshes = backend.events("io.ringcast.refresh");
    assert_eq!(refreshes.len(), 1, "one refresh: {refreshes:?}");
    assert_eq!(refreshes[0]["data"]["user"], "7");
    assert_eq!(refreshes[0]["data"]["expires_at"], now + 2);

    // The refresh hook fails: kept up to refresh_max_extension past the expiry, then ended.
    let now = unix_now();
    backend.answer(json!({ "rules": [
        { "match": { "type": "io.ringcast.connect" }, "status": 200,
          "body": { "allow": true, "user": "8", "expires_at": now + 2 } },
        { "match": { "type": "io.ringcast.refresh" }, "status": 500 },
    ]}));
    node(&server, "expired", &[("HOOK_MIN_MS", "2500".into())]);
    assert!(
        backend.events("io.ringcast.refresh").len() >= 3,
        "the failed refresh was tried again"
    );
    let disconnected = backend.wait_for(
        "io.ringcast.socket.disconnected",
        Duration::from_secs(5),
        |events| events.iter().any(|e| e["data"]["user"] == "8"),
    );
    let ended = disconnected
        .iter()
        .find(|e| e["data"]["user"] == "8")
        .expect("the expired socket's disconnect");
    assert_eq!(ended["data"]["reason"], "token expired");

    // The join hook: allow and deny.
    backend.answer(json!({ "rules": [
        { "match": { "type": "io.ringcast.join", "room": "ok:1" }, "status": 200, "body": { "allow": true } },
        { "match": { "type": "io.ringcast.join" }, "status": 200,
          "body": { "allow": false, "error": { "message": "room closed", "data": { "code": "closed" } } } },
    ]}));
    node(&server, "join-hook", &[]);
    let joins = backend.events("io.ringcast.join");
    assert_eq!(joins.len(), 2);
    assert_eq!(joins[0]["data"]["room"], "ok:1");
}

#[test]
fn a_shutdown_flushes_queued_events_and_api_disconnects_are_named() {
    let dir = TempDir::new("hooks-shutdown");
    let backend = Backend::start(&dir, "backend");
    let api_port = common::free_port();
    let extra = FORWARDING.replace(
        "[lifecycle]",
        &format!("[api]\nlisten = \"127.0.0.1:{api_port}\"\n\n[lifecycle]"),
    );
    let mut server = Server::start(
        &config(&backend, 2, &extra).replace("[server]\n", "[server]\nshutdown_grace = \"5s\"\n"),
        &dir,
        &[],
    );
    let url = server.url.clone();
    let holder = std::thread::spawn(move || {
        script::run(
            Runtime::Node,
            "js/hooks.mjs",
            &["websocket", "hold"],
            &url,
            &[("HOOK_SOCKETS", "3".into())],
            SCRIPT_DEADLINE,
        )
    });
    let connected = backend.wait_for(
        "io.ringcast.socket.connected",
        Duration::from_secs(10),
        |events| events.len() >= 3,
    );
    assert_eq!(connected.len(), 3);
    // One is disconnected through the API: its reason says so.
    let first = connected[0]["subject"]
        .as_str()
        .expect("a socket id")
        .to_owned();
    let body = json!({ "to": { "sockets": [first] }, "reason": "maintenance" }).to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", api_port)).expect("the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "POST /v1/disconnect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("the request");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let gone = backend.wait_for(
        "io.ringcast.socket.disconnected",
        Duration::from_secs(5),
        |events| !events.is_empty(),
    );
    assert_eq!(gone[0]["subject"], first.as_str());
    assert_eq!(gone[0]["data"]["reason"], "api disconnect");
    // A slow backend, then SIGTERM: what is queued still goes out before the process ends.
    backend.answer(json!({ "rules": [{ "delay_ms": 400, "status": 204 }] }));
    server.signal(libc::SIGTERM);
    let started = Instant::now();
    let status = script::wait_with_deadline(&mut server.child, Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "a clean exit: {status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "within the grace"
    );
    let reasons: Vec<Value> = backend
        .delivered("io.ringcast.socket.disconnected")
        .iter()
        .map(|event| event["data"]["reason"].clone())
        .collect();
    assert_eq!(
        reasons,
        [
            json!("api disconnect"),
            json!("server shutting down"),
            json!("server shutting down")
        ]
    );
    holder.join().expect("the holder").expect_ok();
}

/// GETs `path` from a server: the body.
fn http_get(url: &str, path: &str) -> String {
    let authority = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(authority).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn a_failing_startup_ping_stops_the_start_when_asked_to() {
    let dir = TempDir::new("hooks-startup");
    let backend = Backend::start(&dir, "backend");
    let text =
        config(&backend, 1, "").replace("startup_check = \"off\"", "startup_check = \"fail\"");
    let path = dir.path("ringcast.toml");
    std::fs::write(&path, text).expect("config");
    let output = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(["--config", s(&path), "--host", "127.0.0.1", "--port"])
        .arg(common::free_port().to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run ringcast");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("endpoints.gone") && stderr.contains("startup ping"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(SECRET),
        "no secret in the message: {stderr}"
    );
    // The reachable endpoint was pinged, signed.
    let pings = backend.events("io.ringcast.ping");
    assert_eq!(pings.len(), 1);
}

/// A CA (`ca.pem`) and a certificate for 127.0.0.1 (an IP SAN) and localhost signed by it
/// (`leaf.pem`, `leaf.key`), made by `tests/control/pki.sh` in `dir`.
fn make_pki(dir: &TempDir) -> (PathBuf, PathBuf, PathBuf) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/control/pki.sh");
    let status = Command::new("sh")
        .arg(script)
        .arg(dir.path(""))
        .arg("IP:127.0.0.1,DNS:localhost")
        .stdin(Stdio::null())
        .status()
        .expect("run tests/control/pki.sh (is openssl installed?)");
    assert!(status.success(), "pki.sh");
    (
        dir.path("ca.pem"),
        dir.path("leaf.pem"),
        dir.path("leaf.key"),
    )
}

#[test]
fn an_https_endpoint_is_verified_and_used() {
    let dir = TempDir::new("hooks-https");
    let (ca, cert, key) = make_pki(&dir);
    let backend = Backend::start_tls(&dir, "backend", &cert, &key);
    assert!(backend.url().starts_with("https://127.0.0.1:"));
    let trusting = config(&backend, 1, CONNECT_HOOK).replacen(
        "timeout = \"2s\"\n",
        &format!(
            "timeout = \"2s\"\nca_file = \"{}\"\nstartup_check = \"fail\"\n",
            s(&ca)
        ),
        1,
    );
    {
        let server = Server::start(&trusting, &dir, &[]);
        let pings = backend.wait_for("io.ringcast.ping", Duration::from_secs(5), |e| {
            !e.is_empty()
        });
        assert_eq!(pings.len(), 1, "the startup ping, over TLS");
        backend.allow_user_42();
        node(&server, "allow", &[]);
        let request = backend.first_request("io.ringcast.connect");
        assert_eq!(request["signature_ok"], true, "{request}");
        assert_eq!(request["status"], 200, "{request}");
    }

    // Without the CA the backend's certificate is not trusted: the startup ping fails, and
    // with startup_check = "fail" the start stops.
    let untrusting = config(&backend, 1, "").replacen(
        "timeout = \"2s\"\n",
        "timeout = \"2s\"\nstartup_check = \"fail\"\n",
        1,
    );
    let path = dir.path("untrusting.toml");
    std::fs::write(&path, untrusting).expect("config");
    let before = backend.requests().len();
    let output = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(["--config", s(&path), "--host", "127.0.0.1", "--port"])
        .arg(common::free_port().to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run ringcast");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("endpoints.backend") && stderr.contains("startup ping"),
        "{stderr}"
    );
    assert_eq!(
        backend.requests().len(),
        before,
        "nothing reached the backend"
    );
}

#[test]
fn a_rules_limits_hold_and_a_full_queue_is_reported_as_a_gap() {
    let dir = TempDir::new("hooks-limits");
    let backend = Backend::start(&dir, "backend");
    let extra = r#"
[lifecycle]
endpoint = "backend"
batch_interval = "20ms"
queue_max = 4

[namespaces."/"]
auth = "none"

[[namespaces."/".events]]
name = "wide:*"
endpoint = "backend"
max_in_flight = 4

[[namespaces."/".events]]
name = "retry:*"
endpoint = "backend"
retries = 1

[[namespaces."/".events]]
name = "big:*"
endpoint = "backend"
max_bytes = 100
"#;
    let server = Server::start(&config(&backend, 1, extra), &dir, &[]);
    backend.wait_for("io.ringcast.node.started", Duration::from_secs(5), |e| {
        !e.is_empty()
    });
    backend.answer(json!({ "rules": [
        { "match": { "type": "io.ringcast.event", "event": "wide:x" }, "delay_ms": 500, "echo": true },
        { "match": { "type": "io.ringcast.event", "event": "retry:x" }, "times": 1,
          "status": 503, "headers": { "Retry-After": "1" } },
        { "match": { "type": "io.ringcast.event" }, "echo": true },
        // Lifecycle batches are slow: the queue (4 events) fills.
        { "delay_ms": 1500, "status": 204 },
    ]}));
    node(&server, "rule-limits", &[]);
    // The 503 was retried with the same event id and delivery id.
    let retried: Vec<Value> = backend
        .requests()
        .into_iter()
        .filter(|r| r["events"][0]["data"]["event"] == "retry:x")
        .collect();
    assert_eq!(retried.len(), 2, "{retried:?}");
    assert_eq!(retried[0]["status"], 503);
    assert_eq!(retried[0]["events"][0]["id"], retried[1]["events"][0]["id"]);
    assert_eq!(
        retried[0]["headers"]["ringcast-delivery"],
        retried[1]["headers"]["ringcast-delivery"]
    );
    assert!(
        !backend
            .events("io.ringcast.event")
            .iter()
            .any(|e| e["data"]["event"] == "big:x"),
        "the large event was not forwarded"
    );
    // The lifecycle queue holds 4 events at most: of a crowd's, the rest is reported as a gap.
    node(&server, "crowd", &[("HOOK_SOCKETS", "20".into())]);
    let gaps = backend.wait_for("io.ringcast.gap", Duration::from_secs(15), |e| {
        !e.is_empty()
    });
    assert!(
        gaps.iter().any(|g| g["data"]["reason"] == "queue_full"),
        "{gaps:?}"
    );
    drop(server);
}

/// The `v1=` of `body` signed at `t`.
fn sign(t: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "t={t},v1={}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// POSTs a body with a signature header to the backend; its status.
fn post(backend: &Backend, signature: &str, body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", backend.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let head = format!(
        "POST /ringcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\n\
         Ringcast-Signature: {signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(body).expect("body");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0)
}

#[test]
fn signatures_verify_and_replays_fail() {
    let dir = TempDir::new("hooks-signature");
    let backend = Backend::start(&dir, "backend");
    let server = Server::start(&config(&backend, 1, CONNECT_HOOK), &dir, &[]);
    node(&server, "allow", &[]);
    let request = backend.first_request("io.ringcast.connect");
    assert_eq!(request["signature_ok"], true);
    let body = request["body"].as_str().expect("body").as_bytes().to_vec();
    let header = request["headers"]["ringcast-signature"]
        .as_str()
        .expect("signature")
        .to_owned();
    let t: u64 = header
        .split(',')
        .find_map(|part| part.strip_prefix("t="))
        .and_then(|t| t.parse().ok())
        .expect("t");
    // The header is the HMAC of `t.body` with the endpoint's secret.
    assert_eq!(header, sign(t, &body));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert_eq!(
        post(&backend, &sign(now, &body), &body),
        200,
        "a fresh signature"
    );
    assert_eq!(
        post(&backend, &sign(now - 400, &body), &body),
        401,
        "t 400 s old"
    );
    let mut altered = body.clone();
    altered[10] ^= 1;
    assert_eq!(
        post(&backend, &header, &altered),
        401,
        "a body changed by one byte"
    );
    drop(server);
}
