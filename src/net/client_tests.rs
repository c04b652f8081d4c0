//! `net::client` against a scripted std::thread server on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
        Target::parse(&format!("http://127.0.0.1:{}/hook", self.port), None).expect("target")
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

fn read_request(stream: &mut impl Read, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
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
    let target = Target::parse(&format!("http://127.0.0.1:{port}"), None).expect("target");
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
    let target = Target::parse("http://127.0.0.1:8080/a/b?c=d", None).expect("target");
    assert_eq!(target.addr, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(
        (target.host.as_str(), target.path.as_str()),
        ("127.0.0.1:8080", "/a/b?c=d")
    );
    let target = Target::parse("HTTP://localhost", None).expect("target");
    assert_eq!(target.addr.port(), 80);
    assert_eq!(
        (target.host.as_str(), target.path.as_str()),
        ("localhost", "/")
    );
    let target = Target::parse("http://[::1]:9000?x", None).expect("target");
    assert_eq!(target.addr, "[::1]:9000".parse().unwrap());
    assert_eq!(
        (target.host.as_str(), target.path.as_str()),
        ("[::1]:9000", "/?x")
    );
    assert_eq!(
        Target::parse("https://example.com/", None).err(),
        Some(TargetError::NoTls)
    );
    assert!(Target::is_https("HTTPS://x") && !Target::is_https("http://x"));
    let config = client_config(None);
    let target = Target::parse("https://127.0.0.1/h", Some(config.clone())).expect("https");
    assert_eq!(target.addr.port(), 443);
    let tls = target.tls.expect("tls");
    assert!(matches!(
        tls.name,
        rustls::pki_types::ServerName::IpAddress(_)
    ));
    let target = Target::parse("https://localhost:8443", Some(config.clone())).expect("https");
    assert_eq!(target.addr.port(), 8443);
    assert!(matches!(
        target.tls.expect("tls").name,
        rustls::pki_types::ServerName::DnsName(_)
    ));
    // TLS given for an http:// target is not used.
    let target = Target::parse("http://127.0.0.1/", Some(config)).expect("http");
    assert!(target.tls.is_none());
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
            matches!(Target::parse(bad, None), Err(TargetError::Invalid(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        Target::parse("http://no-such-host.invalid/", None),
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

// ---------------------------------------------------------------------------------------------
// https://

/// A CA and a leaf for `127.0.0.1` (an IP SAN) and `localhost` signed by it, made by `openssl`
/// in a directory of their own: `ca.pem`, `leaf.pem` (the leaf, then the CA), `leaf.key`.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        Pki::with_names(tag, "IP:127.0.0.1,DNS:localhost")
    }

    /// The leaf for these subject alternative names (`openssl`'s syntax), made by
    /// `tests/control/pki.sh`.
    fn with_names(tag: &str, names: &str) -> Pki {
        let dir =
            std::env::temp_dir().join(format!("ringcast-client-tls-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/control/pki.sh");
        let status = std::process::Command::new("sh")
            .arg(script)
            .arg(&dir)
            .arg(names)
            .status()
            .expect("run tests/control/pki.sh (is openssl installed?)");
        assert!(status.success(), "pki.sh {names}");
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TLS client trusting only the CA in `ca` (none: no root at all).
fn client_config(ca: Option<&Path>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        for certificate in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("ca") {
            roots.add(certificate.expect("certificate")).expect("root");
        }
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A TLS server on 127.0.0.1 answering every request with [`OK`], keeping connections open.
struct TlsServer {
    port: u16,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl TlsServer {
    fn start(pki: &Pki) -> TlsServer {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_file_iter(pki.path("leaf.pem"))
            .expect("chain")
            .collect::<Result<Vec<_>, _>>()
            .expect("certificates");
        let key = PrivateKeyDer::from_pem_file(pki.path("leaf.key")).expect("key");
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("server config"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (connections, requests, stop) =
                (connections.clone(), requests.clone(), stop.clone());
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(15);
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    let Ok((stream, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    };
                    connections.fetch_add(1, Ordering::Relaxed);
                    let (config, requests) = (config.clone(), requests.clone());
                    std::thread::spawn(move || {
                        stream.set_nonblocking(false).expect("blocking");
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                        let connection = rustls::ServerConnection::new(config).expect("session");
                        let mut stream = rustls::StreamOwned::new(connection, stream);
                        let mut buf = Vec::new();
                        for _ in 0..100 {
                            if read_request(&mut stream, &mut buf).is_none() {
                                return;
                            }
                            requests.fetch_add(1, Ordering::Relaxed);
                            if stream.write_all(OK).and_then(|()| stream.flush()).is_err() {
                                return;
                            }
                        }
                    });
                }
            })
        };
        TlsServer {
            port,
            connections,
            requests,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

#[test]
fn https_is_verified_and_reused() {
    let pki = Pki::new("ok");
    let server = TlsServer::start(&pki);
    let config = client_config(Some(&pki.path("ca.pem")));
    let mut hosts = 0;
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("https://{host}:{}/hook", server.port);
        let target = Target::parse(&url, Some(config.clone())).expect("target");
        if target.addr.is_ipv6() {
            // The server listens on 127.0.0.1 only.
            eprintln!("{host} is {} here: not tried", target.addr);
            continue;
        }
        hosts += 1;
        let pool = Pool::new(target.clone(), 4, 4);
        run(async move {
            for _ in 0..2 {
                let answer = pool
                    .post(EXTRA, b"{}", in_secs(5.0), 1024)
                    .await
                    .expect("answer");
                assert_eq!((answer.status, &answer.body[..]), (200, &b"hello"[..]));
                assert_eq!(pool.open(), 1);
            }
        });
        // The startup ping's blocking client too.
        assert_eq!(
            super::post_blocking(&target, "", b"{}", Duration::from_secs(5)),
            Ok(200)
        );
    }
    // Per host: one pooled connection for two requests, one for the ping.
    assert_eq!(server.requests.load(Ordering::Relaxed), 3 * hosts);
    assert_eq!(server.connections.load(Ordering::Relaxed), 2 * hosts);
}

#[test]
fn https_with_an_untrusted_certificate_is_refused() {
    let pki = Pki::new("served");
    let other = Pki::new("other");
    let server = TlsServer::start(&pki);
    let url = format!("https://127.0.0.1:{}/hook", server.port);
    let target =
        Target::parse(&url, Some(client_config(Some(&other.path("ca.pem"))))).expect("target");
    let pool = Pool::new(target.clone(), 4, 4);
    let error = run(pool.post("", b"{}", in_secs(5.0), 1024)).expect_err("refused");
    assert_eq!(error, CallError::Refused);
    let error = super::post_blocking(&target, "", b"{}", Duration::from_secs(5)).expect_err("no");
    assert!(error.contains("certificate"), "{error}");
    assert_eq!(server.requests.load(Ordering::Relaxed), 0);
}

#[test]
fn https_to_a_name_the_certificate_lacks_is_refused() {
    // A trusted certificate, for localhost only: asked for as 127.0.0.1, it does not match.
    let pki = Pki::with_names("name", "DNS:localhost");
    let server = TlsServer::start(&pki);
    let config = client_config(Some(&pki.path("ca.pem")));
    let url = format!("https://127.0.0.1:{}/hook", server.port);
    let pool = Pool::new(
        Target::parse(&url, Some(config.clone())).expect("target"),
        4,
        4,
    );
    let error = run(pool.post("", b"{}", in_secs(5.0), 1024)).expect_err("refused");
    assert_eq!(error, CallError::Refused);
    assert_eq!(server.requests.load(Ordering::Relaxed), 0);
    // As localhost, it does (where localhost is 127.0.0.1, which the server listens on).
    let url = format!("https://localhost:{}/hook", server.port);
    let target = Target::parse(&url, Some(config)).expect("target");
    if target.addr.is_ipv4() {
        let pool = Pool::new(target, 4, 4);
        let answer = run(pool.post("", b"{}", in_secs(5.0), 1024)).expect("answer");
        assert_eq!(answer.status, 200);
    }
}
