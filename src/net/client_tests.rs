//! `net::client` against a scripted std::thread server on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{CallError, Pool, Target, TargetError};

/// What the server does with one request.
#[derive(Clone)]
enum Reply {
    /// Writes these bytes and keeps reading requests.
    Send(&'static [u8]),
    /// Writes these bytes, then closes.
    SendClose(&'static [u8]),
    /// Closes without answering.
    Close,
    /// Sleeps, then writes these bytes.
    Slow(Duration, &'static [u8]),
}

/// The server's view: requests (connection index, head, body), connections.
#[derive(Default)]
struct Seen {
    requests: Vec<(usize, String, Vec<u8>)>,
    connections: usize,
    active: usize,
    max_active: usize,
}

type Script = Arc<dyn Fn(usize, usize) -> Reply + Send + Sync>;

struct Server {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves every connection with `script(connection index, request index on it)`.
    fn start(script: impl Fn(usize, usize) -> Reply + Send + Sync + 'static) -> Server {
        let script: Script = Arc::new(script);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(15);
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let index = {
                                let mut seen = seen.lock().unwrap();
                                seen.connections += 1;
                                seen.active += 1;
                                seen.max_active = seen.max_active.max(seen.active);
                                seen.connections - 1
                            };
                            let (seen, script) = (seen.clone(), script.clone());
                            std::thread::spawn(move || {
                                serve(stream, index, &seen, &*script);
                                seen.lock().unwrap().active -= 1;
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        Server {
            port,
            seen,
            stop,
            accept: Some(accept),
        }
    }

    fn target(&self) -> Target {
        Target::parse(&format!("http://127.0.0.1:{}/hook", self.port)).expect("target")
    }

    fn connections(&self) -> usize {
        self.seen.lock().unwrap().connections
    }

    fn requests(&self) -> Vec<(usize, String, Vec<u8>)> {
        self.seen.lock().unwrap().requests.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// One connection: requests (head, then Content-Length bytes) until EOF, each answered by the
/// script.
fn serve(
    mut stream: TcpStream,
    index: usize,
    seen: &Mutex<Seen>,
    script: &dyn Fn(usize, usize) -> Reply,
) {
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = Vec::new();
    for request in 0..100 {
        let Some((head, body)) = read_request(&mut stream, &mut buf) else {
            return;
        };
        seen.lock().unwrap().requests.push((index, head, body));
        match script(index, request) {
            Reply::Send(bytes) => {
                if stream.write_all(bytes).is_err() {
                    return;
                }
            }
            Reply::SendClose(bytes) => {
                let _ = stream.write_all(bytes);
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
            Reply::Close => return,
            Reply::Slow(pause, bytes) => {
                std::thread::sleep(pause);
                if stream.write_all(bytes).is_err() {
                    return;
                }
            }
        }
    }
}

fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end + 4].to_vec()).expect("utf-8 head");
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().expect("length"))
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + length].to_vec();
            buf.drain(..end + 4 + length);
            return Some((head, body));
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A runtime per call: a pool whose connections outlive one must not be used in the next
/// (monoio's streams belong to their runtime's driver).
fn run<F: std::future::Future>(future: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(future)
}

fn in_secs(secs: f64) -> Instant {
    Instant::now() + Duration::from_secs_f64(secs)
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test: yes\r\n\r\nhello";
const EXTRA: &str = "Content-Type: application/cloudevents+json\r\nRingcast-Signature: sig\r\n";

#[test]
fn content_length_answer_and_the_request_head() {
    let server = Server::start(|_, _| Reply::Send(OK));
    let pool = Pool::new(server.target(), 4, 4);
    let answer = run(pool.post(EXTRA, b"{\"a\":1}", in_secs(3.0), 1024)).expect("answer");
    assert_eq!(answer.status, 200);
    assert_eq!(&answer.body[..], b"hello");
    assert_eq!(answer.header("x-TEST"), Some("yes"));
    assert_eq!(answer.header("missing"), None);
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let (_, head, body) = &requests[0];
    assert!(head.starts_with("POST /hook HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nHost: 127.0.0.1:{}\r\n", server.port)),
        "{head}"
    );
    assert!(head.contains("\r\nContent-Length: 7\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: application/cloudevents+json\r\n"),
        "{head}"
    );
    assert!(
        head.ends_with("\r\nRingcast-Signature: sig\r\n\r\n"),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert_eq!(body, b"{\"a\":1}");
}

#[test]
fn keep_alive_reuses_the_connection() {
    let server = Server::start(|_, _| Reply::Send(OK));
    let pool = Pool::new(server.target(), 4, 4);
    run(async move {
        for _ in 0..2 {
            let answer = pool
                .post("", b"x", in_secs(3.0), 1024)
                .await
                .expect("answer");
            assert_eq!(&answer.body[..], b"hello");
            assert_eq!(pool.open(), 1);
        }
        // Dropping the pool closes its idle connection.
        drop(pool);
    });
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|(conn, _, _)| *conn == 0));
    assert_eq!(server.connections(), 1);
    for _ in 0..200 {
        if server.seen.lock().unwrap().active == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the idle connection was not closed");
}

#[test]
fn chunked_answer_is_decoded_and_the_connection_reused() {
    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: t\r\n\r\n";
    let server = Server::start(|_, _| Reply::Send(CHUNKED));
    let pool = Pool::new(server.target(), 4, 4);
    run(async {
        for _ in 0..2 {
            let answer = pool
                .post("", b"x", in_secs(3.0), 1024)
                .await
                .expect("answer");
            assert_eq!(&answer.body[..], b"hello, world");
        }
        // Over the limit, chunk by chunk: that connection is closed.
        let answer = pool.post("", b"x", in_secs(3.0), 8).await;
        assert_eq!(answer.err(), Some(CallError::TooLarge));
        assert_eq!(pool.open(), 0);
    });
    assert_eq!(server.connections(), 1);
}

#[test]
fn no_content_and_interim_answers() {
    const ANSWER: &[u8] =
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
    let server = Server::start(|_, _| Reply::Send(ANSWER));
    let pool = Pool::new(server.target(), 4, 4);
    run(async {
        for _ in 0..2 {
            let answer = pool
                .post("", b"x", in_secs(3.0), 1024)
                .await
                .expect("answer");
            assert_eq!(answer.status, 204);
            assert!(answer.body.is_empty());
        }
    });
    assert_eq!(server.connections(), 1);
}

#[test]
fn connection_close_is_not_reused_and_redirects_are_answers() {
    const CLOSE: &[u8] =
        b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    let server = Server::start(|_, _| Reply::Send(CLOSE));
    let pool = Pool::new(server.target(), 4, 4);
    run(async {
        for _ in 0..2 {
            let answer = pool
                .post("", b"x", in_secs(3.0), 1024)
                .await
                .expect("answer");
            assert_eq!(answer.status, 302);
            assert_eq!(answer.header("location"), Some("/elsewhere"));
            assert_eq!(pool.open(), 0);
        }
    });
    assert_eq!(server.connections(), 2);
}

#[test]
fn body_to_eof_and_http10_are_not_reused() {
    const EOF: &[u8] = b"HTTP/1.1 200 OK\r\n\r\nuntil the end";
    let server = Server::start(|_, _| Reply::SendClose(EOF));
    let pool = Pool::new(server.target(), 4, 4);
    let answer = run(pool.post("", b"x", in_secs(3.0), 1024)).expect("answer");
    assert_eq!(&answer.body[..], b"until the end");
    assert_eq!(pool.open(), 0);

    const HTTP10: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let server = Server::start(|_, _| Reply::Send(HTTP10));
    let pool = Pool::new(server.target(), 4, 4);
    let answer = run(pool.post("", b"x", in_secs(3.0), 1024)).expect("answer");
    assert_eq!(&answer.body[..], b"ok");
    assert_eq!(pool.open(), 0);
}

#[test]
fn refused_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let target = Target::parse(&format!("http://127.0.0.1:{port}")).expect("target");
    let pool = Pool::new(target, 4, 4);
    let result = run(pool.post("", b"x", in_secs(3.0), 1024));
    assert_eq!(result.err(), Some(CallError::Refused));
    assert_eq!(pool.open(), 0);
}

#[test]
fn slow_backend_times_out() {
    let server = Server::start(|_, _| Reply::Slow(Duration::from_millis(1500), OK));
    let pool = Pool::new(server.target(), 4, 4);
    let started = Instant::now();
    let result = run(pool.post("", b"x", in_secs(0.3), 1024));
    assert_eq!(result.err(), Some(CallError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(pool.open(), 0);
    // A deadline already passed.
    let result = run(pool.post("", b"x", Instant::now(), 1024));
    assert_eq!(result.err(), Some(CallError::Timeout));
    assert_eq!(pool.open(), 0);
}

#[test]
fn close_after_the_request_is_broken() {
    let server = Server::start(|_, _| Reply::Close);
    let pool = Pool::new(server.target(), 4, 4);
    let result = run(pool.post("", b"x", in_secs(3.0), 1024));
    assert_eq!(result.err(), Some(CallError::Broken));
    assert_eq!(pool.open(), 0);
    // Mid-answer too.
    let server =
        Server::start(|_, _| Reply::SendClose(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal"));
    let pool = Pool::new(server.target(), 4, 4);
    let result = run(pool.post("", b"x", in_secs(3.0), 1024));
    assert_eq!(result.err(), Some(CallError::Broken));
}

#[test]
fn large_answer_is_too_large() {
    const BIG: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    let server = Server::start(|_, _| Reply::Send(BIG));
    let pool = Pool::new(server.target(), 4, 4);
    let result = run(pool.post("", b"x", in_secs(3.0), 100));
    assert_eq!(result.err(), Some(CallError::TooLarge));
    assert_eq!(pool.open(), 0);
    const BIG_EOF: &[u8] = b"HTTP/1.1 200 OK\r\n\r\n0123456789abcdef0123456789abcdef";
    let server = Server::start(|_, _| Reply::SendClose(BIG_EOF));
    let pool = Pool::new(server.target(), 4, 4);
    let result = run(pool.post("", b"x", in_secs(3.0), 16));
    assert_eq!(result.err(), Some(CallError::TooLarge));
}

#[test]
fn garbage_is_malformed() {
    for garbage in [
        &b"garbage\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n",
    ] {
        let garbage: &'static [u8] = garbage;
        let server = Server::start(move |_, _| Reply::SendClose(garbage));
        let pool = Pool::new(server.target(), 4, 4);
        let result = run(pool.post("", b"x", in_secs(3.0), 1024));
        assert_eq!(
            result.err(),
            Some(CallError::Malformed),
            "{:?}",
            String::from_utf8_lossy(garbage)
        );
        assert_eq!(pool.open(), 0);
    }
}

#[test]
fn one_connection_serves_three_callers_in_turn() {
    let server = Server::start(|_, _| Reply::Slow(Duration::from_millis(50), OK));
    let pool = Rc::new(Pool::new(server.target(), 1, 8));
    let results = run(async {
        let bodies = [&b"0"[..], b"1", b"2"];
        let posts = bodies.map(|body| pool.post("", body, in_secs(3.0), 1024));
        futures_util::future::join_all(posts).await
    });
    assert!(results
        .iter()
        .all(|r| r.as_ref().is_ok_and(|a| a.status == 200)));
    // Served in the order they came.
    let bodies: Vec<Vec<u8>> = server
        .requests()
        .into_iter()
        .map(|(_, _, body)| body)
        .collect();
    assert_eq!(bodies, [b"0", b"1", b"2"]);
    assert_eq!(server.seen.lock().unwrap().max_active, 1);
    assert_eq!(pool.open(), 1);
    assert_eq!(pool.waiting(), 0);
}

#[test]
fn too_many_waiting_is_overloaded() {
    let server = Server::start(|_, _| Reply::Slow(Duration::from_millis(300), OK));
    let pool = Rc::new(Pool::new(server.target(), 1, 1));
    let results = run(async {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let pool = pool.clone();
                monoio::spawn(async move { pool.post("", b"x", in_secs(3.0), 1024).await })
            })
            .collect();
        monoio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!((pool.open(), pool.waiting()), (1, 1));
        let mut results = Vec::new();
        for handle in handles {
            results.push(handle.await.map(|a| a.status));
        }
        results
    });
    let overloaded = results
        .iter()
        .filter(|r| **r == Err(CallError::Overloaded))
        .count();
    let ok = results.iter().filter(|r| **r == Ok(200)).count();
    assert_eq!((overloaded, ok), (1, 2), "{results:?}");
}

#[test]
fn a_waiter_past_its_deadline_leaves_and_cancelling_frees_the_slot() {
    let server = Server::start(|_, _| Reply::Slow(Duration::from_millis(400), OK));
    let pool = Rc::new(Pool::new(server.target(), 1, 4));
    run(async {
        let first = {
            let pool = pool.clone();
            monoio::spawn(async move { pool.post("", b"x", in_secs(3.0), 1024).await })
        };
        monoio::time::sleep(Duration::from_millis(50)).await;
        let late = pool.post("", b"x", in_secs(0.1), 1024).await;
        assert_eq!(late.err(), Some(CallError::Timeout));
        assert_eq!(pool.waiting(), 0);
        // A waiter dropped while waiting leaves the queue.
        {
            let cancelled = pool.post("", b"x", in_secs(3.0), 1024);
            let raced = monoio::time::timeout(Duration::from_millis(20), cancelled).await;
            assert!(raced.is_err());
        }
        assert_eq!(pool.waiting(), 0);
        assert_eq!(first.await.map(|a| a.status), Ok(200));
        // The connection is idle again; a call dropped mid-request closes it.
        assert_eq!(pool.open(), 1);
        {
            let cancelled = pool.post("", b"x", in_secs(3.0), 1024);
            let raced = monoio::time::timeout(Duration::from_millis(50), cancelled).await;
            assert!(raced.is_err());
        }
        assert_eq!(pool.open(), 0);
        let again = pool.post("", b"x", in_secs(3.0), 1024).await;
        assert_eq!(again.map(|a| a.status), Ok(200));
    });
}

#[test]
fn stale_idle_connection_is_retried_once() {
    // The first connection answers once, then the backend closes it (as after its keep-alive
    // timeout); later connections stay up.
    let server = Server::start(|conn, _| {
        if conn == 0 {
            Reply::SendClose(OK)
        } else {
            Reply::Send(OK)
        }
    });
    let pool = Pool::new(server.target(), 4, 4);
    run(async {
        let first = pool.post("", b"one", in_secs(3.0), 1024).await;
        assert_eq!(first.map(|a| a.status), Ok(200));
        // The close is not yet seen: the connection went back idle.
        monoio::time::sleep(Duration::from_millis(100)).await;
        let second = pool.post("", b"two", in_secs(3.0), 1024).await;
        assert_eq!(second.map(|a| a.status), Ok(200));
    });
    assert_eq!(server.connections(), 2);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!((requests[1].0, &requests[1].2[..]), (1, &b"two"[..]));
}

#[test]
fn targets() {
    let target = Target::parse("http://127.0.0.1:8080/a/b?c=d").expect("target");
    assert_eq!(target.addr, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(
        (target.host.as_str(), target.path.as_str()),
        ("127.0.0.1:8080", "/a/b?c=d")
    );
    let target = Target::parse("HTTP://localhost").expect("target");
    assert_eq!(target.addr.port(), 80);
    assert_eq!(
        (target.host.as_str(), target.path.as_str()),
        ("localhost", "/")
    );
    let target = Target::parse("http://[::1]:9000?x").expect("target");
    assert_eq!(target.addr, "[::1]:9000".parse().unwrap());
    assert_eq!(
        (target.host.as_str(), target.path.as_str()),
        ("[::1]:9000", "/?x")
    );
    assert_eq!(
        Target::parse("https://example.com/").err(),
        Some(TargetError::Unsupported)
    );
    for bad in [
        "example.com",
        "ftp://example.com",
        "http://",
        "http://:80/",
        "http://host:0/",
        "http://host:99999/",
        "http://host:+80/",
        "http://user:pw@host/",
        "http://host/a b",
        "http://host/a\r\nX: y",
        "http://host/#frag",
        "http://[::1/",
        "http://[zz]/",
        "http://ho st/",
    ] {
        assert!(
            matches!(Target::parse(bad), Err(TargetError::Invalid(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        Target::parse("http://no-such-host.invalid/"),
        Err(TargetError::Resolve(_))
    ));
    assert_eq!(CallError::TooLarge.as_str(), "too_large");
}

#[test]
fn idle_connections_age_out() {
    let server = Server::start(|_, _| Reply::Send(OK));
    let pool = Pool::with_idle_timeout(server.target(), 4, Duration::from_millis(100));
    run(async {
        let first = pool.post("", b"x", in_secs(3.0), 1024).await;
        assert_eq!(first.map(|a| a.status), Ok(200));
        assert_eq!(pool.open(), 1);
        monoio::time::sleep(Duration::from_millis(200)).await;
        let second = pool.post("", b"x", in_secs(3.0), 1024).await;
        assert_eq!(second.map(|a| a.status), Ok(200));
        // The old one closed, the new one idle.
        assert_eq!(pool.open(), 1);
    });
    assert_eq!(server.connections(), 2);
}

#[test]
fn under_the_fusion_driver() {
    // What a shard runs: io_uring where the kernel has it, epoll otherwise.
    let server = Server::start(|_, request| {
        if request < 2 {
            Reply::Send(OK)
        } else {
            Reply::Slow(Duration::from_millis(1000), OK)
        }
    });
    let pool = Pool::new(server.target(), 4, 4);
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(async move {
            for _ in 0..2 {
                let answer = pool.post(EXTRA, b"x", in_secs(3.0), 1024).await;
                assert_eq!(
                    answer.map(|a| a.body),
                    Ok(bytes::Bytes::from_static(b"hello"))
                );
            }
            let late = pool.post(EXTRA, b"x", in_secs(0.2), 1024).await;
            assert_eq!(late.err(), Some(CallError::Timeout));
            assert_eq!(pool.open(), 0);
        });
    assert_eq!(server.connections(), 1);
}
