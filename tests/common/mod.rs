//! Shared by the integration tests: start the real `ringcast` binary on a free loopback port
//! (or point at an external server) and stop it when the test ends.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
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
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .args(args)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(epoll_requested().then_some("--epoll"))
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn ringcast");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let server = Server {
            addr,
            child: Some(child),
        };
        server.wait_ready();
        server
    }

    /// Whether the server is an external one (cross-shard assertions can't be made then).
    pub fn is_external(&self) -> bool {
        self.child.is_none()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("ringcast did not start listening on {}", self.addr);
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
