//! Shared by the integration tests: a real `redis-server` on a free loopback port, with no
//! persistence, stopped (killed by its pid) when the test ends; a Redis Cluster of such
//! servers ([`RedisCluster`]); and [`command`], one RESP command over a plain TCP connection,
//! to ask a server what it has (`PUBSUB SHARDNUMSUB`, `CLUSTER INFO`) without the client under
//! test. It depends on nothing but the `redis-server` binary on the PATH; a machine without it
//! fails the test and says how to install it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
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

/// One command over a new plain TCP connection, answered within 5 s: a simple string, an
/// integer or a bulk string as text, an array as its elements' texts one per line; an error
/// reply is an `Err` with its text.
pub fn command(port: u16, args: &[&str]) -> Result<String, String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|error| format!("connect: {error}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|error| error.to_string())?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream
        .write_all(request.as_bytes())
        .map_err(|error| format!("write: {error}"))?;
    read_reply(&mut BufReader::new(stream))
}

fn read_reply(reader: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|error| format!("read: {error}"))?;
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at_checked(1).ok_or("connection closed")?;
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| format!("bad reply line {line:?}"))
    };
    match kind {
        "+" | ":" => Ok(rest.to_owned()),
        "-" => Err(rest.to_owned()),
        "$" => {
            let Ok(length) = usize::try_from(number()?) else {
                return Ok(String::new());
            };
            let mut bulk = vec![0; length + 2];
            reader
                .read_exact(&mut bulk)
                .map_err(|error| format!("read: {error}"))?;
            bulk.truncate(length);
            String::from_utf8(bulk).map_err(|_| "a bulk string that is not UTF-8".to_owned())
        }
        "*" => {
            let count = number()?.max(0);
            let items: Result<Vec<String>, String> =
                (0..count).map(|_| read_reply(reader)).collect();
            Ok(items?.join("\n"))
        }
        _ => Err(format!("unexpected reply {line:?}")),
    }
}

/// A Redis Cluster of `redis-server`s this test started, each a master with an equal share of
/// the 16384 hash slots, no replicas, on free loopback ports (and free bus ports), each with
/// its own temporary directory for its `nodes.conf`. Dropping it kills every server by its pid
/// and removes the directories.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    /// The first slot of each node's range, in node order.
    first_slots: Vec<u16>,
    dirs: Vec<PathBuf>,
}

impl RedisCluster {
    /// Starts `masters` servers in cluster mode, gives each its slots, has them meet, and waits
    /// (at most 20 s) until every one says `cluster_state:ok`.
    pub fn start(masters: usize) -> RedisCluster {
        assert!((1..=16).contains(&masters), "1 to 16 masters");
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            first_slots: Vec::new(),
            dirs: Vec::new(),
        };
        for index in 0..masters {
            let (node, dir) = RedisCluster::start_node();
            cluster.nodes.push(node);
            cluster.dirs.push(dir);
            let (first, last) = (16384 * index / masters, 16384 * (index + 1) / masters - 1);
            cluster.first_slots.push(first as u16);
            let port = cluster.nodes[index].port;
            let (first, last) = (first.to_string(), last.to_string());
            command(port, &["CLUSTER", "ADDSLOTSRANGE", &first, &last])
                .unwrap_or_else(|error| panic!("CLUSTER ADDSLOTSRANGE on {port}: {error}"));
        }
        let first = cluster.nodes[0].port;
        for node in &cluster.nodes[1..] {
            let bus = (node.port, bus_port(node));
            let (port, bus) = (bus.0.to_string(), bus.1.to_string());
            command(first, &["CLUSTER", "MEET", "127.0.0.1", &port, &bus])
                .unwrap_or_else(|error| panic!("CLUSTER MEET: {error}"));
        }
        // Redis holds a new cluster's state at `fail` for about two seconds after start.
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &cluster.nodes {
            loop {
                let info = command(node.port, &["CLUSTER", "INFO"]).unwrap_or_default();
                if info.lines().any(|line| line.trim() == "cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not come up within 20 s: {info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    fn start_node() -> (RedisServer, PathBuf) {
        // Both ports were free a moment ago; if one was taken meanwhile, the server exits and
        // we try others.
        for _ in 0..5 {
            let (port, bus) = (super::free_port(), super::free_port());
            if port == bus {
                continue;
            }
            let dir = std::env::temp_dir().join(format!(
                "ringcast-redis-cluster-{}-{port}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("create a cluster node's directory");
            let nodes_conf = dir.join("nodes.conf");
            let (dir_text, conf_text) =
                (dir.display().to_string(), nodes_conf.display().to_string());
            let bus = bus.to_string();
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus,
                "--cluster-config-file",
                &conf_text,
                // Fast enough to agree within a second of the start delay, slow enough that a
                // busy 2-core machine does not see a node fail.
                "--cluster-node-timeout",
                "2000",
                "--dir",
                &dir_text,
            ];
            if let Some(server) = RedisServer::try_start_on(port, &args) {
                return (server, dir);
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        panic!("a cluster node did not start on any of 5 pairs of free ports");
    }

    /// `redis://127.0.0.1:<port>,…`: every master's URL, as a Node client's `rootNodes` take
    /// them.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(RedisServer::url).collect();
        urls.join(",")
    }

    /// `host:port,host:port,…`, what `--redis-cluster` takes.
    pub fn seeds(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        seeds.join(",")
    }

    /// `CLUSTER KEYSLOT name`, as the cluster computes it.
    pub fn slot_of(&self, name: &str) -> u16 {
        let slot = command(self.nodes[0].port, &["CLUSTER", "KEYSLOT", name])
            .unwrap_or_else(|error| panic!("CLUSTER KEYSLOT: {error}"));
        slot.parse().expect("a slot number")
    }

    /// The index of the node owning `name`'s hash slot.
    pub fn owner_of(&self, name: &str) -> usize {
        let slot = self.slot_of(name);
        self.first_slots
            .iter()
            .rposition(|&first| first <= slot)
            .expect("every slot has an owner")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The cluster bus port a node was started with.
fn bus_port(node: &RedisServer) -> u16 {
    let at = node
        .args
        .iter()
        .position(|arg| arg == "--cluster-port")
        .expect("a cluster node");
    node.args[at + 1].parse().expect("a port")
}
