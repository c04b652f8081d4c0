//! Shared by the integration tests: start the real `ringcast` binary on a free loopback port
//! (or point at an external server) and stop it when the test ends; `redis` does the same for
//! a real `redis-server`.
#![allow(dead_code)]

pub mod redis;
pub mod script;
pub mod standalone;
pub mod ws_client;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running server under test. Dropping it kills the process it started (by its pid only).
pub struct Server {
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl Server {
    /// Starts `ringcast` with `args` (plus `--host 127.0.0.1 --port <free>`, and `--epoll`
    /// when [`epoll_requested`]), or, when the environment names
    /// `RINGCAST_EXTERNAL_ADDR=host:port`, uses that server instead, so the same tests can be
    /// checked against a reference implementation.
    pub fn start(args: &[&str]) -> Server {
        if let Ok(external) = std::env::var("RINGCAST_EXTERNAL_ADDR") {
            let addr = external
                .parse()
                .expect("RINGCAST_EXTERNAL_ADDR must be host:port");
            return Server { addr, child: None };
        }
        // The port was free a moment ago; if another test's server took it meanwhile, ringcast
        // refuses to share it and exits, and we try another.
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(env!("CARGO_BIN_EXE_ringcast"))
                .args(args)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(epoll_requested().then_some("--epoll"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                // The readiness line is logged at info.
                .env("RUST_LOG", "info")
                .spawn()
                .expect("spawn ringcast");
            let ready = announce_readiness(&mut child);
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let mut server = Server {
                addr,
                child: Some(child),
            };
            if server.wait_ready(&ready) {
                return server;
            }
        }
        panic!("ringcast did not start on any of 5 free ports");
    }

    /// Whether the server is an external one (cross-shard assertions can't be made then).
    pub fn is_external(&self) -> bool {
        self.child.is_none()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits for this server's own "listening" line (a connect alone could reach another
    /// process on the same port); false if it exited first, having refused the port.
    fn wait_ready(&mut self, ready: &mpsc::Receiver<()>) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if ready.recv_timeout(Duration::from_millis(20)).is_ok() {
                return true;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_exited)) = child.try_wait() {
                    self.child = None;
                    return false;
                }
            }
        }
        panic!("ringcast did not start listening on {}", self.addr);
    }
}

/// Forwards the server's log to ours and reports when it says it is listening.
fn announce_readiness(child: &mut Child) -> mpsc::Receiver<()> {
    let (ready, receiver) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("ringcast listening") {
                let _ = ready.send(());
            }
            println!("{line}");
        }
    });
    receiver
}

impl Server {
    /// Sends SIGTERM to the server this test started and waits up to `within` for it to
    /// exit; its exit status, or `None` if it is still running (or is external).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let pid = i32::try_from(child.id()).expect("pid");
        // SAFETY: kill(2) with the pid of a child this test spawned and has not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `RINGCAST_TEST_EPOLL=1` runs the servers under test on the epoll driver, so the fallback
/// for kernels without io_uring is held to the same tests.
pub fn epoll_requested() -> bool {
    std::env::var_os("RINGCAST_TEST_EPOLL").is_some_and(|v| v == "1")
}

/// A port that was free a moment ago (the OS picks it; the listener is closed at once).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// One Engine.IO polling request at `/socket.io/?<query>`, closing its connection after it.
pub fn polling_request(method: &str, query: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} /socket.io/?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `request` on a fresh connection and reads until the server closes it (or `within`
/// passes, or the connection breaks): all it answered. The server may answer and close before
/// a large request is fully written, so write errors are ignored.
pub fn exchange(addr: SocketAddr, request: &[u8], within: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(within)).expect("read timeout");
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    response
}

/// The status code and body of an HTTP response.
pub fn status_and_body(response: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(response);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
}

/// The Engine.IO session id in an open packet or handshake answer (`"sid":"..."`).
#[track_caller]
pub fn sid_in(text: &str) -> String {
    let start = text.find(r#""sid":""#).expect("sid") + 7;
    let len = text[start..].find('"').expect("end of sid");
    text[start..start + len].to_owned()
}
