//! The process's link to Redis against a real `redis-server` (started per test on a free
//! loopback port): publish / subscribe / psubscribe round trips and `PUBSUB NUMSUB`, Redis
//! down at start, Redis killed and restarted under load, and a password that never reaches the
//! logs; sharded pub/sub (`SPUBLISH` / `SSUBSCRIBE` / `SHARDNUMSUB`) on one Redis 7, across a
//! restart, and on a three-master Redis Cluster; `SET … EX`, `EXISTS` and `DEL` on one server
//! and at the master owning each key's slot; `SET … NX PX` (one claim wins), `SET … PX` and
//! `GET` on one server and at each key's master; `scan_values` (`SCAN … MATCH` then `MGET`) on one
//! server and across every master; `rediss://` with a test CA. Uses only what
//! `ringcast::internals::net::redis` exposes; every wait has a deadline, and every server is
//! killed by its pid when its test ends, passed or not.

mod common;

use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::redis::{command, RedisCluster, RedisServer};
use ringcast::internals::net::redis::{
    ClusterSeeds, CommandError, Incoming, IncomingKind, PublishError, RedisLink, RedisLinkConfig,
    RedisUrl,
};

/// Everything logged by this test binary (ours and the Redis client's own `log` records), at
/// every level.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .try_init()
            .expect("install the log capture");
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

/// Log lines (of this whole binary) containing `needle`.
fn log_lines(needle: &str) -> usize {
    log_text()
        .lines()
        .filter(|line| line.contains(needle))
        .count()
}

fn start(config: RedisLinkConfig) -> (RedisLink, Receiver<Incoming>) {
    logs();
    let (sender, receiver) = mpsc::channel();
    let link = RedisLink::start(config, move |message| {
        let _ = sender.send(message);
    })
    .expect("start the link");
    (link, receiver)
}

fn config(url: &str) -> RedisLinkConfig {
    RedisLinkConfig::new(url.parse::<RedisUrl>().expect("a good URL"))
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The next message that satisfies `wanted`, skipping others.
fn receive(
    messages: &Receiver<Incoming>,
    within: Duration,
    wanted: impl Fn(&Incoming) -> bool,
) -> Incoming {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match messages.recv_timeout(left) {
            Ok(message) if wanted(&message) => return message,
            Ok(_) => {}
            Err(_) => panic!("no such message within {within:?}"),
        }
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(10), future)
                .await
                .expect("an answer within 10 s")
        })
}

fn server_count(link: &RedisLink, channel: &str) -> Result<u64, CommandError> {
    block_on(link.server_count(channel))
}

fn shard_server_count(link: &RedisLink, channel: &str) -> Result<u64, CommandError> {
    block_on(link.shard_server_count(channel))
}

/// No message at all for `quiet`.
fn nothing_more(messages: &Receiver<Incoming>, quiet: Duration) {
    if let Ok(message) = messages.recv_timeout(quiet) {
        panic!("an unexpected message: {message:?}");
    }
}

/// Every command a server runs from now on, one line each (`MONITOR`), read by a thread of its
/// own until the server closes the connection or the monitor is dropped.
struct Monitor {
    lines: Arc<Mutex<Vec<String>>>,
    stream: std::net::TcpStream,
}

impl Monitor {
    fn start(port: u16) -> Monitor {
        use std::io::{BufRead, BufReader};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.write_all(b"MONITOR\r\n").expect("MONITOR");
        let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
        let mut ok = String::new();
        reader.read_line(&mut ok).expect("MONITOR's answer");
        assert_eq!(ok, "+OK\r\n");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { return };
                collected.lock().unwrap().push(line);
            }
        });
        Monitor { lines, stream }
    }

    /// The commands seen so far whose name is `name` (e.g. `"SSUBSCRIBE"`), each as its
    /// arguments, quotes removed.
    fn commands(&self, name: &str) -> Vec<Vec<String>> {
        let quoted = format!("\"{}\"", name.to_ascii_lowercase());
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter_map(|line| {
                let at = line.to_ascii_lowercase().find(&quoted)?;
                let args = line[at + quoted.len()..]
                    .split_whitespace()
                    .map(|arg| arg.trim_matches('"').to_owned())
                    .collect();
                Some(args)
            })
            .collect()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

#[test]
fn publish_subscribe_psubscribe_and_server_count() {
    let redis = RedisServer::start();
    let (a, a_messages) = start(config(&redis.url()));
    // b hands on payloads of at most 1 KiB, and its callback panics on one message.
    let mut settings = config(&redis.url());
    settings.max_incoming_bytes = 1024;
    let (sender, b_messages) = mpsc::channel();
    let b = RedisLink::start(settings, move |message: Incoming| {
        assert!(message.payload != "panic", "a callback that panics");
        let _ = sender.send(message);
    })
    .expect("start the link");
    a.subscribe(["rt-chan"]);
    b.subscribe(["rt-chan"]);
    b.psubscribe(["rt-pat#*"]);
    wait_for("two subscribers", Duration::from_secs(10), || {
        server_count(&a, "rt-chan") == Ok(2)
    });
    // Subscribed means b's subscriber connection is up; its command connection may still be
    // connecting.
    wait_for("both links connected", Duration::from_secs(10), || {
        a.counts().connected && b.counts().connected
    });
    assert_eq!(server_count(&b, "rt-nobody"), Ok(0));

    a.publish("rt-chan", Bytes::from_static(b"hello")).unwrap();
    let got = receive(&b_messages, Duration::from_secs(5), |_| true);
    let hello = Incoming {
        channel: "rt-chan".into(),
        pattern: None,
        payload: Bytes::from_static(b"hello"),
        kind: IncomingKind::Channel,
    };
    assert_eq!(got, hello);
    // The publisher's own subscription hears it too.
    assert_eq!(
        receive(&a_messages, Duration::from_secs(5), |_| true),
        hello
    );

    // Any bytes, through a pattern.
    let binary = Bytes::from((0..=255u8).rev().collect::<Vec<u8>>());
    a.publish("rt-pat#room#", binary.clone()).unwrap();
    let got = receive(&b_messages, Duration::from_secs(5), |_| true);
    assert_eq!(
        got,
        Incoming {
            channel: "rt-pat#room#".into(),
            pattern: Some("rt-pat#*".into()),
            payload: binary,
            kind: IncomingKind::Pattern,
        }
    );

    // Too long for b (dropped and counted), and a panicking callback: both contained.
    a.publish("rt-chan", Bytes::from(vec![b'x'; 1025])).unwrap();
    a.publish("rt-chan", Bytes::from_static(b"panic")).unwrap();
    // In order, and b carries on.
    for i in 0..100 {
        a.publish("rt-chan", Bytes::from(i.to_string())).unwrap();
    }
    for i in 0..100 {
        let got = receive(&b_messages, Duration::from_secs(5), |_| true);
        assert_eq!(got.payload, i.to_string());
    }
    let mut a_heard = Vec::new();
    while a_heard.len() < 102 {
        let got = receive(&a_messages, Duration::from_secs(5), |_| true);
        a_heard.push(got.payload);
    }
    assert_eq!(a_heard[0].len(), 1025);
    assert_eq!(a_heard[1], "panic");

    b.unsubscribe(["rt-chan"]);
    wait_for("one subscriber left", Duration::from_secs(10), || {
        server_count(&a, "rt-chan") == Ok(1)
    });
    wait_for("the publishes acknowledged", Duration::from_secs(5), || {
        a.counts().published == 104
    });
    let (a_counts, b_counts) = (a.counts(), b.counts());
    assert_eq!(
        (
            a_counts.publish_dropped,
            a_counts.publish_failed,
            a_counts.reconnects
        ),
        (0, 0, 0)
    );
    assert_eq!((a_counts.received, a_counts.received_dropped), (103, 0));
    // The panicking callback's message counts as received; the long one as dropped.
    assert_eq!((b_counts.received, b_counts.received_dropped), (103, 1));

    a.stop();
    assert!(!a.counts().connected);
    assert_eq!(
        a.publish("rt-chan", Bytes::from_static(b"late")),
        Err(PublishError::Stopped)
    );
    assert_eq!(a.counts().publish_dropped, 1);
    assert_eq!(server_count(&a, "rt-chan"), Err(CommandError::Stopped));
    // A clone dropped does not stop the link; the last one does.
    let b2 = b.clone();
    drop(b);
    assert_eq!(server_count(&b2, "rt-chan"), Ok(0));
    drop(b2);
}

#[test]
fn redis_down_at_start_then_up() {
    let port = common::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut settings = config(&url);
    settings.max_queued = 8;
    let (link, messages) = start(settings);
    link.subscribe(["down-chan"]);

    // Bounded while down: 8 queued, the rest dropped (drop-newest) and counted.
    let refused = (0..20)
        .filter(|i| {
            link.publish("down-chan", Bytes::from(format!("early {i}")))
                .is_err()
        })
        .count();
    assert_eq!(refused, 12);
    assert_eq!(
        link.publish("down-chan", Bytes::from_static(b"one more")),
        Err(PublishError::Full)
    );
    assert_eq!(
        server_count(&link, "down-chan"),
        Err(CommandError::Disconnected)
    );
    let warning = format!("cannot connect to redis at {url} (");
    wait_for("the outage warning", Duration::from_secs(5), || {
        log_lines(&warning) == 1
    });
    // Several retries later, still one warning, nothing drained.
    std::thread::sleep(Duration::from_millis(400));
    let counts = link.counts();
    assert!(!counts.connected);
    assert_eq!(
        (counts.queued, counts.publish_dropped, counts.published),
        (8, 13, 0)
    );
    assert_eq!(log_lines(&warning), 1);

    let _redis = RedisServer::start_on(port, &[]);
    wait_for("the link to connect", Duration::from_secs(10), || {
        link.counts().connected
    });
    // What was queued goes out; the subscription is issued.
    wait_for("the queued publishes", Duration::from_secs(5), || {
        link.counts().published == 8
    });
    assert_eq!(link.counts().queued, 0);
    wait_for("the subscription", Duration::from_secs(10), || {
        server_count(&link, "down-chan") == Ok(1)
    });
    let (other, _) = start(config(&url));
    wait_for("the other link", Duration::from_secs(10), || {
        other.counts().connected
    });
    other
        .publish("down-chan", Bytes::from_static(b"after"))
        .unwrap();
    receive(&messages, Duration::from_secs(5), |m| {
        m.payload == "after" && m.channel == "down-chan"
    });
    assert_eq!(
        link.counts().reconnects,
        0,
        "a first connection is no reconnect"
    );
    let connected = format!("redis link connected to {url}");
    let lines = log_text()
        .lines()
        .filter(|line| line.ends_with(&connected))
        .count();
    assert_eq!(lines, 2);
    assert_eq!(log_lines(&warning), 1);
    other.stop();
    link.stop();
}

#[test]
fn redis_killed_and_restarted_under_load() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let mut settings = config(&url);
    settings.max_queued = 64;
    let (publisher, _) = start(settings);
    let (subscriber, messages) = start(config(&url));
    subscriber.subscribe(["kill-chan"]);
    subscriber.psubscribe(["kill-pat*"]);
    wait_for("the subscription", Duration::from_secs(10), || {
        server_count(&publisher, "kill-chan") == Ok(1)
    });
    wait_for("both links connected", Duration::from_secs(10), || {
        publisher.counts().connected && subscriber.counts().connected
    });

    // Two publishes every 5 ms, for at most 30 s.
    let stop = Arc::new(AtomicBool::new(false));
    let pump = {
        let (publisher, stop) = (publisher.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let payload = Bytes::from(seq.to_string());
                let _ = publisher.publish("kill-chan", payload.clone());
                let _ = publisher.publish("kill-pat-1", payload);
                seq += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let within = Duration::from_secs(5);
    receive(&messages, within, |m| m.pattern.is_none());
    receive(&messages, within, |m| {
        m.pattern.as_deref() == Some("kill-pat*")
    });

    redis.kill();
    wait_for(
        "both links to see the outage",
        Duration::from_secs(5),
        || !publisher.counts().connected && !subscriber.counts().connected,
    );
    // The outage outlasts the queue: 2 publishes per 5 ms against 64 places.
    std::thread::sleep(Duration::from_millis(500));
    while messages.try_recv().is_ok() {}
    redis.restart();
    let restarted = Instant::now();
    receive(&messages, Duration::from_secs(10), |m| m.pattern.is_none());
    receive(&messages, Duration::from_secs(10), |m| m.pattern.is_some());
    let back_after = restarted.elapsed();
    assert!(
        back_after < Duration::from_secs(5),
        "messages again {back_after:?} after the restart"
    );
    // Issued again, on the one new subscriber connection.
    wait_for("the subscription again", Duration::from_secs(5), || {
        server_count(&publisher, "kill-chan") == Ok(1)
    });

    stop.store(true, Ordering::Relaxed);
    pump.join().expect("the publishing thread");
    // Whatever came through came in order (the outage's drops leave gaps, never swaps).
    wait_for("the last publishes", Duration::from_secs(5), || {
        let counts = publisher.counts();
        counts.queued == 0 && counts.queued_bytes == 0
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut last = [None::<u64>; 2];
    while let Ok(message) = messages.try_recv() {
        let seq: u64 = std::str::from_utf8(&message.payload)
            .unwrap()
            .parse()
            .unwrap();
        let last = &mut last[usize::from(message.pattern.is_some())];
        assert!(last.is_none_or(|last| last < seq), "{seq} after {last:?}");
        *last = Some(seq);
    }
    let (sent, heard) = (publisher.counts(), subscriber.counts());
    println!("redis restarted; messages again after {back_after:?}; publisher {sent:?}; subscriber {heard:?}");
    assert_eq!((sent.reconnects, heard.reconnects), (1, 1));
    assert!(
        sent.publish_dropped > 0,
        "the outage filled the queue: {sent:?}"
    );
    assert!(sent.published > 0 && heard.received > 0);
    assert_eq!(heard.received_dropped, 0);
    assert_eq!(log_lines(&format!("redis link to {url} lost (")), 2);
    assert_eq!(log_lines(&format!("redis link to {url} is back after")), 2);
}

#[test]
fn a_password_never_reaches_the_logs() {
    const SECRET: &str = "pw-7Hq2-never-logged";
    const WRONG: &str = "wrong-9Zx-never-logged";
    let redis = RedisServer::start_with(&["--requirepass", SECRET]);
    let url = format!("redis://default:{SECRET}@127.0.0.1:{}/2", redis.port);
    let (link, messages) = start(config(&url));
    link.subscribe(["pw-chan"]);
    wait_for(
        "the authenticated subscription",
        Duration::from_secs(10),
        || server_count(&link, "pw-chan") == Ok(1),
    );
    link.publish("pw-chan", Bytes::from_static(b"in")).unwrap();
    receive(&messages, Duration::from_secs(5), |m| m.payload == "in");

    // A wrong password never connects, and is not logged either.
    let wrong = format!("redis://:{WRONG}@127.0.0.1:{}", redis.port);
    let (refused, _) = start(config(&wrong));
    let shown = format!("redis://:***@127.0.0.1:{}", redis.port);
    wait_for("the warning", Duration::from_secs(5), || {
        log_lines(&format!("cannot connect to redis at {shown} (")) == 1
    });
    assert!(!refused.counts().connected);
    let debug = format!("{link:?} {refused:?} {:?}", config(&url));
    refused.stop();
    link.stop();

    let logs = log_text();
    assert!(
        logs.contains("fred::"),
        "the client's own log records are captured"
    );
    for secret in [SECRET, WRONG] {
        assert!(!logs.contains(secret), "a password was logged");
        assert!(!debug.contains(secret), "a password is in a Debug: {debug}");
    }
    assert!(logs.contains(&format!(
        "redis link connected to redis://default:***@127.0.0.1:{}/2",
        redis.port
    )));
}

#[test]
fn sharded_publish_subscribe_and_shard_server_count() {
    let started = Instant::now();
    let redis = RedisServer::start();
    let monitor = Monitor::start(redis.port);
    let (a, a_messages) = start(config(&redis.url()));
    let (b, b_messages) = start(config(&redis.url()));
    // The same name as a classic channel and as a shard channel: Redis keeps them apart.
    b.ssubscribe(["sh-chan", "sh-other"]);
    b.subscribe(["sh-chan"]);
    a.ssubscribe(["sh-both"]);
    b.ssubscribe(["sh-both"]);
    wait_for("b's shard subscription", Duration::from_secs(10), || {
        shard_server_count(&a, "sh-chan") == Ok(1)
    });
    wait_for("both links connected", Duration::from_secs(10), || {
        a.counts().connected && b.counts().connected
    });
    assert_eq!(server_count(&a, "sh-chan"), Ok(1));
    wait_for("two shard subscribers", Duration::from_secs(10), || {
        shard_server_count(&b, "sh-both") == Ok(2)
    });
    assert_eq!(shard_server_count(&a, "sh-nobody"), Ok(0));
    // What Redis itself says.
    assert_eq!(
        command(redis.port, &["PUBSUB", "SHARDNUMSUB", "sh-other"]),
        Ok("sh-other\n1".to_owned())
    );

    a.spublish("sh-chan", Bytes::from_static(b"sharded"))
        .unwrap();
    let got = receive(&b_messages, Duration::from_secs(5), |_| true);
    assert_eq!(
        got,
        Incoming {
            channel: "sh-chan".into(),
            pattern: None,
            payload: Bytes::from_static(b"sharded"),
            kind: IncomingKind::Sharded,
        }
    );
    a.publish("sh-chan", Bytes::from_static(b"classic"))
        .unwrap();
    let got = receive(&b_messages, Duration::from_secs(5), |_| true);
    assert_eq!(
        (got.kind, &got.payload[..]),
        (IncomingKind::Channel, &b"classic"[..])
    );
    // Any bytes, in order.
    let binary = Bytes::from((0..=255u8).collect::<Vec<u8>>());
    a.spublish("sh-other", binary.clone()).unwrap();
    for i in 0..50 {
        a.spublish("sh-other", Bytes::from(i.to_string())).unwrap();
    }
    let got = receive(&b_messages, Duration::from_secs(5), |_| true);
    assert_eq!((got.channel.as_str(), got.payload), ("sh-other", binary));
    for i in 0..50 {
        let got = receive(&b_messages, Duration::from_secs(5), |_| true);
        assert_eq!(got.payload, i.to_string());
    }
    // Both subscribers hear a shard channel they share; a hears nothing else.
    b.spublish("sh-both", Bytes::from_static(b"both")).unwrap();
    let got = receive(&a_messages, Duration::from_secs(5), |_| true);
    assert_eq!(
        (got.kind, got.channel.as_str()),
        (IncomingKind::Sharded, "sh-both")
    );
    receive(&b_messages, Duration::from_secs(5), |m| m.payload == "both");
    nothing_more(&a_messages, Duration::from_millis(100));

    // Many calls coalesce: a room that flaps a thousand times costs a few commands, and ends
    // forgotten.
    for _ in 0..1000 {
        b.ssubscribe(["sh-flap"]);
        b.sunsubscribe(["sh-flap"]);
    }
    // 200 rooms at once, half forgotten right away.
    let rooms: Vec<String> = (0..200).map(|i| format!("sh-room-{i}")).collect();
    b.ssubscribe(rooms.iter().cloned());
    b.sunsubscribe(rooms.iter().skip(100).cloned());
    b.ssubscribe(["sh-last"]);
    wait_for("the last subscription", Duration::from_secs(10), || {
        shard_server_count(&a, "sh-last") == Ok(1)
    });
    wait_for("the rooms kept", Duration::from_secs(10), || {
        rooms[..100]
            .iter()
            .all(|room| shard_server_count(&a, room) == Ok(1))
    });
    for room in rooms[100..].iter().chain([&"sh-flap".to_owned()]) {
        assert_eq!(shard_server_count(&a, room), Ok(0), "{room}");
        a.spublish(room.as_str(), Bytes::from_static(b"nobody"))
            .unwrap();
    }
    a.spublish("sh-room-7", Bytes::from_static(b"kept"))
        .unwrap();
    let got = receive(&b_messages, Duration::from_secs(5), |_| true);
    assert_eq!(
        (got.channel.as_str(), &got.payload[..]),
        ("sh-room-7", &b"kept"[..])
    );
    nothing_more(&b_messages, Duration::from_millis(100));

    // What went to Redis: one channel per SSUBSCRIBE; the flapping room in a few commands at
    // most (a pass may catch it subscribed); a forgotten room subscribed only if a pass caught
    // it, and then forgotten.
    let subscribed = monitor.commands("SSUBSCRIBE");
    assert!(
        subscribed.iter().all(|args| args.len() == 1),
        "{subscribed:?}"
    );
    let forgotten: Vec<String> = monitor.commands("SUNSUBSCRIBE").concat();
    let count = |list: &[String], name: &str| list.iter().filter(|arg| *arg == name).count();
    let subscribed = subscribed.concat();
    assert!(count(&subscribed, "sh-flap") <= 5, "{subscribed:?}");
    assert_eq!(count(&subscribed, "sh-flap"), count(&forgotten, "sh-flap"));
    for room in &rooms[100..] {
        assert_eq!(count(&subscribed, room), count(&forgotten, room), "{room}");
    }
    for room in &rooms[..100] {
        assert_eq!(
            (count(&subscribed, room), count(&forgotten, room)),
            (1, 0),
            "{room}"
        );
    }
    // At most: the first subscriptions twice (issued, then again on the connect event), the
    // 200 rooms if a pass caught them before half were forgotten, a few for the flapping one.
    let calls = 2000 + 200 + 100 + 1;
    let commands = monitor.commands("SSUBSCRIBE").len() + monitor.commands("SUNSUBSCRIBE").len();
    println!("{calls} subscription calls cost {commands} commands");
    assert!(commands < 250, "{calls} calls cost {commands} commands");

    b.sunsubscribe(["sh-both"]);
    wait_for("one shard subscriber left", Duration::from_secs(10), || {
        shard_server_count(&a, "sh-both") == Ok(1)
    });
    // a: 1 + 1 + 1 + 50 + 101 (nobody's: 100 rooms and the flapping one) + 1; b: 1.
    wait_for("the publishes acknowledged", Duration::from_secs(5), || {
        (a.counts().published, b.counts().published) == (155, 1)
    });
    let (a_counts, b_counts) = (a.counts(), b.counts());
    assert_eq!((a_counts.publish_dropped, a_counts.publish_failed), (0, 0));
    assert_eq!((a_counts.received, a_counts.received_dropped), (1, 0));
    assert_eq!((b_counts.received, b_counts.received_dropped), (55, 0));
    a.stop();
    assert_eq!(
        a.spublish("sh-chan", Bytes::from_static(b"late")),
        Err(PublishError::Stopped)
    );
    assert_eq!(
        shard_server_count(&a, "sh-chan"),
        Err(CommandError::Stopped)
    );
    b.stop();
    println!("sharded round trips: {:?}", started.elapsed());
}

#[test]
fn sharded_subscriptions_come_back_after_a_restart() {
    let started = Instant::now();
    let mut redis = RedisServer::start();
    let url = redis.url();
    let (publisher, _) = start(config(&url));
    let (subscriber, messages) = start(config(&url));
    subscriber.ssubscribe(["back-shard-1", "back-shard-2"]);
    subscriber.subscribe(["back-classic"]);
    wait_for("the subscriptions", Duration::from_secs(10), || {
        shard_server_count(&publisher, "back-shard-2") == Ok(1)
            && server_count(&publisher, "back-classic") == Ok(1)
    });
    // Subscribed means the subscriber's subscribing client is up; its publishing client may
    // still be connecting.
    wait_for("both links connected", Duration::from_secs(10), || {
        publisher.counts().connected && subscriber.counts().connected
    });
    publisher
        .spublish("back-shard-1", Bytes::from_static(b"before"))
        .unwrap();
    receive(&messages, Duration::from_secs(5), |m| m.payload == "before");

    redis.kill();
    wait_for("the outage", Duration::from_secs(5), || {
        !publisher.counts().connected && !subscriber.counts().connected
    });
    // Changed while down: issued once Redis is back.
    subscriber.sunsubscribe(["back-shard-2"]);
    subscriber.ssubscribe(["back-shard-3"]);
    // Queued while down, published once back.
    publisher
        .spublish("back-shard-1", Bytes::from_static(b"queued"))
        .unwrap();
    redis.restart();
    wait_for("the subscriptions again", Duration::from_secs(10), || {
        shard_server_count(&publisher, "back-shard-1") == Ok(1)
            && shard_server_count(&publisher, "back-shard-3") == Ok(1)
            && server_count(&publisher, "back-classic") == Ok(1)
    });
    assert_eq!(shard_server_count(&publisher, "back-shard-2"), Ok(0));
    for channel in ["back-shard-1", "back-shard-3"] {
        publisher
            .spublish(channel, Bytes::from_static(b"after"))
            .unwrap();
        receive(&messages, Duration::from_secs(5), |m| {
            m.payload == "after" && m.channel == channel && m.kind == IncomingKind::Sharded
        });
    }
    publisher
        .publish("back-classic", Bytes::from_static(b"classic"))
        .unwrap();
    receive(&messages, Duration::from_secs(5), |m| {
        m.payload == "classic"
    });
    // Each link is back once both its clients are (the subscriber's idle publishing client
    // may come back last).
    wait_for("both links back", Duration::from_secs(10), || {
        publisher.counts().connected && subscriber.counts().connected
    });
    // Before, the one queued during the outage, two after, the classic one.
    wait_for("the publishes acknowledged", Duration::from_secs(5), || {
        publisher.counts().published == 5
    });
    let (sent, heard) = (publisher.counts(), subscriber.counts());
    assert_eq!((sent.reconnects, heard.reconnects), (1, 1));
    assert_eq!((sent.publish_dropped, sent.publish_failed), (0, 0));
    println!("sharded subscriptions back: {:?}", started.elapsed());
}

#[test]
fn a_three_master_cluster() {
    let started = Instant::now();
    let cluster = RedisCluster::start(3);
    let up = started.elapsed();
    let seeds = ClusterSeeds::parse(&cluster.seeds()).expect("the seeds");
    // Shard channel names whose slots belong to each of the three masters.
    let mut names: Vec<Option<String>> = vec![None; 3];
    for i in 0..100 {
        let name = format!("cl-shard-{i}");
        let owner = cluster.owner_of(&name);
        names[owner].get_or_insert(name);
        if names.iter().all(Option::is_some) {
            break;
        }
    }
    let names: Vec<String> = names
        .into_iter()
        .map(|n| n.expect("a name per master"))
        .collect();

    let (publisher, _) = start(RedisLinkConfig::cluster(seeds.clone()));
    let (subscriber, messages) = start(RedisLinkConfig::cluster(seeds.clone()));
    assert!(subscriber.is_cluster());
    subscriber.ssubscribe(names.iter().cloned());
    subscriber.subscribe(["cl-classic"]);
    subscriber.psubscribe(["cl-pat*"]);
    wait_for("both links connected", Duration::from_secs(10), || {
        publisher.counts().connected && subscriber.counts().connected
    });
    // Counted over the masters: one subscriber counts 1, wherever it subscribed.
    wait_for("the subscriptions", Duration::from_secs(10), || {
        names
            .iter()
            .all(|name| shard_server_count(&publisher, name) == Ok(1))
            && server_count(&publisher, "cl-classic") == Ok(1)
    });
    // Each shard subscription is at the master owning its slot, and only there.
    for (owner, name) in names.iter().enumerate() {
        for (index, node) in cluster.nodes.iter().enumerate() {
            let answer = command(node.port, &["PUBSUB", "SHARDNUMSUB", name]);
            let expected = format!("{name}\n{}", u8::from(index == owner));
            assert_eq!(answer, Ok(expected), "node {index}");
        }
    }
    // The classic subscription is at one master only.
    let classic: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| command(node.port, &["PUBSUB", "NUMSUB", "cl-classic"]).unwrap())
        .collect();
    assert_eq!(
        classic.iter().filter(|a| a.ends_with("\n1")).count(),
        1,
        "{classic:?}"
    );

    for name in &names {
        publisher
            .spublish(name.as_str(), Bytes::from(format!("to {name}")))
            .unwrap();
    }
    let mut heard: Vec<String> = (0..3)
        .map(|_| {
            let got = receive(&messages, Duration::from_secs(5), |_| true);
            assert_eq!(got.kind, IncomingKind::Sharded);
            assert_eq!(got.payload, format!("to {}", got.channel));
            got.channel
        })
        .collect();
    heard.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(heard, expected);
    // Classic pub/sub crosses the cluster whichever node each side talks to.
    publisher
        .publish("cl-classic", Bytes::from_static(b"classic"))
        .unwrap();
    let got = receive(&messages, Duration::from_secs(5), |_| true);
    assert_eq!(
        (got.kind, &got.payload[..]),
        (IncomingKind::Channel, &b"classic"[..])
    );
    publisher
        .publish("cl-pat-1", Bytes::from_static(b"pattern"))
        .unwrap();
    let got = receive(&messages, Duration::from_secs(5), |_| true);
    assert_eq!(got.kind, IncomingKind::Pattern);
    assert_eq!(got.pattern.as_deref(), Some("cl-pat*"));

    // A second subscriber: counted once more, on whichever master it landed.
    let (other, _) = start(RedisLinkConfig::cluster(seeds));
    other.subscribe(["cl-classic"]);
    other.ssubscribe([names[1].as_str()]);
    wait_for("two subscribers", Duration::from_secs(10), || {
        server_count(&publisher, "cl-classic") == Ok(2)
            && shard_server_count(&publisher, &names[1]) == Ok(2)
    });
    subscriber.sunsubscribe([names[0].as_str()]);
    wait_for(
        "the shard channel forgotten",
        Duration::from_secs(10),
        || shard_server_count(&publisher, &names[0]) == Ok(0),
    );
    publisher
        .spublish(names[0].as_str(), Bytes::from_static(b"nobody"))
        .unwrap();
    nothing_more(&messages, Duration::from_millis(100));

    wait_for("the publishes acknowledged", Duration::from_secs(5), || {
        publisher.counts().published == 6
    });
    let (sent, heard) = (publisher.counts(), subscriber.counts());
    assert_eq!((sent.publish_failed, sent.publish_dropped), (0, 0));
    assert_eq!((heard.received, heard.received_dropped), (5, 0));
    assert_eq!((sent.reconnects, heard.reconnects), (0, 0));
    assert!(sent.connected && heard.connected);
    other.stop();
    subscriber.stop();
    publisher.stop();
    let shown = format!(
        "redis link connected to cluster {}",
        cluster_seeds_shown(&cluster)
    );
    assert!(log_lines(&shown) >= 3, "{shown}");
    println!("cluster up in {up:?}; test done in {:?}", started.elapsed());
}

fn cluster_seeds_shown(cluster: &RedisCluster) -> String {
    let seeds: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| format!("redis://127.0.0.1:{}", node.port))
        .collect();
    seeds.join(",")
}

/// A directory removed when the test ends.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ringcast-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write a temporary file");
        path.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn rediss_with_a_test_ca() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let started = Instant::now();
    // A CA, and a certificate it signs for 127.0.0.1 and localhost.
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ringcast test CA");
    let ca = ca_params.self_signed(&ca_key).expect("the CA certificate");
    let server_key = KeyPair::generate().expect("a server key");
    let server_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server parameters");
    let server_cert = server_params
        .signed_by(&server_key, &ca, &ca_key)
        .expect("the server certificate");
    let dir = TempDir::new("redis-tls");
    let ca_file = dir.write("ca.pem", &ca.pem());
    let cert_file = dir.write("server.pem", &server_cert.pem());
    let key_file = dir.write("server.key", &server_key.serialize_pem());

    let tls_port = common::free_port();
    let tls_port_text = tls_port.to_string();
    // TLS on its own port; the plain port stays for the helper's readiness check.
    let redis = RedisServer::start_with(&[
        "--tls-port",
        &tls_port_text,
        "--tls-cert-file",
        &cert_file,
        "--tls-key-file",
        &key_file,
        "--tls-ca-cert-file",
        &ca_file,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let trusting = config(&url)
        .tls_ca_file(&ca_file)
        .expect("the CA file")
        .tls_ca_pem(ca.pem().as_bytes())
        .expect("the CA PEM");
    assert_eq!(trusting.tls_ca.len(), 2);
    let (link, messages) = start(trusting);
    link.subscribe(["tls-chan"]);
    link.ssubscribe(["tls-shard"]);
    wait_for(
        "the subscriptions over TLS",
        Duration::from_secs(10),
        || {
            server_count(&link, "tls-chan") == Ok(1)
                && shard_server_count(&link, "tls-shard") == Ok(1)
        },
    );
    link.publish("tls-chan", Bytes::from_static(b"over tls"))
        .unwrap();
    link.spublish("tls-shard", Bytes::from_static(b"sharded over tls"))
        .unwrap();
    receive(&messages, Duration::from_secs(5), |m| {
        m.payload == "over tls"
    });
    receive(&messages, Duration::from_secs(5), |m| {
        m.payload == "sharded over tls" && m.kind == IncomingKind::Sharded
    });
    // Redis sees the clients on its TLS port.
    let clients = command(redis.port, &["CLIENT", "LIST"]).expect("CLIENT LIST");
    let tls_clients = clients
        .lines()
        .filter(|line| line.contains(&format!("laddr=127.0.0.1:{tls_port}")))
        .count();
    assert_eq!(tls_clients, 2, "{clients}");

    // A host name the certificate names works too.
    let by_name = format!("rediss://localhost:{tls_port}");
    let (named, _) = start(config(&by_name).tls_ca_pem(ca.pem().as_bytes()).unwrap());
    wait_for("the link by host name", Duration::from_secs(10), || {
        named.counts().connected
    });
    named.stop();

    // Without the CA, the server is not trusted: never connected, one warning.
    let (untrusted, _) = start(config(&url));
    let warning = format!("cannot connect to redis at {url} (");
    wait_for("the warning", Duration::from_secs(10), || {
        log_lines(&warning) == 1
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!untrusted.counts().connected);
    untrusted.stop();
    link.stop();
    assert_eq!(log_lines(&warning), 1);
    println!("TLS: {:?}", started.elapsed());
}

#[test]
fn keys_are_set_with_an_expiry_and_looked_up() {
    let mut redis = RedisServer::start();
    let (link, _) = start(config(&redis.url()));
    wait_for("the link", Duration::from_secs(5), || {
        link.counts().connected
    });
    assert_eq!(block_on(link.exists("rl-key")), Ok(false));
    assert_eq!(link.set_ex("rl-key", "true", 60), Ok(()));
    // Fire-and-forget: the key shows up shortly.
    wait_for("the SET", Duration::from_secs(5), || {
        command(redis.port, &["GET", "rl-key"]) == Ok("true".to_owned())
    });
    let ttl: i64 = command(redis.port, &["TTL", "rl-key"])
        .expect("TTL")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&ttl), "TTL {ttl}");
    assert_eq!(block_on(link.exists("rl-key")), Ok(true));
    // No `EX 0` (an error in Redis): at least a second.
    assert_eq!(link.set_ex("rl-short", "1", 0), Ok(()));
    wait_for("the short SET", Duration::from_secs(5), || {
        command(redis.port, &["TTL", "rl-short"]) == Ok("1".to_owned())
    });
    // EXISTS does not care about the type: a list is there too.
    assert_eq!(
        command(redis.port, &["LPUSH", "rl-list", "x"]),
        Ok("1".to_owned())
    );
    assert_eq!(block_on(link.exists("rl-list")), Ok(true));

    // Down: both answer at once, nothing is queued for later.
    redis.kill();
    wait_for("the link down", Duration::from_secs(10), || {
        !link.counts().connected
    });
    assert_eq!(
        link.set_ex("rl-later", "true", 60),
        Err(CommandError::Disconnected)
    );
    assert_eq!(
        block_on(link.exists("rl-key")),
        Err(CommandError::Disconnected)
    );
    link.stop();
    assert_eq!(block_on(link.exists("rl-key")), Err(CommandError::Stopped));
}

#[test]
fn keys_on_a_cluster_go_to_the_master_owning_their_slot() {
    let cluster = RedisCluster::start(3);
    let seeds = ClusterSeeds::parse(&cluster.seeds()).expect("the seeds");
    let (link, _) = start(RedisLinkConfig::cluster(seeds));
    wait_for("the link", Duration::from_secs(10), || {
        link.counts().connected
    });
    // One key per master.
    let mut keys: Vec<Option<String>> = vec![None; 3];
    for i in 0..100 {
        let key = format!("socket.io-admin#{i:016x}");
        let owner = cluster.owner_of(&key);
        keys[owner].get_or_insert(key);
    }
    for (owner, key) in keys.iter().enumerate() {
        let key = key.as_deref().expect("a key per master");
        assert_eq!(link.set_ex(key, "true", 86_400), Ok(()));
        wait_for("the SET", Duration::from_secs(5), || {
            command(cluster.nodes[owner].port, &["GET", key]) == Ok("true".to_owned())
        });
        assert_eq!(block_on(link.exists(key)), Ok(true), "{key}");
    }
    assert_eq!(block_on(link.exists("socket.io-admin#none")), Ok(false));
    link.stop();
}

/// `MSET` of `pairs` on the server at `port`, in one command.
fn mset(port: u16, pairs: &[(String, String)]) {
    let mut args = vec!["MSET"];
    for (key, value) in pairs {
        args.push(key);
        args.push(value);
    }
    assert_eq!(command(port, &args), Ok("OK".to_owned()));
}

fn scan_values(link: &RedisLink, pattern: &str, limit: usize) -> Vec<(String, String)> {
    block_on(link.scan_values(pattern, limit)).expect("scan_values")
}

#[test]
fn keys_are_scanned_with_their_values_and_deleted() {
    let mut redis = RedisServer::start();
    let (link, _) = start(config(&redis.url()));
    wait_for("the link", Duration::from_secs(5), || {
        link.counts().connected
    });
    let pattern = "socket.io-ringcast#revoked#*";
    assert_eq!(scan_values(&link, pattern, 100), vec![]);
    let wanted: Vec<(String, String)> = ["alice", "bob", "carol"]
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let key = format!("socket.io-ringcast#revoked#{user}");
            (key, format!("{}", 1_700_000_000 + i))
        })
        .collect();
    mset(redis.port, &wanted);
    // Not matching, and matching but not a string: neither is answered.
    mset(
        redis.port,
        &[("socket.io-ringcast#other#dave".into(), "1".into())],
    );
    assert_eq!(
        command(
            redis.port,
            &["LPUSH", "socket.io-ringcast#revoked#list", "x"]
        ),
        Ok("1".to_owned())
    );
    assert_eq!(scan_values(&link, pattern, 100), wanted);
    // The limit bounds the keys read.
    let two = scan_values(&link, pattern, 2);
    // The list may be one of the two keys scanned.
    assert!((1..=2).contains(&two.len()), "{two:?}");
    assert!(two.iter().all(|pair| wanted.contains(pair)), "{two:?}");
    assert_eq!(scan_values(&link, pattern, 0), vec![]);

    // Fire-and-forget: the key goes shortly; deleting it again is no error.
    assert_eq!(link.delete(&wanted[1].0), Ok(()));
    wait_for("the DEL", Duration::from_secs(5), || {
        command(redis.port, &["EXISTS", &wanted[1].0]) == Ok("0".to_owned())
    });
    assert_eq!(link.delete(&wanted[1].0), Ok(()));
    assert_eq!(
        scan_values(&link, pattern, 100),
        vec![wanted[0].clone(), wanted[2].clone()]
    );

    // More keys than one SCAN step looks at and one MGET reads: every one, once.
    let many: Vec<(String, String)> = (0..1500)
        .map(|i| (format!("rl-many#{i:04}"), format!("v{i}")))
        .collect();
    mset(redis.port, &many);
    assert_eq!(scan_values(&link, "rl-many#*", 10_000), many);
    assert_eq!(scan_values(&link, "rl-many#*", 1200).len(), 1200);

    // Down: both answer at once, nothing is queued for later.
    redis.kill();
    wait_for("the link down", Duration::from_secs(10), || {
        !link.counts().connected
    });
    let asked = Instant::now();
    assert_eq!(
        block_on(link.scan_values(pattern, 100)),
        Err(CommandError::Disconnected)
    );
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(link.delete(&wanted[0].0), Err(CommandError::Disconnected));
    link.stop();
    assert_eq!(
        block_on(link.scan_values(pattern, 100)),
        Err(CommandError::Stopped)
    );
}

#[test]
fn keys_on_a_cluster_are_scanned_on_every_master() {
    let cluster = RedisCluster::start(3);
    let seeds = ClusterSeeds::parse(&cluster.seeds()).expect("the seeds");
    let (link, _) = start(RedisLinkConfig::cluster(seeds));
    wait_for("the link", Duration::from_secs(10), || {
        link.counts().connected
    });
    let pattern = "socket.io-ringcast#revoked#*";
    // Keys spread over the masters (and many slots), each set at its owner.
    let mut wanted: Vec<(String, String)> = (0..30)
        .map(|i| {
            (
                format!("socket.io-ringcast#revoked#user{i}"),
                format!("{i}"),
            )
        })
        .collect();
    wanted.sort();
    let mut owners = [0usize; 3];
    for (key, value) in &wanted {
        let owner = cluster.owner_of(key);
        owners[owner] += 1;
        assert_eq!(
            command(cluster.nodes[owner].port, &["SET", key, value]),
            Ok("OK".to_owned())
        );
    }
    assert!(
        owners.iter().all(|&n| n > 0),
        "keys on every master: {owners:?}"
    );
    let other = "socket.io-ringcast#other#x";
    assert_eq!(
        command(
            cluster.nodes[cluster.owner_of(other)].port,
            &["SET", other, "1"]
        ),
        Ok("OK".to_owned())
    );
    assert_eq!(scan_values(&link, pattern, 100), wanted);
    let five = scan_values(&link, pattern, 5);
    assert_eq!(five.len(), 5, "{five:?}");
    assert!(five.iter().all(|pair| wanted.contains(pair)), "{five:?}");

    // Deleted at the master owning each key's slot.
    for owner in 0..3 {
        let at = wanted
            .iter()
            .position(|(key, _)| cluster.owner_of(key) == owner)
            .expect("a key on this master");
        let (key, _) = wanted.remove(at);
        assert_eq!(link.delete(&key), Ok(()));
        wait_for("the DEL", Duration::from_secs(5), || {
            command(cluster.nodes[owner].port, &["EXISTS", &key]) == Ok("0".to_owned())
        });
    }
    assert_eq!(scan_values(&link, pattern, 100), wanted);
    link.stop();
}

/// `PTTL key` in milliseconds, as the server at `port` says.
fn pttl(port: u16, key: &str) -> i64 {
    command(port, &["PTTL", key])
        .expect("PTTL")
        .parse()
        .expect("milliseconds")
}

#[test]
fn keys_are_claimed_once_read_and_overwritten() {
    let mut redis = RedisServer::start();
    let (link, _) = start(config(&redis.url()));
    wait_for("the link", Duration::from_secs(5), || {
        link.counts().connected
    });
    assert_eq!(block_on(link.get("rl-claim")), Ok(None));
    assert_eq!(
        block_on(link.set_nx_px("rl-claim", "running a", 60_000)),
        Ok(true)
    );
    assert_eq!(
        block_on(link.set_nx_px("rl-claim", "running b", 60_000)),
        Ok(false)
    );
    assert_eq!(
        block_on(link.get("rl-claim")),
        Ok(Some("running a".to_owned()))
    );
    assert!((1..=60_000).contains(&pttl(redis.port, "rl-claim")));
    // Many claims in flight at once on one key: exactly one wins.
    let claims: Vec<_> = (0..20)
        .map(|i| link.set_nx_px("rl-race", format!("claim {i}"), 60_000))
        .collect();
    let won = block_on(async {
        let mut won = 0;
        for claim in claims {
            if claim.await.expect("an answer") {
                won += 1;
            }
        }
        won
    });
    assert_eq!(won, 1);

    // SET PX overwrites the value and the expiry; fire-and-forget, so it shows up shortly.
    assert_eq!(link.set_px("rl-claim", "done a 200 e30=", 120_000), Ok(()));
    wait_for("the SET PX", Duration::from_secs(5), || {
        command(redis.port, &["GET", "rl-claim"]) == Ok("done a 200 e30=".to_owned())
    });
    assert!((60_001..=120_000).contains(&pttl(redis.port, "rl-claim")));
    assert_eq!(
        block_on(link.get("rl-claim")),
        Ok(Some("done a 200 e30=".to_owned()))
    );
    // No `PX 0` (an error in Redis): a millisecond, after which the key can be claimed again.
    assert_eq!(block_on(link.set_nx_px("rl-brief", "x", 0)), Ok(true));
    wait_for("the brief key to expire", Duration::from_secs(5), || {
        block_on(link.get("rl-brief")) == Ok(None)
    });
    assert_eq!(block_on(link.set_nx_px("rl-brief", "y", 60_000)), Ok(true));
    // A key of another type: an error, not a panic.
    assert_eq!(
        command(redis.port, &["LPUSH", "rl-list", "x"]),
        Ok("1".to_owned())
    );
    assert!(matches!(
        block_on(link.get("rl-list")),
        Err(CommandError::Redis(_))
    ));

    // Down: every one answers at once, nothing is queued for later.
    redis.kill();
    wait_for("the link down", Duration::from_secs(10), || {
        !link.counts().connected
    });
    let asked = Instant::now();
    assert_eq!(
        block_on(link.set_nx_px("rl-later", "running", 60_000)),
        Err(CommandError::Disconnected)
    );
    assert_eq!(
        block_on(link.get("rl-claim")),
        Err(CommandError::Disconnected)
    );
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(
        link.set_px("rl-later", "done", 60_000),
        Err(CommandError::Disconnected)
    );
    link.stop();
    assert_eq!(block_on(link.get("rl-claim")), Err(CommandError::Stopped));
    assert_eq!(
        block_on(link.set_nx_px("rl-claim", "running", 60_000)),
        Err(CommandError::Stopped)
    );
}

#[test]
fn sessions_hashes_and_streams_for_recovery() {
    let redis = RedisServer::start();
    let (link, _) = start(config(&redis.url()));
    wait_for("the link", Duration::from_secs(5), || {
        link.counts().connected
    });
    // GETDEL: taken once.
    assert_eq!(link.set_px("rl-session", "s1", 60_000), Ok(()));
    wait_for("the SET PX", Duration::from_secs(5), || {
        command(redis.port, &["GET", "rl-session"]) == Ok("s1".to_owned())
    });
    assert_eq!(
        block_on(link.getdel("rl-session")),
        Ok(Some("s1".to_owned()))
    );
    assert_eq!(block_on(link.getdel("rl-session")), Ok(None));
    // A hash: set, read, expired, field deleted.
    assert_eq!(link.hset("rl-live", "p1", "one"), Ok(()));
    assert_eq!(link.hset("rl-live", "p2", "two"), Ok(()));
    assert_eq!(link.pexpire("rl-live", 30_000), Ok(()));
    wait_for("the HSET", Duration::from_secs(5), || {
        block_on(link.hget("rl-live", "p2")) == Ok(Some("two".to_owned()))
    });
    assert!((1..=30_000).contains(&pttl(redis.port, "rl-live")));
    assert_eq!(link.hdel("rl-live", "p1"), Ok(()));
    wait_for("the HDEL", Duration::from_secs(5), || {
        block_on(link.hget("rl-live", "p1")) == Ok(None)
    });
    assert_eq!(block_on(link.hget("rl-none", "p1")), Ok(None));
    // A stream: binary values, trimmed to about its length, read back from an entry on.
    for i in 0..300u32 {
        let fields = vec![
            ("o", Bytes::from(format!("offset-{i}"))),
            ("m", Bytes::from(vec![0xff, 0, i as u8])),
        ];
        assert_eq!(link.append("rl-log", 1000, fields), Ok(()));
    }
    wait_for("the XADDs", Duration::from_secs(5), || {
        command(redis.port, &["XLEN", "rl-log"]) == Ok("300".to_owned())
    });
    let after = |offset: &str, limit| {
        block_on(link.stream_after("rl-log", "o", Bytes::from(offset.to_owned()), limit))
    };
    // Found on the second page (pages are 256 entries): the 279 after it, oldest first.
    let missed = after("offset-20", 1000).expect("an answer").expect("found");
    assert_eq!(missed.len(), 279);
    assert_eq!(missed[0].field("o"), Some(&Bytes::from("offset-21")));
    assert_eq!(missed[0].field("m"), Some(&Bytes::from(vec![0xff, 0, 21])));
    assert_eq!(missed[278].field("o"), Some(&Bytes::from("offset-299")));
    // The newest: nothing after it. Not there, or past the limit: none.
    assert_eq!(after("offset-299", 1000), Ok(Some(Vec::new())));
    assert_eq!(after("bogus", 1000), Ok(None));
    assert_eq!(after("offset-20", 100), Ok(None));
    assert_eq!(after("offset-20", 0), Ok(None));
    assert_eq!(
        block_on(link.stream_after("rl-nothing", "o", Bytes::from("x"), 10)),
        Ok(None)
    );
    // Trimmed: `MAXLEN ~` keeps at least the wanted length, not every entry.
    for i in 0..2000u32 {
        let fields = vec![("o", Bytes::from(format!("later-{i}")))];
        assert_eq!(link.append("rl-log", 1000, fields), Ok(()));
    }
    wait_for("the trimmed stream", Duration::from_secs(5), || {
        after("later-1999", 10) == Ok(Some(Vec::new()))
    });
    let length: usize = command(redis.port, &["XLEN", "rl-log"])
        .expect("XLEN")
        .parse()
        .expect("a count");
    assert!((1000..1200).contains(&length), "{length}");
    assert_eq!(after("offset-20", 5000), Ok(None));
    // Another type under the key: an error, not a panic.
    assert!(matches!(
        block_on(link.getdel("rl-live")),
        Err(CommandError::Redis(_))
    ));
    link.stop();
}

#[test]
fn claims_on_a_cluster_go_to_the_master_owning_their_slot() {
    let cluster = RedisCluster::start(3);
    let seeds = ClusterSeeds::parse(&cluster.seeds()).expect("the seeds");
    let (link, _) = start(RedisLinkConfig::cluster(seeds));
    wait_for("the link", Duration::from_secs(10), || {
        link.counts().connected
    });
    // One key per master.
    let mut keys: Vec<Option<String>> = vec![None; 3];
    for i in 0..100 {
        let key = format!("socket.io-ringcast#idem#backend#{i:064x}");
        let owner = cluster.owner_of(&key);
        keys[owner].get_or_insert(key);
    }
    for (owner, key) in keys.iter().enumerate() {
        let key = key.as_deref().expect("a key per master");
        let port = cluster.nodes[owner].port;
        assert_eq!(block_on(link.get(key)), Ok(None), "{key}");
        assert_eq!(block_on(link.set_nx_px(key, "running", 60_000)), Ok(true));
        assert_eq!(command(port, &["GET", key]), Ok("running".to_owned()));
        assert_eq!(block_on(link.set_nx_px(key, "other", 60_000)), Ok(false));
        assert_eq!(block_on(link.get(key)), Ok(Some("running".to_owned())));
        assert_eq!(link.set_px(key, "done", 60_000), Ok(()));
        wait_for("the SET PX", Duration::from_secs(5), || {
            command(port, &["GET", key]) == Ok("done".to_owned())
        });
        assert_eq!(block_on(link.get(key)), Ok(Some("done".to_owned())));
    }
    link.stop();
}
