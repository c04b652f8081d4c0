//! Runs every loadtest scenario briefly against the real `ringcast` binary (the sibling of
//! the loadtest binary in the target directory, built when the whole workspace is tested),
//! and checks that a server which breaks the contract fails the run. The cluster fan-out runs
//! against two ringcast processes sharing a real `redis-server` (from the PATH).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A `ringcast` process on a free loopback port, killed (by its pid) when dropped.
struct Ringcast {
    port: u16,
    child: Child,
}

impl Ringcast {
    fn start(args: &[&str]) -> Ringcast {
        let binary = ringcast_binary();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let mut child = Command::new(&binary)
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--no-pin",
                ])
                .args(args)
                .env("RUST_LOG", "info")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn ringcast");
            let stdout = child.stdout.take().expect("piped stdout");
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let listening = lines.any(|line| line.contains("ringcast listening"));
            // Keep reading so the server never writes into a full or closed pipe.
            std::thread::spawn(move || lines.for_each(drop));
            if listening {
                return Ringcast { port, child };
            }
            let _ = child.wait();
        }
        panic!("ringcast did not start");
    }
}

impl Drop for Ringcast {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ringcast binary next to the loadtest binary; built first if it isn't there.
fn ringcast_binary() -> PathBuf {
    let loadtest = PathBuf::from(env!("CARGO_BIN_EXE_loadtest"));
    let binary = loadtest.with_file_name("ringcast");
    if !binary.exists() {
        let release = loadtest
            .parent()
            .and_then(|dir| dir.file_name())
            .is_some_and(|name| name == "release");
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "ringcast", "--bin", "ringcast"])
            .args(release.then_some("--release"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "could not build ringcast");
    }
    binary
}

/// A `redis-server` on a free loopback port, without persistence, killed (by its pid) when
/// dropped.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Redis {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(std::env::temp_dir())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server (is it installed?)");
            // Up to 5 s for it to answer; if it exits first, the port was taken: another one.
            for _ in 0..250 {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if redis_command(port, "PING").starts_with("+PONG") {
                    return Redis { port, child };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Waits up to 10 s until `nodes` connections are subscribed to both channels and
    /// patterns (each node's link): a node that has not yet subscribed would miss what the
    /// others publish, and the run would count it as lost.
    fn wait_subscribed(&self, nodes: usize) {
        let subscribed = || {
            redis_command(self.port, "CLIENT LIST")
                .lines()
                .filter(|line| {
                    let count = |field: &str| {
                        line.split(' ')
                            .find_map(|pair| pair.strip_prefix(field))
                            .and_then(|n| n.parse::<u64>().ok())
                            .unwrap_or(0)
                    };
                    count("sub=") > 0 && count("psub=") > 0
                })
                .count()
        };
        for _ in 0..500 {
            if subscribed() == nodes {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the nodes did not subscribe in Redis within 10 s");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One inline command to the Redis on `port`; its raw reply (empty if none came in 1 s).
fn redis_command(port: u16, command: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream
        .write_all(format!("{command}\r\n").as_bytes())
        .is_err()
    {
        return String::new();
    }
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    // A bulk reply (`$<len>\r\n<bytes>\r\n`) is read whole; any other is one line.
    for _ in 0..1000 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&reply);
        let Some((head, rest)) = text.split_once("\r\n") else {
            continue;
        };
        match head.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            Some(len) if rest.len() < len + 2 => continue,
            _ => break,
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

fn loadtest(server: &Ringcast, json: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["--addr", &format!("127.0.0.1:{}", server.port)])
        .args([
            "--server-pid",
            &server.child.id().to_string(),
            "--quiet",
            "--label",
            "ringcast",
        ])
        .args(["--json", json.to_str().expect("utf-8 path")])
        .args(args)
        .output()
        .expect("run loadtest")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadtest-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

fn last_result(json: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(json).expect("json lines written");
    let line = text.lines().last().expect("one line per run");
    serde_json::from_str(line).expect("valid JSON")
}

fn assert_clean(output: &Output, result: &serde_json::Value) {
    assert!(
        output.status.success(),
        "loadtest failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(result["ok"], true);
    for field in ["lost", "reordered", "corrupt", "errors"] {
        assert_eq!(result[field], 0, "{field}");
    }
    assert!(result["count"].as_u64().unwrap() > 0);
    assert!(result["server_cpu_ns_per_unit"].as_f64().is_some());
}

#[test]
fn every_scenario_runs_clean_against_ringcast() {
    let server = Ringcast::start(&["--cores", "2"]);
    let json = scratch("results.jsonl");
    let svg = scratch("fanout.svg");
    let timing = ["--duration", "1", "--warmup", "0.5"];

    let fanout = [
        "fanout",
        "--clients",
        "60",
        "--rooms",
        "3",
        "--publishers",
        "6",
        "--window",
        "4",
        "--svg",
    ];
    let output = loadtest(
        &server,
        &json,
        &[&fanout[..], &[svg.to_str().unwrap()], &timing].concat(),
    );
    let result = last_result(&json);
    assert_clean(&output, &result);
    // 6 publishers, each to its own room of 20: every publish reaches 20 clients.
    assert_eq!(result["expected"], result["delivered"]);
    assert_eq!(result["expected"].as_u64().unwrap() % 20, 0);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("p99.9"));

    let fixed = [
        "fanout",
        "--clients",
        "20",
        "--publishers",
        "2",
        "--rate",
        "200",
    ];
    let output = loadtest(&server, &json, &[&fixed[..], &timing].concat());
    let result = last_result(&json);
    assert_clean(&output, &result);
    // 200 publishes/s to a room of 20 for about a second.
    let rate = result["rate"].as_f64().unwrap();
    assert!((2_000.0..6_000.0).contains(&rate), "{rate} deliveries/s");

    let output = loadtest(
        &server,
        &json,
        &[&["echo", "--clients", "10"][..], &timing].concat(),
    );
    assert_clean(&output, &last_result(&json));

    let output = loadtest(
        &server,
        &json,
        &[&["polling", "--clients", "5"][..], &timing].concat(),
    );
    assert_clean(&output, &last_result(&json));

    let connect = [
        "connect",
        "--clients",
        "200",
        "--concurrency",
        "20",
        "--hold",
        "0.5",
    ];
    let output = loadtest(&server, &json, &connect);
    let result = last_result(&json);
    assert_clean(&output, &result);
    assert_eq!(result["ready"], 200);
    assert!(result["server_rss_per_conn"].as_f64().is_some());

    let table = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["table", json.to_str().unwrap()])
        .output()
        .expect("run loadtest table");
    assert!(table.status.success());
    let table = String::from_utf8_lossy(&table.stdout);
    for scenario in [
        "fanout 60 clients in 3 rooms",
        "echo 10 clients",
        "polling 5 clients",
        "connect 200",
    ] {
        assert!(table.contains(scenario), "{scenario} missing from\n{table}");
    }
}

/// `--deflate` against a server that compresses: every 2 KB delivery comes compressed, is
/// inflated and checked, and takes far fewer bytes than without; against one that does not
/// agree, the connect fails.
#[test]
fn deflate_runs_inflate_every_delivery() {
    let server = Ringcast::start(&["--cores", "2", "--per-message-deflate"]);
    let json = scratch("deflate.jsonl");
    let run = |extra: &[&str]| {
        let fanout = [
            "--text-padding",
            "fanout",
            "--clients",
            "20",
            "--publishers",
            "2",
            "--payload",
            "2048",
            "--duration",
            "1",
            "--warmup",
            "0.5",
        ];
        let output = loadtest(&server, &json, &[extra, &fanout[..]].concat());
        let result = last_result(&json);
        assert_clean(&output, &result);
        result["wire_bytes_per_unit"].as_f64().expect("wire bytes")
    };
    let plain = run(&[]);
    let compressed = run(&["--deflate"]);
    assert!(plain > 2048.0, "{plain} bytes per delivery");
    assert!(compressed < plain / 2.0, "{compressed} against {plain}");

    let refusing = Ringcast::start(&["--cores", "1"]);
    let output = loadtest(
        &refusing,
        &json,
        &["--deflate", "echo", "--clients", "1", "--duration", "0.5"],
    );
    assert!(
        !output.status.success(),
        "a server without the extension fails a --deflate run"
    );
}

#[test]
fn api_emit_and_rooms_per_client_run_clean_against_ringcast() {
    // The HTTP API on a port of its own, with one key that may do everything.
    let api_port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let key = "loadtest-test-api-key-0123456789abcdef";
    let config = scratch("api.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = \"127.0.0.1:{api_port}\"\n\n[api.keys.test]\nkey = \"{key}\"\n\
             scopes = [\"*\"]\n"
        ),
    )
    .expect("write the config");
    let server = Ringcast::start(&["--cores", "2", "--config", config.to_str().unwrap()]);
    let json = scratch("api-results.jsonl");
    let timing = ["--duration", "1", "--warmup", "0.5"];
    let api_addr = format!("127.0.0.1:{api_port}");
    let api = ["api-emit", "--api-addr", &api_addr, "--api-key", key];

    let single = [&api[..], &["--clients", "20", "--rate", "200"], &timing].concat();
    let output = loadtest(&server, &json, &single);
    let result = last_result(&json);
    assert_clean(&output, &result);
    // Every emit reaches all 20 members.
    assert_eq!(result["expected"], result["delivered"]);
    assert_eq!(result["expected"].as_u64().unwrap() % 20, 0);
    let rate = result["rate"].as_f64().unwrap();
    assert!((100.0..300.0).contains(&rate), "{rate} emits/s");

    let batch = [
        &api[..],
        &[
            "--clients",
            "10",
            "--batch",
            "5",
            "--rate",
            "0",
            "--window",
            "1",
        ],
        &timing,
    ]
    .concat();
    let output = loadtest(&server, &json, &batch);
    let result = last_result(&json);
    assert_clean(&output, &result);
    assert_eq!(result["expected"], result["delivered"]);

    // A wrong key fails the run (the API answers 401).
    let wrong = [
        "api-emit",
        "--api-addr",
        &api_addr,
        "--api-key",
        "not-the-key",
        "--clients",
        "2",
    ];
    let output = loadtest(&server, &json, &[&wrong[..], &timing].concat());
    assert!(!output.status.success());
    assert_eq!(last_result(&json)["ok"], false);

    let connect = [
        "connect",
        "--clients",
        "50",
        "--concurrency",
        "10",
        "--hold",
        "0.2",
        "--rooms-per-client",
        "3",
    ];
    let output = loadtest(&server, &json, &connect);
    let result = last_result(&json);
    assert_clean(&output, &result);
    assert_eq!(result["ready"], 50);
    assert_eq!(result["params"]["rooms_per_client"], 3);
}

#[test]
fn a_server_that_drops_clients_fails_the_run() {
    // Echo payloads above the server's limit get the client disconnected.
    let server = Ringcast::start(&["--cores", "1", "--max-payload", "100"]);
    let json = scratch("refused.jsonl");
    let output = loadtest(
        &server,
        &json,
        &[
            "echo",
            "--clients",
            "3",
            "--payload",
            "500",
            "--duration",
            "1",
            "--warmup",
            "0.2",
        ],
    );
    assert!(!output.status.success());
    let result = last_result(&json);
    assert_eq!(result["ok"], false);
    assert!(result["errors"].as_u64().unwrap() > 0);
    assert!(result["failure"]
        .as_str()
        .unwrap()
        .contains("client errors"));
}

#[test]
fn nothing_listening_is_reported_not_hung() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["--addr", &format!("127.0.0.1:{port}"), "--quiet"])
        .args([
            "echo",
            "--clients",
            "2",
            "--duration",
            "0.5",
            "--warmup",
            "0.1",
        ])
        .output()
        .expect("run loadtest");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("never got ready"));
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn one_member_that_never_reads_costs_the_others_nothing() {
    // One of 1000 room members stops reading after it joins (its receive buffer cut to 4 KiB).
    // With the server's kernel send buffers capped at 16 KiB, its queue on the server soon
    // fills (to 256 KiB here): it is disconnected as a slow consumer and counted, and every
    // other member gets every message, in order, at full rate, with the server's memory
    // bounded.
    let server = Ringcast::start(&[
        "--cores",
        "1",
        "--max-outbound",
        "262144",
        "--send-buffer",
        "16384",
        "--stats-path",
        "/stats",
    ]);
    let json = scratch("stalled.jsonl");
    let output = loadtest(
        &server,
        &json,
        &[
            "fanout",
            "--clients",
            "1000",
            "--publishers",
            "4",
            "--payload",
            "1000",
            "--duration",
            "4",
            "--warmup",
            "1",
            "--concurrency",
            "200",
            "--stalled",
            "1",
        ],
    );
    let result = last_result(&json);
    assert_clean(&output, &result);
    // 999 readers, each delivery of 1 KB counted once: far more than the stalled queue holds.
    assert!(result["delivered"].as_u64().unwrap() > 100_000);
    // Without the bound the stalled member's queue would grow by every publish's 1 KB.
    let rss = result["server_rss_bytes"].as_u64().unwrap();
    assert!(rss < 256 << 20, "server RSS {rss} bytes");
    // The stalled member was disconnected as a slow consumer, and counted.
    let stats = http_get(server.port, "/stats");
    assert!(
        stats.contains(r#""slow_consumers_disconnected":1,"#),
        "stats: {stats}"
    );
}

/// A GET on its own connection; the response body.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

#[test]
fn after_churn_the_server_holds_nothing() {
    // A short churn soak: 100 stable clients check every message while 900 others come and
    // go as fast as they can; once all have gone, the server's stats show no session, socket,
    // room or timer left.
    let server = Ringcast::start(&["--cores", "2", "--stats-path", "/stats"]);
    let json = scratch("churn.jsonl");
    let stats = format!("http://127.0.0.1:{}/stats", server.port);
    let output = loadtest(
        &server,
        &json,
        &[
            "churn",
            "--clients",
            "1000",
            "--stable",
            "100",
            "--rooms",
            "10",
            "--duration",
            "3",
            "--warmup",
            "1",
            "--concurrency",
            "200",
            "--stats-url",
            &stats,
        ],
    );
    let result = last_result(&json);
    assert_clean(&output, &result);
    let leftover = &result["leftover"];
    for field in [
        "sessions",
        "websockets",
        "sockets",
        "rooms",
        "engine_timers",
        "socketio_timers",
    ] {
        assert_eq!(leftover[field], 0, "{field} left after the run: {leftover}");
    }
}

#[test]
fn cluster_fanout_over_two_ringcast_nodes_loses_nothing() {
    // Two single-core nodes share one Redis. Client i joins room i % 5 and connects to node
    // i % 2, so every room has members on both: a publish on one node reaches half its room
    // through Redis, and each of those deliveries is checked (count, order, content).
    let redis = Redis::start();
    let url = redis.url();
    let a = Ringcast::start(&["--cores", "1", "--redis", &url]);
    let b = Ringcast::start(&["--cores", "1", "--redis", &url]);
    redis.wait_subscribed(2);
    let json = scratch("cluster.jsonl");
    let cluster = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args([
                "--addr",
                &format!("127.0.0.1:{},127.0.0.1:{}", a.port, b.port),
                "--server-pid",
                &format!("{},{}", a.child.id(), b.child.id()),
                "--redis-pid",
                &redis.child.id().to_string(),
                "--quiet",
                "--label",
                "ringcast",
                "--json",
                json.to_str().expect("utf-8 path"),
            ])
            .args(args)
            .output()
            .expect("run loadtest")
    };
    let fanout = [
        "fanout",
        "--clients",
        "40",
        "--rooms",
        "5",
        "--publishers",
        "10",
        "--window",
        "8",
    ];
    let timing = ["--duration", "1.5", "--warmup", "0.5"];
    let output = cluster(&[&fanout[..], &timing].concat());
    let result = last_result(&json);
    assert_clean(&output, &result);
    assert_eq!(result["expected"], result["delivered"]);
    // Every publish reaches its room of 8: 4 members on each node.
    assert_eq!(result["expected"].as_u64().unwrap() % 8, 0);
    assert!(result["key"].as_str().unwrap().ends_with("over 2 servers"));
    let roles: Vec<&str> = result["processes"]
        .as_array()
        .expect("each process reported")
        .iter()
        .map(|p| p["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["server", "server", "redis"]);
    for process in result["processes"].as_array().unwrap() {
        assert!(process["cpu_ns_per_unit"].as_f64().is_some(), "{process}");
    }
    let total = result["total_cpu_ns_per_unit"].as_f64().unwrap();
    assert!(total >= result["server_cpu_ns_per_unit"].as_f64().unwrap());

    // Remote intake: every publisher on node A, every other member on node B; only B's
    // deliveries are measured, and A's own copies are still checked.
    let intake = [
        "fanout",
        "--clients",
        "40",
        "--rooms",
        "5",
        "--publishers",
        "5",
        "--publishers-on",
        "0",
        "--window",
        "8",
        "--duration",
        "1",
        "--warmup",
        "0.5",
    ];
    let output = cluster(&intake);
    let result = last_result(&json);
    assert_clean(&output, &result);
    assert_eq!(result["expected"], result["delivered"]);
    assert!(result["key"].as_str().unwrap().contains("remote intake"));
    // 7 of each room's 8 deliveries are on B: the measured ones are at most 7/8 of them all.
    let (count, delivered) = (
        result["count"].as_u64().unwrap(),
        result["delivered"].as_u64().unwrap(),
    );
    assert!(count * 8 <= delivered * 7, "{count} of {delivered}");
}

#[test]
fn publishers_on_needs_several_servers() {
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["--addr", "127.0.0.1:1", "--quiet"])
        .args(["fanout", "--clients", "4", "--publishers-on", "0"])
        .output()
        .expect("run loadtest");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--publishers-on"));
}
