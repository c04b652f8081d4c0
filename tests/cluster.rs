//! Clustering through Redis with real parts: a `redis-server` on a free loopback port,
//! `ringcast --cores 2` processes on it, a Node socket.io server with `@socket.io/redis-adapter`
//! and `@socket.io/redis-emitter` (run by the script), and npm `socket.io-client` clients on
//! both shards of every ringcast node.
//!
//! Needs `node`, `npm ci --prefix tests/clients` and `redis-server` (`.ci/test` installs them).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::Server;
use ringcast::Server as Ringcast;

/// How long the script may run before it is killed.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(40);

/// Runs `tests/cluster/<script>` with the two nodes' URLs; panics with its output unless it
/// exits 0 in time.
fn run_script(script: &str, redis: &RedisServer, a: &Server, b: Option<&Server>) -> String {
    run_script_with(script, redis, &a.url(), b.map(Server::url), "")
}

/// [`run_script`] for servers by URL, on namespace `nsp` (empty: `/`).
fn run_script_with(
    script: &str,
    redis: &RedisServer,
    a: &str,
    b: Option<String>,
    nsp: &str,
) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cluster")
        .join(script);
    let mut child = Command::new("node")
        .arg(&path)
        .env("REDIS_URL", redis.url())
        .env("NODE_A_URL", a)
        .env("NODE_B_URL", b.unwrap_or_default())
        .env("NSP", nsp)
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
    let (a, b) = two_nodes(&url);
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

/// `builder` started in this process as a two-shard node on the Redis at `url` (loopback, a
/// port the OS picks).
fn library_node(url: &str, builder: ringcast::ServerBuilder) -> ringcast::ServerHandle {
    builder
        .configure(|config| {
            config.cores = 2;
            config.host = [127, 0, 0, 1].into();
            config.port = 0;
            config.pin_cores = false;
            config.force_epoll = common::epoll_requested();
            config.cluster.redis = Some(url.to_owned());
        })
        .start()
        .expect("start ringcast")
}

/// Two `ringcast --cores 2` nodes on the Redis at `url`, with their stats endpoints.
fn two_nodes(url: &str) -> (Server, Server) {
    let args = [
        "--cores",
        "2",
        "--no-pin",
        "--stats-path",
        "/stats",
        "--redis",
        url,
    ];
    (Server::start(&args), Server::start(&args))
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

#[test]
fn local_delivery_goes_on_and_cross_node_delivery_comes_back_after_redis_restarts() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let (a, b) = two_nodes(&url);
    let report = dialog(
        "outage.mjs",
        &[("NODE_A_URL", a.url()), ("NODE_B_URL", b.url())],
        |ask| match ask {
            "KILL" => redis.kill(),
            "RESTART" => redis.restart(),
            other => panic!("outage.mjs asked {other}"),
        },
    );
    assert!(report.contains("backAfterMs"), "{report}");
    eprintln!("after the restart: {report}");
    // Both nodes came through: connected again, one reconnect each, nothing dropped from Redis.
    for node in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut counts = stats(node);
        while counts["redis"]["connected"] != true && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            counts = stats(node);
        }
        assert_eq!(counts["redis"]["connected"], true, "{counts}");
        assert!(
            counts["redis"]["reconnects"].as_u64() >= Some(1),
            "{counts}"
        );
        assert_eq!(counts["redis"]["dropped"], 0, "{counts}");
    }
}

#[test]
fn a_dynamic_namespace_is_served_across_nodes_once_created() {
    let redis = RedisServer::start();
    let url = redis.url();
    let start = || {
        library_node(
            &url,
            Ringcast::builder().dynamic_namespace(
                |name| name.starts_with("/dyn-"),
                ringcast::apps::builtin_namespace(),
            ),
        )
    };
    let (a, b) = (start(), start());
    let url_of = |server: &ringcast::ServerHandle| format!("http://{}", server.local_addr());
    let report = run_script_with(
        "broadcast.mjs",
        &redis,
        &url_of(&a),
        Some(url_of(&b)),
        "/dyn-1",
    );
    assert!(report.contains(r#""members":4"#), "{report}");
    a.stop();
    b.stop();
    // A stopped server's link to Redis stops with it: no thread of it is left in this process.
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis_link_threads() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(redis_link_threads(), 0);
}

/// Threads of this process running a Redis link (other tests of this file run servers as
/// processes of their own, or stop theirs before they end).
fn redis_link_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
                .filter(|name| name.trim() == "ringcast-redis")
                .count()
        })
        .unwrap_or(0)
}

/// Runs `tests/cluster/<script>` with `env`, doing what it asks: each line it prints that is not
/// JSON is a request, handed to `on_ask`, then answered `done` on its stdin; the first JSON line
/// is its report, returned. Panics with its stderr if it ends without one.
fn dialog(script: &str, env: &[(&str, String)], mut on_ask: impl FnMut(&str)) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cluster")
        .join(script);
    let mut child = Command::new("node")
        .arg(&path)
        .envs(env.iter().map(|(key, value)| (*key, value)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    let mut answers = child.stdin.take().expect("stdin");
    let lines = {
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        lines
    };
    let deadline = Instant::now() + SCRIPT_DEADLINE;
    let mut report = None;
    while Instant::now() < deadline && report.is_none() {
        let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) else {
            if child.try_wait().expect("wait for node").is_some() {
                break;
            }
            continue;
        };
        if line.starts_with('{') {
            report = Some(line);
            continue;
        }
        on_ask(&line);
        writeln!(answers, "done").expect("answer the script");
    }
    let _ = child.kill();
    let output = child.wait_with_output().expect("script output");
    report.unwrap_or_else(|| {
        panic!(
            "{script} gave no report\n--- stderr ---\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn this_nodes_joins_leaves_and_disconnects_reach_the_other_nodes_sockets() {
    let redis = RedisServer::start();
    let url = redis.url();
    // A library-built node whose handle acts, and a node with clients on it.
    let a = library_node(
        &url,
        Ringcast::builder().namespace("/", ringcast::apps::builtin_namespace()),
    );
    let b = Server::start(&["--cores", "2", "--no-pin", "--redis", &url]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Node's server count: each process once (B's subscriptions may take a moment).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut count = runtime.block_on(a.of("/").server_count());
    while count != Ok(2) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        count = runtime.block_on(a.of("/").server_count());
    }
    assert_eq!(count, Ok(2));
    assert_eq!(runtime.block_on(a.of("/").local().server_count()), Ok(1));
    let text = |value: &str| ringcast::Args::new().with_str(value);
    let report = dialog("remote_operations.mjs", &[("NODE_B_URL", b.url())], |ask| {
        let all = a.of("/");
        match ask {
            "JOIN" => {
                // This node has no socket in "r": the others' are joined through Redis.
                runtime
                    .block_on(all.clone().to("r").sockets_join(["x"]))
                    .expect("joined");
                // The request crosses Redis before the emit does (both from this node).
                std::thread::sleep(Duration::from_millis(200));
                all.to("x").emit("message", &text("to x")).expect("emitted");
            }
            "LEAVE" => {
                runtime
                    .block_on(all.clone().to("r").sockets_leave(["x"]))
                    .expect("left");
                std::thread::sleep(Duration::from_millis(200));
                all.to("x")
                    .emit("message", &text("to x again"))
                    .expect("emitted");
            }
            "DISCONNECT" => {
                runtime
                    .block_on(all.to("r").disconnect_sockets(false))
                    .expect("disconnected");
            }
            other => panic!("remote_operations.mjs asked {other}"),
        }
    });
    assert!(
        report.contains(r#""reason":"io server disconnect""#),
        "{report}"
    );
    a.stop();
}
