//! The metrics and the logs from outside: the real binary's Prometheus exposition, on the main
//! listener (`--metrics-path`) and on its own (`--metrics-addr`), before and after real
//! WebSocket and polling traffic, each scrape checked by `promtool check metrics`; a library
//! server's ack round trips; the Redis adapter's state on two nodes; and `--log-format json`
//! lines from a shard thread.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::ws_client::Client;
use ringcast::{Args, Namespace, Server};

const WITHIN: Duration = Duration::from_secs(5);

/// One scrape's samples, `name{labels}` -> value.
type Samples = BTreeMap<String, f64>;

/// GETs `path` on `addr`; the status, the `Content-Type` and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let answer = common::exchange(addr, request.as_bytes(), WITHIN);
    let (status, body) = common::status_and_body(&answer);
    let text = String::from_utf8_lossy(&answer);
    let content_type = text
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body)
}

/// Runs `promtool check metrics` on `text`; panics with its complaints if it has any.
#[track_caller]
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child =
        child.expect("promtool not found: install the Debian package `prometheus` (.ci/test does)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool ran");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- the exposition:\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// Scrapes `path` on `addr`, checks it with promtool, and reads its samples.
#[track_caller]
fn scrape(addr: SocketAddr, path: &str) -> Samples {
    let (status, content_type, body) = get(addr, path);
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    promtool_check(&body);
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[track_caller]
fn value(samples: &Samples, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("{series} missing from {samples:#?}"))
}

#[test]
fn metrics_on_both_listeners_move_with_real_traffic_and_pass_promtool() {
    let metrics_port = common::free_port();
    let metrics_addr: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    let server = common::Server::start(&[
        "--cores",
        "2",
        "--metrics-path",
        "/metrics",
        "--metrics-addr",
        &metrics_addr.to_string(),
        "--max-connections",
        "3",
    ]);
    if server.is_external() {
        // ringcast's own flags and metrics.
        return;
    }
    let before = scrape(server.addr, "/metrics");
    let own_listener = scrape(metrics_addr, "/metrics");
    assert_eq!(value(&before, "ringcast_received_packets_total"), 0.0);
    assert_eq!(value(&own_listener, "ringcast_received_packets_total"), 0.0);
    // The metrics listener serves the metrics route only: no Engine.IO, no other path.
    assert_eq!(
        get(metrics_addr, "/socket.io/?EIO=4&transport=polling").0,
        404
    );
    assert_eq!(get(metrics_addr, "/stats").0, 404);

    // Two WebSocket clients in room "r", one polling session: the server's three sessions.
    let mut listener = Client::connect(server.addr, None);
    listener.join("r");
    let mut sender = Client::connect(server.addr, None);
    sender.join("r");
    let handshake = common::exchange(
        server.addr,
        &common::polling_request("GET", "EIO=4&transport=polling", ""),
        WITHIN,
    );
    assert_eq!(common::status_and_body(&handshake).0, 200);
    // A fourth is past --max-connections: refused, and counted by reason.
    let refused = common::exchange(
        server.addr,
        &common::polling_request("GET", "EIO=4&transport=polling", ""),
        WITHIN,
    );
    assert_eq!(common::status_and_body(&refused).0, 503);
    // A protocol this server does not speak: refused before admission, counted all the same.
    let refused = common::exchange(
        server.addr,
        &common::polling_request("GET", "EIO=5&transport=polling", ""),
        WITHIN,
    );
    assert_eq!(common::status_and_body(&refused).0, 400);
    for n in 0..5 {
        sender.send(&format!(r#"42["publish","r","m{n}"]"#));
        assert_eq!(listener.text(), format!(r#"42["message","m{n}"]"#));
        assert_eq!(sender.text(), format!(r#"42["message","m{n}"]"#));
    }

    for (addr, path) in [(server.addr, "/metrics"), (metrics_addr, "/metrics")] {
        let after = scrape(addr, path);
        let moved = |series: &str| value(&after, series) - value(&before, series);
        // 2 CONNECTs, 2 joins, 5 publishes, at least.
        assert!(
            moved("ringcast_received_packets_total") >= 9.0,
            "{after:#?}"
        );
        assert!(moved("ringcast_received_bytes_total") > 9.0 * 3.0);
        // Connect answers, join acks, and each publish to both members.
        assert!(moved("ringcast_sent_packets_total") >= 14.0);
        assert!(moved("ringcast_sent_bytes_total") > 14.0 * 3.0);
        assert_eq!(moved(r#"ringcast_broadcasts_total{origin="local"}"#), 5.0);
        assert_eq!(moved("ringcast_broadcast_deliveries_total"), 10.0);
        assert_eq!(
            moved(r#"ringcast_handshakes_refused_total{reason="session_limit"}"#),
            1.0
        );
        assert_eq!(
            moved(r#"ringcast_handshakes_refused_total{reason="unsupported_protocol"}"#),
            1.0
        );
        let sessions = |transport: &str| {
            value(
                &after,
                &format!(
                    r#"ringcast_engineio_connections{{transport="{transport}",protocol="4"}}"#
                ),
            )
        };
        assert_eq!(sessions("websocket"), 2.0);
        assert_eq!(sessions("polling"), 1.0);
        assert_eq!(
            value(&after, r#"ringcast_socketio_sockets{namespace="/"}"#),
            2.0
        );
        // Each socket's own room, and "r" on each shard that has a member of it.
        let rooms = value(&after, "ringcast_socketio_rooms");
        assert!(rooms == 3.0 || rooms == 4.0, "{rooms}");
        // Every shard reports its event loop's lag.
        for shard in 0..2 {
            let count = format!(r#"ringcast_event_loop_lag_seconds_count{{shard="{shard}"}}"#);
            value(&after, &count);
        }
    }
}

#[test]
fn ack_round_trips_are_observed() {
    // One ack asked of this socket, and one of every socket of the namespace (a broadcast).
    let ns = Namespace::new().on_connect(|socket| {
        socket.emit_with_ack("hello", &Args::new(), Duration::from_secs(5), |_| {});
        socket
            .namespace()
            .emit_with_ack("everyone", &Args::new(), |_| {});
    });
    let handle = Server::builder()
        .namespace("/", ns)
        .configure(|config| {
            config.cores = 1;
            config.host = [127, 0, 0, 1].into();
            config.port = 0;
            config.pin_cores = false;
            config.force_epoll = common::epoll_requested();
            config.metrics_path = Some("/metrics".to_owned());
        })
        .start()
        .expect("start ringcast");
    let addr = handle.local_addr();
    let mut client = Client::connect(addr, None);
    // `42<ack id>["<event>"]`, each answered with its id.
    for _ in 0..2 {
        let event = client.text();
        let id: String = event
            .strip_prefix("42")
            .unwrap_or_default()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert!(!id.is_empty(), "an event with an ack id: {event}");
        client.send(&format!("43{id}[]"));
    }
    let deadline = Instant::now() + WITHIN;
    loop {
        let samples = scrape(addr, "/metrics");
        if value(&samples, "ringcast_ack_round_trip_seconds_count") == 2.0 {
            assert_eq!(
                value(
                    &samples,
                    r#"ringcast_ack_round_trip_seconds_bucket{le="+Inf"}"#
                ),
                2.0
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no ack round trips: {samples:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    handle.stop();
}

#[test]
fn json_logs_name_the_shard_thread_and_the_refusal() {
    // A free port may be taken by another test's server before this one binds it: then the
    // server exits (its stdout ends before the listening line) and another port is tried.
    let mut attempts = 0;
    let (port, mut child, received, listening) = loop {
        attempts += 1;
        assert!(
            attempts <= 5,
            "ringcast did not start on any of 5 free ports"
        );
        let port = common::free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--cores",
                "1",
                "--max-connections",
                "1",
                "--log-format",
                "json",
            ])
            .args(common::epoll_requested().then_some("--epoll"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn ringcast");
        let (lines, received) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("{line}");
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        match next_json(&received, "ringcast listening") {
            Some(listening) => break (port, child, received, listening),
            None => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    };
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["target"], "ringcast::server");
    assert!(listening["timestamp"].is_string(), "{listening}");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let handshake = common::polling_request("GET", "EIO=4&transport=polling", "");
    assert_eq!(
        common::status_and_body(&common::exchange(addr, &handshake, WITHIN)).0,
        200
    );
    // Past the limit, twice: one line (a second refusal within the second is only counted).
    for _ in 0..2 {
        let answer = common::exchange(addr, &handshake, WITHIN);
        assert_eq!(common::status_and_body(&answer).0, 503);
    }
    let refused = next_json(&received, "handshake refused").expect("no `handshake refused` line");
    assert_eq!(refused["threadName"], "ringcast-shard-0", "{refused}");
    assert_eq!(refused["reason"], "session limit reached", "{refused}");
    assert_eq!(refused["client"], "127.0.0.1", "{refused}");
    // SAFETY: kill(2) with the pid of the child this test spawned and has not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

/// The next JSON log line whose message is `wanted` (within 20 s); `None` when the log ends
/// (the server exited) or the time is up.
fn next_json(received: &mpsc::Receiver<String>, wanted: &str) -> Option<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let line = received.recv_timeout(left).ok()?;
        let parsed: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
        if parsed["message"] == wanted {
            return Some(parsed);
        }
    }
    None
}

#[test]
fn the_redis_adapter_shows_in_the_metrics_of_two_nodes() {
    let redis = common::redis::RedisServer::start();
    let url = redis.url();
    let args = [
        "--cores",
        "2",
        "--no-pin",
        "--metrics-path",
        "/metrics",
        "--redis",
        url.as_str(),
    ];
    let a = common::Server::start(&args);
    let b = common::Server::start(&args);
    if a.is_external() {
        return;
    }
    // B's client publishes to a room until A has taken a broadcast from Redis (A subscribes
    // once its link is up; what is published before is not for it).
    let mut sender = Client::connect(b.addr, None);
    sender.join("r");
    let deadline = Instant::now() + Duration::from_secs(10);
    let on_a = loop {
        sender.send(r#"42["publish","r","through redis"]"#);
        assert_eq!(sender.text(), r#"42["message","through redis"]"#);
        let samples = scrape(a.addr, "/metrics");
        if value(&samples, r#"ringcast_broadcasts_total{origin="redis"}"#) > 0.0 {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "A took nothing from Redis: {samples:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(value(&on_a, "ringcast_redis_connected"), 1.0);
    assert!(value(&on_a, "ringcast_redis_received_total") > 0.0);
    assert_eq!(value(&on_a, "ringcast_redis_received_dropped_total"), 0.0);
    let on_b = scrape(b.addr, "/metrics");
    assert_eq!(value(&on_b, "ringcast_redis_connected"), 1.0);
    assert!(value(&on_b, "ringcast_redis_published_total") > 0.0);
    assert_eq!(value(&on_b, "ringcast_redis_publish_dropped_total"), 0.0);
    assert!(value(&on_b, r#"ringcast_broadcasts_total{origin="local"}"#) > 0.0);
}
