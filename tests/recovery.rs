//! Connection state recovery (issue 14, spec `ecosystem-protocols.md` D) with npm
//! socket.io-client 4.x against the real binary on two shards, over WebSocket and
//! long-polling: a client whose connection goes away comes back with its id, rooms and the
//! events it missed; a bogus pid, or a real one with a bogus offset, gets a fresh session. With
//! a real `redis-server`, two nodes: the client comes back on the other node, or on its own
//! after a SIGKILL and a restart; past the window it gets a fresh session.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::redis::{RedisCluster, RedisServer};
use common::script::{self, Runtime};
use common::standalone::{self, TempDir};
use common::Server;

/// Two shards, a 10 s window, and pings every 300 ms (a client gone silent is noticed within
/// 600 ms: `ping timeout`, after which its session is kept too).
const RECOVERY: &[&str] = &[
    "--cores",
    "2",
    "--recovery-window",
    "10000",
    "--ping-interval",
    "300",
    "--ping-timeout",
    "300",
];

fn scenario(mode: &str, name: &str) {
    let server = Server::start(RECOVERY);
    script::run(
        Runtime::Node,
        "js/recovery.mjs",
        &[mode, name],
        &server.url(),
        &[],
        Duration::from_secs(40),
    )
    .expect_ok();
}

#[test]
fn a_lost_websocket_client_is_recovered() {
    scenario("websocket", "recovered");
}

#[test]
fn a_lost_polling_client_is_recovered() {
    scenario("polling", "recovered");
}

#[test]
fn a_client_whose_tcp_connection_dies_is_recovered() {
    scenario("websocket", "killed");
}

#[test]
fn a_polling_client_gone_silent_is_recovered_after_its_ping_timeout() {
    scenario("polling", "killed");
}

#[test]
fn a_bogus_pid_gets_a_fresh_session() {
    scenario("websocket", "bogus");
}

/// A cluster node: two shards on `redis`, recovery with `window`, an HTTP API of its own.
struct Node {
    server: standalone::Server,
    api: String,
}

/// `redis` is the `[redis]` table's line: `url = "…"` or `cluster = "…"`.
fn node(dir: &TempDir, name: &str, redis: &str, window: &str) -> Node {
    let api_port = common::free_port();
    let config = format!(
        "[server]\ncores = 2\n\n[redis]\n{redis}\n\n[recovery]\nwindow = \"{window}\"\n\n\
         [api]\nlisten = \"127.0.0.1:{api_port}\"\n"
    );
    let path = dir.path(&format!("{name}.toml"));
    std::fs::write(&path, config).expect("write the config");
    Node {
        server: standalone::Server::start_with(&path, &[], &[]),
        api: format!("http://127.0.0.1:{api_port}"),
    }
}

/// Runs `js/recovery-cluster.mjs <scenario>` against nodes `a` and `b`; when it prints
/// `kill-a`, `restart` gets node A (it kills it and starts it again) and the script is told
/// the new URL. Panics with the script's output unless it exits 0 in time.
fn cluster_scenario(
    scenario: &str,
    redis_urls: &str,
    a: &mut Node,
    b: &Node,
    mut restart: impl FnMut(&mut Node),
) {
    let mut child = Command::new("node")
        .arg("js/recovery-cluster.mjs")
        .arg(scenario)
        .current_dir(script::clients_dir())
        .env("RINGCAST_URL", &a.server.url)
        .env("NODE_B_URL", &b.server.url)
        .env("API_A", &a.api)
        .env("API_B", &b.api)
        .env("REDIS_URLS", redis_urls)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    let stderr = script::collect(child.stderr.take());
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let (lines, said) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in stdout.lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = lines.send(line);
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(45);
    while let Ok(line) = said.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if line == "kill-a" {
            restart(a);
            writeln!(stdin, "{}", a.server.url).expect("tell the script");
        }
    }
    let status = script::wait_with_deadline(&mut child, Duration::from_secs(5));
    let stdout = reader.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "recovery-cluster.mjs {scenario} failed ({status:?})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
}

fn url_of(redis: &RedisServer) -> String {
    format!("url = \"{}\"", redis.url())
}

#[test]
fn a_client_recovers_on_another_node() {
    let redis = RedisServer::start();
    let dir = TempDir::new("recovery-across");
    let mut a = node(&dir, "a", &url_of(&redis), "10s");
    let b = node(&dir, "b", &url_of(&redis), "10s");
    cluster_scenario("across", &redis.url(), &mut a, &b, |_| {
        unreachable!("no restart")
    });
}

#[test]
fn a_client_recovers_on_another_node_of_a_redis_cluster() {
    let cluster = RedisCluster::start(3);
    let dir = TempDir::new("recovery-redis-cluster");
    let seeds = format!("cluster = \"{}\"", cluster.seeds());
    let mut a = node(&dir, "a", &seeds, "10s");
    let b = node(&dir, "b", &seeds, "10s");
    cluster_scenario("across", &cluster.urls(), &mut a, &b, |_| {
        unreachable!("no restart")
    });
}

#[test]
fn a_client_recovers_after_its_node_is_killed_and_restarted() {
    let redis = RedisServer::start();
    let dir = TempDir::new("recovery-restart");
    let mut a = node(&dir, "a", &url_of(&redis), "10s");
    let b = node(&dir, "b", &url_of(&redis), "10s");
    cluster_scenario("restart", &redis.url(), &mut a, &b, |a| {
        a.server.signal(libc::SIGKILL);
        let _ = a.server.child.wait();
        *a = node(&dir, "a", &url_of(&redis), "10s");
    });
}

#[test]
fn a_client_away_past_the_window_gets_a_fresh_session_on_another_node() {
    let redis = RedisServer::start();
    let dir = TempDir::new("recovery-expired");
    let mut a = node(&dir, "a", &url_of(&redis), "1s");
    let b = node(&dir, "b", &url_of(&redis), "10s");
    cluster_scenario("expired", &redis.url(), &mut a, &b, |_| {
        unreachable!("no restart")
    });
}
