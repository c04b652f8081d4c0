//! Clustering through Redis with real parts: a `redis-server` on a free loopback port,
//! `ringcast --cores 2` processes on it, a Node socket.io server with `@socket.io/redis-adapter`
//! and `@socket.io/redis-emitter` (run by the script), and npm `socket.io-client` clients on
//! both shards of every ringcast node.
//!
//! Needs `node`, `npm ci --prefix tests/clients` and `redis-server` (`.ci/test` installs them).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::Server;

/// How long the script may run before it is killed.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(40);

/// Runs `tests/cluster/<script>` with the two nodes' URLs; panics with its output unless it
/// exits 0 in time.
fn run_script(script: &str, redis: &RedisServer, a: &Server, b: Option<&Server>) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cluster")
        .join(script);
    let mut child = Command::new("node")
        .arg(&path)
        .env("REDIS_URL", redis.url())
        .env("NODE_A_URL", a.url())
        .env("NODE_B_URL", b.map(Server::url).unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("script output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.is_some_and(|s| s.success()),
        "{script} failed ({status:?})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    stdout
}

#[test]
fn broadcasts_cross_between_two_ringcast_nodes_through_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    let args = [
        "--cores",
        "2",
        "--no-pin",
        "--stats-path",
        "/stats",
        "--redis",
        &url,
    ];
    let a = Server::start(&args);
    let b = Server::start(&args);
    let report = run_script("broadcast.mjs", &redis, &a, Some(&b));
    assert!(report.contains(r#""members":4"#), "{report}");
    // The stats endpoint shows the adapter: connected, and what crossed.
    for node in [&a, &b] {
        let stats = stats(node);
        let redis = &stats["redis"];
        assert_eq!(redis["connected"], true, "{stats}");
        assert!(redis["published"].as_u64() > Some(0), "{stats}");
        assert!(redis["received"].as_u64() > Some(0), "{stats}");
        assert_eq!(redis["dropped"], 0, "{stats}");
        assert_eq!(redis["publish_dropped"], 0, "{stats}");
    }
}

/// A node's stats endpoint, as JSON.
fn stats(node: &Server) -> serde_json::Value {
    let request = b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let response = common::exchange(node.addr, request, Duration::from_secs(5));
    let (status, body) = common::status_and_body(&response);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("stats JSON")
}

#[test]
fn broadcasts_cross_between_ringcast_a_node_server_and_the_emitter() {
    let redis = RedisServer::start();
    let a = Server::start(&["--cores", "2", "--no-pin", "--redis", &redis.url()]);
    let report = run_script("with_node.mjs", &redis, &a, None);
    assert!(report.contains(r#""members":3"#), "{report}");
}
