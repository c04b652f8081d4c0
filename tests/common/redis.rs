//! Shared by the integration tests: a real `redis-server` on a free loopback port, with no
//! persistence, stopped (killed by its pid) when the test ends. It depends on nothing but the
//! `redis-server` binary on the PATH; a machine without it fails the test and says how to
//! install it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` this test started. Dropping it kills it.
pub struct RedisServer {
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts `redis-server` on a free loopback port with `args` added (e.g.
    /// `["--requirepass", "x"]`).
    pub fn start_with(args: &[&str]) -> RedisServer {
        // The port was free a moment ago; if something took it meanwhile, the server exits and
        // we try another.
        for _ in 0..5 {
            if let Some(server) = RedisServer::try_start_on(super::free_port(), args) {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Starts `redis-server` on `port` (a port a client may already be trying to reach).
    pub fn start_on(port: u16, args: &[&str]) -> RedisServer {
        RedisServer::try_start_on(port, args)
            .unwrap_or_else(|| panic!("redis-server did not start on port {port}"))
    }

    fn try_start_on(port: u16, args: &[&str]) -> Option<RedisServer> {
        let mut server = RedisServer {
            port,
            args: args.iter().map(|arg| arg.to_string()).collect(),
            child: None,
        };
        server.spawn().then_some(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL (by its pid) and reaps it: the clients see their
    /// connections reset, as on a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        // The port was just released; a client reconnecting can't hold it (it connects out).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start again on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Spawns the server and waits until it answers; false if it exited first (the port was
    /// taken).
    fn spawn(&mut self) -> bool {
        let port = self.port.to_string();
        let dir = std::env::temp_dir();
        let spawned = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed, and the Redis tests need it: install it \
                 (Debian: `apt-get install redis-server`; .ci/test does)"
            ),
            Err(error) => panic!("spawn redis-server: {error}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_exited)) = child.try_wait() {
                return false;
            }
            if answers(self.port) {
                // Another server on a port taken meanwhile would answer too, while ours exits.
                std::thread::sleep(Duration::from_millis(50));
                if let Ok(Some(_exited)) = child.try_wait() {
                    return false;
                }
                self.child = Some(child);
                return true;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "redis-server on port {} did not answer within 10 s",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a Redis server answers on `port`: any reply to PING (`+PONG`, or `-NOAUTH` when it
/// wants a password).
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 1];
    matches!(stream.read(&mut reply), Ok(1) if matches!(reply[0], b'+' | b'-'))
}
