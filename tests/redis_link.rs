//! The process's link to Redis against a real `redis-server` (started per test on a free
//! loopback port): publish / subscribe / psubscribe round trips and `PUBSUB NUMSUB`, Redis
//! down at start, Redis killed and restarted under load, and a password that never reaches the
//! logs. Uses only what `ringcast::internals::net::redis` exposes; every wait has a deadline.

mod common;

use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::redis::RedisServer;
use ringcast::internals::net::redis::{
    CommandError, Incoming, PublishError, RedisLink, RedisLinkConfig, RedisUrl,
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
