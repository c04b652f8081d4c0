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
    // Python scripts run in the test venv (`.ci/test` makes it), the rest on Node.
    let interpreter = if script.ends_with(".py") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/.venv/bin/python")
    } else {
        "node".into()
    };
    let mut child = Command::new(interpreter)
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
    stats_at(node.addr)
}

/// The stats endpoint (`/stats`) of the server at `addr`, as JSON.
fn stats_at(addr: std::net::SocketAddr) -> serde_json::Value {
    let request = b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let response = common::exchange(addr, request, Duration::from_secs(5));
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
fn a_python_backend_reaches_ringcast_clients_with_the_example_emitter() {
    let redis = RedisServer::start();
    let a = Server::start(&["--cores", "2", "--no-pin", "--redis", &redis.url()]);
    let report = run_script("python_emitter.py", &redis, &a, None);
    assert!(report.contains(r#""messages": 3"#), "{report}");
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

/// A library-built node on the Redis at `url` whose server-side handlers answer as `name` and
/// record what they hear in `heard`.
fn answering_node(
    url: &str,
    name: &'static str,
    heard: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> ringcast::ServerHandle {
    let namespace = ringcast::apps::builtin_namespace()
        .on_server_side_emit("sse-ack", move |_, message, ack| {
            let value = message.str(0).unwrap_or_default().into_owned();
            if let Some(ack) = ack {
                ack.send(&ringcast::Args::new().with_str(&format!("pong-from-{name}:{value}")));
            }
        })
        .on_server_side_emit("sse", move |_, message, ack| {
            assert!(ack.is_none(), "no ack was asked");
            let args = (0..message.len())
                .map(|i| String::from_utf8_lossy(message.raw(i).unwrap_or_default()).into_owned());
            heard
                .lock()
                .expect("heard")
                .push(args.collect::<Vec<_>>().join(","));
        });
    library_node(url, Ringcast::builder().namespace("/", namespace))
}

#[test]
fn this_nodes_questions_are_answered_by_ringcast_and_node_servers_and_theirs_by_it() {
    let redis = RedisServer::start();
    let url = redis.url();
    let heard_a = std::sync::Arc::default();
    let heard_b = std::sync::Arc::default();
    let a = answering_node(&url, "A", std::sync::Arc::clone(&heard_a));
    let b = answering_node(&url, "B", std::sync::Arc::clone(&heard_b));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let url_of = |server: &ringcast::ServerHandle| format!("http://{}", server.local_addr());
    let env = [
        ("REDIS_URL", url.clone()),
        ("NODE_A_URL", url_of(&a)),
        ("NODE_B_URL", url_of(&b)),
    ];
    let report = dialog("questions.mjs", &env, |line| {
        if line == "NODE_DONE" {
            return;
        }
        let ids = line.strip_prefix("ASK ").expect("ASK with the client ids");
        let ids: serde_json::Value = serde_json::from_str(ids).expect("ids");
        let id = |name: &str| ids[name].as_str().expect("id").to_owned();
        let all = a.of("/");
        assert_eq!(runtime.block_on(all.clone().server_count()), Ok(3));
        // Every node's sockets, A's own included, with what their servers know of them.
        let sockets = runtime
            .block_on(all.clone().to("r").fetch_sockets())
            .expect("fetched");
        let mut fetched: Vec<_> = sockets.iter().map(|s| s.id.clone()).collect();
        fetched.sort();
        let mut expected = vec![id("a"), id("b"), id("node")];
        expected.sort();
        assert_eq!(fetched, expected);
        let on_node = sockets.iter().find(|s| s.id == id("node")).expect("node's");
        assert_eq!(on_node.data, serde_json::json!({ "server": "node" }));
        assert_eq!(on_node.shard, None);
        assert_eq!(on_node.rooms, [id("node"), "r".to_owned()]);
        assert_eq!(
            on_node.handshake.address.map(|a| a.ip().is_loopback()),
            Some(true)
        );
        let on_a = sockets.iter().find(|s| s.id == id("a")).expect("A's");
        assert!(on_a.shard.is_some());
        // The local() form keeps to this process.
        let local = runtime
            .block_on(all.clone().local().to("r").fetch_sockets())
            .expect("fetched");
        assert_eq!(local.len(), 1);
        let rooms = runtime.block_on(all.clone().all_rooms()).expect("rooms");
        for room in ["r".to_owned(), id("a"), id("b"), id("node")] {
            assert!(rooms.contains(&room), "{room} in {rooms:?}");
        }
        // A broadcast's acks, counted across nodes.
        let mut acks = runtime
            .block_on(
                all.clone()
                    .to("r")
                    .emit_with_ack("ask", &ringcast::Args::new().with_str("q")),
            )
            .expect("emitted")
            .expect("every ack");
        let mut acks: Vec<_> = acks
            .drain(..)
            .map(|ack| ack.str(0).unwrap_or_default().into_owned())
            .collect();
        acks.sort();
        assert_eq!(acks, ["a:q", "b:q", "node:q"]);
        // Server-side emits: every other server's handler answers once (A's own does not run).
        let pongs = runtime
            .block_on(
                all.clone()
                    .server_side_emit_with_ack("sse-ack", &ringcast::Args::new().with_str("ping")),
            )
            .expect("every server answered");
        let mut pongs: Vec<_> = pongs
            .iter()
            .map(|pong| pong.str(0).unwrap_or_default().into_owned())
            .collect();
        pongs.sort();
        assert_eq!(pongs, ["pong-from-B:ping", "pong-from-node:ping"]);
        let args = ringcast::Args::new()
            .with_str("hello")
            .with_json(&1)
            .and_then(|args| args.with_json(&serde_json::json!({ "from": "A" })))
            .expect("args");
        all.server_side_emit("sse", &args).expect("sent");
    });
    let report: serde_json::Value = serde_json::from_str(&report).expect("report");
    let sorted = |mut values: Vec<String>| {
        values.sort();
        values
    };
    assert_eq!(report["acks"], serde_json::json!(["a:q", "b:q", "node:q"]));
    assert_eq!(
        report["pongs"],
        serde_json::json!(["pong-from-A:ping", "pong-from-B:ping"])
    );
    assert_eq!(report["fetched"].as_array().map(Vec::len), Some(3));
    assert!(report["rooms"]
        .as_array()
        .is_some_and(|r| r.contains(&"r".into())));
    // A's event reached B (not A itself); the Node server's reached both.
    let deadline = Instant::now() + Duration::from_secs(5);
    let count = |heard: &std::sync::Mutex<Vec<String>>| heard.lock().expect("heard").len();
    while (count(&heard_a) < 1 || count(&heard_b) < 2) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let heard =
        |heard: &std::sync::Mutex<Vec<String>>| sorted(heard.lock().expect("heard").clone());
    assert_eq!(heard(&heard_a), [r#""from-node",2"#]);
    assert_eq!(
        heard(&heard_b),
        [r#""from-node",2"#, r#""hello",1,{"from":"A"}"#]
    );
    a.stop();
    b.stop();
}

/// Two `ringcast --cores 2 --redis-mode sharded` nodes on `redis` (`--redis URL` or
/// `--redis-cluster SEEDS`), and the sharded script against them and a Node server.
fn sharded_with_node(redis_flag: &str, redis: &str, env: (&str, String)) {
    let args = [
        "--cores",
        "2",
        "--no-pin",
        "--stats-path",
        "/stats",
        "--redis-mode",
        "sharded",
        redis_flag,
        redis,
    ];
    let (a, b) = (Server::start(&args), Server::start(&args));
    let report = dialog(
        "sharded.mjs",
        &[env, ("NODE_A_URL", a.url()), ("NODE_B_URL", b.url())],
        |ask| panic!("sharded.mjs asked {ask}"),
    );
    assert!(report.contains(r#""members":4"#), "{report}");
    for node in [&a, &b] {
        let stats = stats(node);
        assert_eq!(stats["redis"]["connected"], true, "{stats}");
        assert_eq!(stats["redis"]["dropped"], 0, "{stats}");
    }
}

#[test]
fn the_sharded_adapter_works_with_node_servers_on_redis_7() {
    let redis = RedisServer::start();
    sharded_with_node("--redis", &redis.url(), ("REDIS_URL", redis.url()));
}

#[test]
fn the_sharded_adapter_works_with_node_servers_on_a_redis_cluster() {
    let cluster = common::redis::RedisCluster::start(3);
    sharded_with_node(
        "--redis-cluster",
        &cluster.seeds(),
        ("REDIS_CLUSTER", cluster.urls()),
    );
}

#[test]
fn a_server_that_never_answers_makes_questions_time_out_and_is_counted() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = library_node(
        &url,
        Ringcast::builder()
            .namespace("/", ringcast::apps::builtin_namespace())
            .configure(|config| config.stats_path = Some("/stats".to_owned())),
    );
    // A silent subscriber of the request channel: Node counts it as a server (spec A.5).
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", redis.port)).expect("connect");
    silent
        .write_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$20\r\nsocket.io-request#/#\r\n")
        .expect("subscribe");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let deadline = Instant::now() + Duration::from_secs(5);
    while runtime.block_on(a.of("/").server_count()) != Ok(2) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    let asked = a
        .of("/")
        .timeout(Duration::from_millis(300))
        .fetch_sockets();
    assert_eq!(runtime.block_on(asked), Err(ringcast::OpError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(2));
    // This process alone still answers.
    let local = runtime.block_on(a.of("/").local().fetch_sockets());
    assert_eq!(local.map(|sockets| sockets.len()), Ok(0));
    let stats = stats_at(a.local_addr());
    assert_eq!(stats["redis"]["request_timeouts"], 1, "{stats}");
    a.stop();
}

#[test]
fn one_admin_socket_sees_two_ringcast_nodes_and_node_sees_their_admin_data() {
    let redis = RedisServer::start();
    let url = redis.url();
    let node = |id: &str| {
        Server::start(&[
            "--cores",
            "2",
            "--no-pin",
            "--admin",
            "--admin-server-id",
            id,
            "--redis",
            &url,
        ])
    };
    let (a, b) = (node("node-a"), node("node-b"));
    let report = run_script("admin.mjs", &redis, &a, Some(&b));
    assert!(report.contains("ok:"), "{report}");
}

/// Two `ringcast` nodes with admin auth on `redis_flag redis`: tests/cluster/admin_sessions.mjs
/// (with `env` naming Redis to node-redis) logs in on A and reuses the session on B; then the
/// session's key is read back where `port_of(key)` says it lives.
fn admin_sessions(
    redis_flag: &str,
    redis: &str,
    env: (&str, String),
    port_of: impl Fn(&str) -> u16,
) {
    const HASH: &str = "$2b$10$heqvAkYMez.Va6Et2uXInOnkCT6/uQj1brkrbyG3LpopDklcq7ZOS";
    let args = [
        "--cores",
        "2",
        "--no-pin",
        "--admin-username",
        "admin",
        "--admin-password-hash",
        HASH,
        redis_flag,
        redis,
    ];
    let (a, b) = (Server::start(&args), Server::start(&args));
    let report = dialog(
        "admin_sessions.mjs",
        &[env, ("NODE_A_URL", a.url()), ("NODE_B_URL", b.url())],
        |ask| panic!("admin_sessions.mjs asked {ask}"),
    );
    let report: serde_json::Value = serde_json::from_str(&report).expect("a JSON report");
    let session = report["session"].as_str().expect("the session id");
    // Kept as Node's RedisStore keeps it: `socket.io-admin#<id>` = true, expiring in a day.
    let key = format!("socket.io-admin#{session}");
    let command = |args: &[&str]| common::redis::command(port_of(&key), args);
    assert_eq!(command(&["GET", &key]), Ok("true".to_owned()));
    let ttl: i64 = command(&["TTL", &key])
        .expect("TTL")
        .parse()
        .expect("a TTL in seconds");
    assert!((86_000..=86_400).contains(&ttl), "TTL {ttl}");
}

#[test]
fn an_admin_login_on_one_node_is_a_session_on_the_other_through_redis() {
    let redis = RedisServer::start();
    let port = redis.port;
    admin_sessions("--redis", &redis.url(), ("REDIS_URL", redis.url()), |_| {
        port
    });
}

#[test]
fn admin_sessions_are_shared_on_a_redis_cluster() {
    let cluster = common::redis::RedisCluster::start(3);
    admin_sessions(
        "--redis-cluster",
        &cluster.seeds(),
        ("REDIS_CLUSTER", cluster.urls()),
        |key| cluster.nodes[cluster.owner_of(key)].port,
    );
}
