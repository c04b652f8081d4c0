//! The HTTP server API (control-plane spec 2.5, acceptance tests 36-43 and the `local: true`
//! part of 48): a two-shard server started in this process with the built-in events on `/`
//! and `/chat` and the API on its own loopback port, real clients (socket.io-client 4.x and
//! 2.x through `tests/clients/js/api_clients.mjs`, python-socketio through
//! `tests/clients/py/api_client.py`), and the API driven over raw HTTP/1.1 (and `curl` for
//! the 413 a real client sees). Two such nodes on one real `redis-server` for 44, 48 and 41
//! across nodes (the `Idempotency-Key` kept in Redis). Every wait is bounded.
//!
//! Needs `node` with `npm ci --prefix tests/clients`, and the python venv of tests/clients.rs.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use ringcast::{Server, ServerHandle};
use serde_json::{json, Value};
use sha2::Sha256;

const ADMIN: &str = "Bearer admin-key-0123456789";
const READER: &str = "Bearer reader-key-0123456789";
const HMAC_SECRET: &str = "hmac-secret-0123456789";
/// How long a test waits for one event at a client.
const EVENT_WAIT: Duration = Duration::from_secs(5);

const KEYS: &str = r#"
[keys.admin]
key = "admin-key-0123456789"
scopes = ["*"]
[keys.reader]
key = "reader-key-0123456789"
scopes = ["read"]
[keys.signer]
kind = "hmac"
secret = "hmac-secret-0123456789"
scopes = ["emit"]
"#;

/// A server with the API, stopped when dropped.
struct ApiServer {
    handle: Option<ServerHandle>,
    api: SocketAddr,
}

/// The clients' namespace: `join(room)` + ack places the socket in any room, the reserved
/// user rooms (`ringcast:user:<id>`) included, standing in for what a token's `sub` does in
/// the binary, so these tests see the API alone.
fn placing() -> ringcast::Namespace {
    ringcast::Namespace::new().on("join", |socket, message, ack| {
        if let Some(room) = message.str(0) {
            socket.join(&room);
        }
        if let Some(ack) = ack {
            let _ = ack.send(&ringcast::Args::new());
        }
    })
}

impl ApiServer {
    fn start() -> ApiServer {
        ApiServer::start_with(|_| {})
    }

    fn start_with(change: impl FnOnce(&mut ringcast::Config)) -> ApiServer {
        let builder = Server::builder()
            .namespace("/", placing())
            .namespace("/chat", placing())
            .configure(|config| {
                config.cores = 2;
                config.host = [127, 0, 0, 1].into();
                config.port = 0;
                config.pin_cores = false;
                config.force_epoll = common::epoll_requested();
                change(config);
            });
        let table = format!("listen = \"127.0.0.1:0\"\n{KEYS}");
        let (handle, api) =
            ringcast::internals::control::api::start_with_api(builder, &table).expect("start");
        ApiServer {
            handle: Some(handle),
            api,
        }
    }

    fn url(&self) -> String {
        let handle = self.handle.as_ref().expect("running");
        format!("http://{}", handle.local_addr())
    }

    /// One request on a fresh connection, with the admin key and a JSON body.
    fn post(&self, path: &str, body: Value) -> Reply {
        self.call("POST", path, &[("Authorization", ADMIN)], &body.to_string())
    }

    fn get(&self, path: &str) -> Reply {
        self.call("GET", path, &[("Authorization", ADMIN)], "")
    }

    fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut connection = Connection::open(self.api);
        connection.send(method, path, headers, body.as_bytes());
        connection.read_reply()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop();
        }
    }
}

/// One keep-alive HTTP/1.1 connection to the API.
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    fn open(addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect(addr).expect("connect to the API");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        Connection {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        let typed = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        if method == "POST" && !typed {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let _ = self.stream.write_all(head.as_bytes());
        let _ = self.stream.write_all(body);
    }

    /// Reads one whole response (by its Content-Length).
    fn read_reply(&mut self) -> Reply {
        loop {
            if let Some(reply) = Reply::parse(&mut self.buf) {
                return reply;
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => panic!(
                    "connection ended before a whole answer: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    /// Takes one response off the front of `buf`, if whole.
    fn parse(buf: &mut Vec<u8>) -> Option<Reply> {
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let mut lines = head.split("\r\n");
        let status = lines.next()?.get(9..12)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        if buf.len() < end + length {
            return None;
        }
        let body = buf[end..end + length].to_vec();
        buf.drain(..end + length);
        Some(Reply {
            status,
            headers,
            body,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    #[track_caller]
    fn ok(&self) -> Value {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        assert!(self.header("ringcast-request-id").is_some(), "{self:?}");
        self.json()
    }

    #[track_caller]
    fn error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.json()["error"]["code"], code, "{self:?}");
        assert!(self.json()["error"]["message"].is_string());
        assert!(self.header("ringcast-request-id").is_some(), "{self:?}");
    }
}

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Real clients in a child process, each event they get one JSON line; killed (by its pid)
/// when dropped.
struct Clients {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    /// Lines read but not yet asked for.
    pending: Vec<Value>,
    /// (client, namespace) -> socket id.
    ids: HashMap<(String, String), String>,
}

impl Clients {
    /// socket.io-client 4.x / 2.x clients described as `api_clients.mjs` reads them.
    fn js(url: &str, clients: Value) -> Clients {
        let script = clients_dir().join("js/api_clients.mjs");
        let mut command = Command::new("node");
        command
            .arg(script)
            .env("RINGCAST_URL", url)
            .env("API_CLIENTS", clients.to_string());
        Clients::spawn(command, "all_ready")
    }

    /// A python-socketio client on `/` joined to `rooms`.
    fn python(url: &str, rooms: &[&str]) -> Clients {
        let python = clients_dir().join(".venv/bin/python");
        let mut command = Command::new(python);
        command
            .arg(clients_dir().join("py/api_client.py"))
            .env("RINGCAST_URL", url)
            .env("API_ROOMS", rooms.join(","));
        Clients::spawn(command, "ready")
    }

    fn spawn(mut command: Command, ready: &str) -> Clients {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the clients");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    if sender.send(value).is_err() {
                        return;
                    }
                }
            }
        });
        let mut clients = Clients {
            child,
            stdin,
            lines,
            pending: Vec::new(),
            ids: HashMap::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = clients
                .lines
                .recv_timeout(left)
                .expect("the clients got ready in time");
            if let (Some(name), Some(id)) = (line["ready"].as_str(), line["id"].as_str()) {
                let nsp = line["nsp"].as_str().unwrap_or("/").to_owned();
                clients.ids.insert((name.to_owned(), nsp), id.to_owned());
                if ready == "ready" {
                    return clients;
                }
            }
            if line.get(ready).is_some() {
                return clients;
            }
        }
    }

    #[track_caller]
    fn id(&self, client: &str) -> String {
        self.id_in(client, "/")
    }

    #[track_caller]
    fn id_in(&self, client: &str, nsp: &str) -> String {
        self.ids
            .get(&(client.to_owned(), nsp.to_owned()))
            .unwrap_or_else(|| panic!("no socket of {client} on {nsp}"))
            .clone()
    }

    /// The args of the next `event` that `client` got on `nsp` (earlier lines of other
    /// clients or events are kept for later).
    #[track_caller]
    fn next(&mut self, client: &str, nsp: &str, event: &str) -> Value {
        let matches =
            |line: &Value| line["client"] == client && line["nsp"] == nsp && line["event"] == event;
        if let Some(at) = self.pending.iter().position(matches) {
            return self.pending.remove(at)["args"].clone();
        }
        let deadline = Instant::now() + EVENT_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "{client} got no {event} on {nsp} within {EVENT_WAIT:?}; seen: {:?}",
                    self.pending
                )
            });
            if matches(&line) {
                return line["args"].clone();
            }
            self.pending.push(line);
        }
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        // Closing stdin ends the script; the kill (of our own child, by pid) is the backstop.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// 36. Emit to a room, except, a socket, a user and the whole namespace, on js v4, js v2 and
// python; binary arrives as binary; a reserved event name is refused.
#[test]
fn emit_reaches_rooms_excepts_sockets_users_and_the_namespace() {
    let server = ApiServer::start();
    let url = server.url();
    let mut js = Clients::js(
        &url,
        json!([
            { "name": "a", "version": 4, "rooms": ["game:1", "ringcast:user:42"] },
            { "name": "b", "version": 4, "rooms": ["game:1", "muted"] },
            { "name": "c", "version": 2, "rooms": ["game:1"] },
        ]),
    );
    let mut py = Clients::python(&url, &["game:1", "ringcast:user:7"]);

    let reply = server.post(
        "/v1/emit",
        json!({ "to": { "rooms": ["game:1"], "except_rooms": ["muted"] }, "event": "news", "args": ["room", { "n": 1 }] }),
    );
    assert_eq!(
        reply.ok(),
        json!({ "local_recipients": 3, "published": false })
    );
    for client in ["a", "c"] {
        assert_eq!(js.next(client, "/", "news"), json!(["room", { "n": 1 }]));
    }
    assert_eq!(py.next("py", "/", "news"), json!(["room", { "n": 1 }]));

    let b = js.id("b");
    let reply = server.post(
        "/v1/emit",
        json!({ "to": { "sockets": [b] }, "event": "news", "args": ["socket"] }),
    );
    assert_eq!(reply.ok()["local_recipients"], 1);
    // b's first news is this one: the room emit excepted it.
    assert_eq!(js.next("b", "/", "news"), json!(["socket"]));

    let reply = server.post(
        "/v1/emit",
        json!({ "to": { "users": ["42", "7"], "except_users": ["7"] }, "event": "news", "args": ["user"] }),
    );
    assert_eq!(reply.ok()["local_recipients"], 1);
    assert_eq!(js.next("a", "/", "news"), json!(["user"]));

    let reply = server.post("/v1/emit", json!({ "event": "news", "args": ["everyone"] }));
    assert_eq!(reply.ok()["local_recipients"], 4);
    for client in ["b", "c"] {
        assert_eq!(js.next(client, "/", "news"), json!(["everyone"]));
    }
    // a's next is the namespace-wide one (it got the user emit and nothing else since).
    assert_eq!(js.next("a", "/", "news"), json!(["everyone"]));
    // The python client's next news is the namespace-wide one: not a user emit excepted.
    assert_eq!(py.next("py", "/", "news"), json!(["everyone"]));

    let bytes = [0u8, 1, 2, 254, 255];
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let reply = server.post(
        "/v1/emit",
        json!({
            "to": { "rooms": ["game:1"] },
            "event": "bin",
            "args": ["file", { "_placeholder": true, "num": 0 }],
            "attachments": [encoded],
        }),
    );
    assert_eq!(reply.ok()["local_recipients"], 4);
    let expected = json!(["file", { "$binary": encoded }]);
    for client in ["a", "b", "c"] {
        assert_eq!(js.next(client, "/", "bin"), expected, "{client}");
    }
    assert_eq!(py.next("py", "/", "bin"), expected);

    let reply = server.post("/v1/emit", json!({ "event": "disconnect", "args": [] }));
    reply.error(422, "reserved_event");
    let reply = server.post("/v1/emit", json!({ "event": "ringcast:x" }));
    reply.error(422, "reserved_event");
    let reply = server.post(
        "/v1/emit",
        json!({ "to": { "rooms": ["ringcast:user:42"] }, "event": "news" }),
    );
    reply.error(422, "invalid_room");
}

// 37. An emit with an ack to three clients, one of which never acks.
#[test]
fn emit_with_ack_counts_and_times_out() {
    let server = ApiServer::start();
    let _js = Clients::js(
        &server.url(),
        json!([
            { "name": "x", "version": 4, "rooms": ["quiz"] },
            { "name": "y", "version": 4, "rooms": ["quiz"] },
            { "name": "z", "version": 4, "rooms": ["quiz"], "ack": false },
        ]),
    );
    let asked = Instant::now();
    let reply = server.post(
        "/v1/emit",
        json!({ "to": { "rooms": ["quiz"] }, "event": "ask", "args": [1], "ack": { "timeout_ms": 2000 } }),
    );
    let elapsed = asked.elapsed();
    let body = reply.ok();
    assert_eq!(body["expected"], 3, "{body}");
    assert_eq!(body["received"], 2, "{body}");
    assert_eq!(body["timed_out"], true, "{body}");
    let mut from: Vec<String> = body["acks"]
        .as_array()
        .expect("acks")
        .iter()
        .map(|ack| ack["from"].as_str().unwrap_or_default().to_owned())
        .collect();
    from.sort();
    assert_eq!(from, ["x", "y"]);
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_millis(3500),
        "answered after {elapsed:?}"
    );
    let too_long = server.post(
        "/v1/emit",
        json!({ "event": "ask", "ack": { "timeout_ms": 60001 } }),
    );
    too_long.error(400, "invalid_request");
}

// 38. Join, leave and disconnect by user across two namespaces; `close: true` drops the
// client's other namespace too.
#[test]
fn join_leave_and_disconnect_by_user_across_namespaces() {
    let server = ApiServer::start();
    let mut js = Clients::js(
        &server.url(),
        json!([
            { "name": "u9", "version": 4, "nsps": ["/", "/chat"], "rooms": ["ringcast:user:9"] },
            { "name": "u10", "version": 4, "nsps": ["/", "/chat"], "rooms": ["ringcast:user:10"] },
            { "name": "other", "version": 4, "nsps": ["/", "/chat"] },
        ]),
    );
    let reply = server.post(
        "/v1/rooms/join",
        json!({ "namespace": "/chat", "to": { "users": ["9", "10"] }, "rooms": ["vip"] }),
    );
    assert_eq!(
        reply.ok(),
        json!({ "local_affected": 2, "published": false })
    );
    let reply = server.post(
        "/v1/emit",
        json!({ "namespace": "/chat", "to": { "rooms": ["vip"] }, "event": "news", "args": ["vip"] }),
    );
    assert_eq!(reply.ok()["local_recipients"], 2);
    assert_eq!(js.next("u9", "/chat", "news"), json!(["vip"]));
    assert_eq!(js.next("u10", "/chat", "news"), json!(["vip"]));
    // Joined in /chat only.
    let reply = server.post(
        "/v1/emit",
        json!({ "namespace": "/", "to": { "rooms": ["vip"] }, "event": "news" }),
    );
    assert_eq!(reply.ok()["local_recipients"], 0);

    let reply = server.post(
        "/v1/rooms/leave",
        json!({ "namespace": "/chat", "to": { "users": ["10"] }, "rooms": ["vip"] }),
    );
    assert_eq!(reply.ok()["local_affected"], 1);
    let reply = server.get("/v1/rooms/count?namespace=%2Fchat&room=vip");
    assert_eq!(reply.ok()["sockets"], 1);

    // A disconnect of user 9 on `/` tells it why first, and leaves its `/chat` socket.
    let reply = server.post(
        "/v1/disconnect",
        json!({ "namespace": "/", "to": { "users": ["9"] }, "reason": "bye" }),
    );
    assert_eq!(reply.ok()["local_affected"], 1);
    assert_eq!(
        js.next("u9", "/", "ringcast:disconnect"),
        json!([{ "reason": "bye", "code": "api_disconnect" }])
    );
    assert_eq!(
        js.next("u9", "/", "$disconnect"),
        json!(["io server disconnect"])
    );
    let reply = server.post(
        "/v1/emit",
        json!({ "namespace": "/chat", "to": { "users": ["9"] }, "event": "news", "args": ["still"] }),
    );
    assert_eq!(reply.ok()["local_recipients"], 1);
    assert_eq!(js.next("u9", "/chat", "news"), json!(["still"]));

    // `close: true` on `/chat` closes user 10's connection: `/` goes too.
    let reply = server.post(
        "/v1/disconnect",
        json!({ "namespace": "/chat", "to": { "users": ["10"] }, "close": true }),
    );
    assert_eq!(reply.ok()["local_affected"], 1);
    js.next("u10", "/chat", "$disconnect");
    js.next("u10", "/", "$disconnect");

    // The user routes reach every namespace.
    let reply = server.get("/v1/users/9/sockets");
    let sockets = reply.ok()["sockets"].clone();
    let namespaces: Vec<&str> = sockets
        .as_array()
        .expect("sockets")
        .iter()
        .map(|socket| socket["namespace"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(namespaces, ["/chat"]);
    assert_eq!(sockets[0]["user"], "9");
    let reply = server.post("/v1/users/9/disconnect", json!({ "reason": "done" }));
    assert_eq!(reply.ok()["local_affected"], 1);
    js.next("u9", "/chat", "$disconnect");
    // The other client kept both sockets all along.
    let reply = server.post("/v1/sockets/query", json!({ "namespace": "/chat" }));
    let ids: Vec<Value> = reply.ok()["sockets"]
        .as_array()
        .expect("sockets")
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    assert_eq!(ids, [json!(js.id_in("other", "/chat"))]);
}

// 39. sockets/query with filters; 250 rooms in pages of 100; rooms/count exact.
#[test]
fn queries_pages_and_counts() {
    let server = ApiServer::start();
    let js = Clients::js(
        &server.url(),
        json!([
            { "name": "p", "version": 4, "rooms": ["lobby", "ringcast:user:5"], "query": { "token": "not-for-the-api", "team": "red" } },
            { "name": "q", "version": 4, "rooms": ["lobby"] },
            { "name": "r", "version": 4, "rooms": [] },
        ]),
    );
    let (p, q) = (js.id("p"), js.id("q"));
    let reply = server.post(
        "/v1/sockets/query",
        json!({ "to": { "rooms": ["lobby"], "except_sockets": [q] } }),
    );
    let body = reply.ok();
    assert_eq!(body["partial"], false);
    assert_eq!(body["nodes_expected"], 1);
    let sockets = body["sockets"].as_array().expect("sockets");
    assert_eq!(sockets.len(), 1, "{body}");
    let socket = &sockets[0];
    assert_eq!(socket["id"], p);
    assert_eq!(socket["namespace"], "/");
    assert_eq!(socket["user"], "5");
    assert!(socket["rooms"]
        .as_array()
        .expect("rooms")
        .contains(&json!("lobby")));
    assert_eq!(socket["handshake"]["address"], "127.0.0.1");
    assert_eq!(socket["handshake"]["query"]["team"], "red");
    assert!(socket["node"].is_string());
    let text = body.to_string();
    assert!(!text.contains("not-for-the-api"), "a token leaked: {text}");
    assert!(!text.contains("\"auth\""), "{text}");
    let reply = server.post("/v1/sockets/query", json!({ "limit": 2, "local": true }));
    assert_eq!(reply.ok()["sockets"].as_array().map(Vec::len), Some(2));

    // One socket, by id; unknown ids and namespaces are 404.
    assert_eq!(server.get(&format!("/v1/sockets/{q}")).ok()["id"], q);
    server
        .get("/v1/sockets/AAAAAAAAAAAAAAAAAAAA")
        .error(404, "not_found");
    server
        .get(&format!("/v1/sockets/{q}?namespace=%2Fnope"))
        .error(404, "not_found");

    // 250 rooms, joined through the API, listed in pages of 100.
    let rooms: Vec<String> = (0..250).map(|i| format!("page:{i:03}")).collect();
    let reply = server.post(
        "/v1/rooms/join",
        json!({ "to": { "sockets": [q] }, "rooms": rooms }),
    );
    assert_eq!(reply.ok()["local_affected"], 1);
    let mut listed = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let reply = server.get(&format!(
            "/v1/rooms?prefix=page%3A&limit=100&cursor={cursor}"
        ));
        let body = reply.ok();
        pages += 1;
        for room in body["rooms"].as_array().expect("rooms") {
            assert_eq!(room["local_sockets"], 1);
            listed.push(room["name"].as_str().expect("name").to_owned());
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
        assert!(pages < 5, "too many pages");
    }
    assert_eq!(pages, 3);
    assert_eq!(listed, rooms, "every room once, in order");
    // Socket-id rooms and ringcast's own rooms are never listed.
    let all = server.get("/v1/rooms?limit=1000").ok();
    let names: Vec<&str> = all["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .filter_map(|room| room["name"].as_str())
        .collect();
    assert!(names.contains(&"lobby"));
    assert!(!names.iter().any(|n| n.starts_with("ringcast:") || *n == p));
    assert_eq!(names.len(), 251);

    let count = server.get("/v1/rooms/count?room=lobby").ok();
    assert_eq!(
        count,
        json!({ "room": "lobby", "sockets": 2, "partial": false })
    );
    let count = server.get("/v1/rooms/count?room=nobody&local=true").ok();
    assert_eq!(count["sockets"], 0);
    server.get("/v1/rooms/count").error(400, "invalid_request");
}

// 40. Bad requests: each gets its status and code.
#[test]
fn bad_requests_get_their_errors() {
    // Event arguments are bounded by max_payload, bodies by api.max_body (1 MiB here).
    let server = ApiServer::start_with(|config| config.engine.max_payload = 100_000);
    let emit = json!({ "event": "news" }).to_string();
    let wrong = server.call(
        "POST",
        "/v1/emit",
        &[("Authorization", "Bearer nope")],
        &emit,
    );
    wrong.error(401, "unauthorized");
    assert!(wrong.header("www-authenticate").is_some());
    server
        .call("POST", "/v1/emit", &[], &emit)
        .error(401, "unauthorized");
    server
        .call("POST", "/v1/emit", &[("Authorization", READER)], &emit)
        .error(403, "forbidden");
    // A valid key in the query string is refused even with a valid header.
    server
        .call(
            "POST",
            "/v1/emit?api_key=admin-key-0123456789",
            &[("Authorization", ADMIN)],
            &emit,
        )
        .error(401, "unauthorized");
    server
        .call("GET", "/v1/info?token=x", &[("Authorization", READER)], "")
        .error(401, "unauthorized");
    server
        .call(
            "POST",
            "/v1/emit",
            &[("Authorization", ADMIN)],
            "{\"event\":",
        )
        .error(400, "invalid_request");
    server
        .post("/v1/emit", json!({ "event": 5 }))
        .error(400, "invalid_request");
    server
        .post("/v1/emit", json!({ "event": "news", "colour": "red" }))
        .error(400, "invalid_request");
    server
        .call(
            "POST",
            "/v1/emit",
            &[("Authorization", ADMIN), ("Content-Type", "text/plain")],
            &emit,
        )
        .error(415, "unsupported_media_type");
    server
        .post("/v1/emit", json!({ "namespace": "/nope", "event": "news" }))
        .error(404, "not_found");
    let long = "x".repeat(200_000);
    server
        .post("/v1/emit", json!({ "event": "news", "args": [long] }))
        .error(413, "payload_too_large");
    server.get("/v1/nothing").error(404, "not_found");
    server.get("/v1/emit").error(404, "not_found");
    // The reader may read.
    let info = server.call("GET", "/v1/info", &[("Authorization", READER)], "");
    let info = info.ok();
    assert_eq!(info["cores"], 2);
    assert_eq!(info["cluster"]["enabled"], false);
    assert_eq!(
        server.call("GET", "/v1/health", &[], "").ok()["status"],
        "ok"
    );

    // Keep-alive: several requests on one connection.
    let mut connection = Connection::open(server.api);
    for _ in 0..3 {
        connection.send("GET", "/v1/health", &[], b"");
        let reply = connection.read_reply();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("connection"), Some("keep-alive"));
    }

    // A 2 MiB body: 413 from the head alone, before any of the body is sent.
    let mut connection = Connection::open(server.api);
    let head = "POST /v1/emit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Authorization: Bearer admin-key-0123456789\r\nContent-Length: 2097152\r\n\r\n";
    connection.stream.write_all(head.as_bytes()).expect("head");
    let started = Instant::now();
    let reply = connection.read_reply();
    reply.error(413, "payload_too_large");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Expect: 100-continue: 413 instead of 100 when too large; 100 then the answer when not.
    let mut connection = Connection::open(server.api);
    let head = "POST /v1/emit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Authorization: Bearer admin-key-0123456789\r\nExpect: 100-continue\r\n\
                Content-Length: 2097152\r\n\r\n";
    connection.stream.write_all(head.as_bytes()).expect("head");
    connection.read_reply().error(413, "payload_too_large");
    let mut connection = Connection::open(server.api);
    let head = format!(
        "POST /v1/emit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Authorization: Bearer admin-key-0123456789\r\nExpect: 100-continue\r\n\
         Content-Length: {}\r\n\r\n",
        emit.len()
    );
    connection.stream.write_all(head.as_bytes()).expect("head");
    let interim = connection.read_reply();
    assert_eq!(interim.status, 100);
    connection.stream.write_all(emit.as_bytes()).expect("body");
    connection.read_reply().ok();

    // A client that writes the whole body before reading still reads the 413 (the server
    // closes lingeringly), here curl, which sends `Expect` for big bodies, and a raw client
    // that doesn't.
    let big = vec![b' '; 2 << 20];
    let file = std::env::temp_dir().join(format!("ringcast-api-big-{}", std::process::id()));
    std::fs::write(&file, &big).expect("write body");
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args([
            "-H",
            "Content-Type: application/json",
            "-H",
            "Authorization: Bearer admin-key-0123456789",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("http://{}/v1/emit", server.api))
        .output()
        .expect("run curl");
    let _ = std::fs::remove_file(&file);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "413", "{out:?}");
    let mut raw = TcpStream::connect(server.api).expect("connect");
    raw.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let head = format!(
        "POST /v1/emit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Authorization: Bearer admin-key-0123456789\r\nContent-Length: {}\r\n\r\n",
        big.len()
    );
    let _ = raw.write_all(head.as_bytes());
    let _ = raw.write_all(&big);
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 413"),
        "{:?}",
        String::from_utf8_lossy(&answer[..answer.len().min(200)])
    );
}

// 41. Idempotency: one delivery, the replay marked; another body with the key is a conflict.
#[test]
fn idempotency_keys_replay_and_conflict() {
    let server = ApiServer::start();
    let mut js = Clients::js(
        &server.url(),
        json!([
            { "name": "i", "version": 4, "rooms": ["idem"] },
            { "name": "silent", "version": 4, "rooms": ["slow"], "ack": false },
        ]),
    );
    let body =
        json!({ "to": { "rooms": ["idem"] }, "event": "news", "args": ["once"] }).to_string();
    let headers = [("Authorization", ADMIN), ("Idempotency-Key", "order-17")];
    let first = server.call("POST", "/v1/emit", &headers, &body);
    assert_eq!(first.ok()["local_recipients"], 1);
    assert_eq!(first.header("idempotent-replayed"), None);
    let second = server.call("POST", "/v1/emit", &headers, &body);
    assert_eq!(second.ok(), first.json());
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    let other =
        json!({ "to": { "rooms": ["idem"] }, "event": "news", "args": ["twice"] }).to_string();
    server
        .call("POST", "/v1/emit", &headers, &other)
        .error(409, "idempotency_conflict");
    let long = "k".repeat(129);
    server
        .call(
            "POST",
            "/v1/emit",
            &[("Authorization", ADMIN), ("Idempotency-Key", &long)],
            &body,
        )
        .error(400, "invalid_request");
    // A retry while the first is still running (waiting 1.5 s for an ack that never
    // comes) is told so; once it is done, the retry gets its answer.
    let slow =
        json!({ "to": { "rooms": ["slow"] }, "event": "ask", "ack": { "timeout_ms": 1500 } })
            .to_string();
    let api = server.api;
    let first = {
        let slow = slow.clone();
        std::thread::spawn(move || {
            let mut connection = Connection::open(api);
            let headers = [("Authorization", ADMIN), ("Idempotency-Key", "slow-1")];
            connection.send("POST", "/v1/emit", &headers, slow.as_bytes());
            connection.read_reply()
        })
    };
    js.next("silent", "/", "ask");
    let headers = [("Authorization", ADMIN), ("Idempotency-Key", "slow-1")];
    server
        .call("POST", "/v1/emit", &headers, &slow)
        .error(409, "in_progress");
    let first = first.join().expect("the first request");
    assert_eq!(first.ok()["timed_out"], true);
    let replay = server.call("POST", "/v1/emit", &headers, &slow);
    assert_eq!(replay.ok(), first.json());
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));

    // Exactly one delivery: the next news after "once" is the marker.
    server
        .post(
            "/v1/emit",
            json!({ "to": { "rooms": ["idem"] }, "event": "news", "args": ["marker"] }),
        )
        .ok();
    assert_eq!(js.next("i", "/", "news"), json!(["once"]));
    assert_eq!(js.next("i", "/", "news"), json!(["marker"]));
}

fn hmac_hex(secret: &str, t: u64, method: &str, target: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.{method}.{target}.{body}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// 42. HMAC keys: a valid signature passes; an old one, or one over another body, does not.
#[test]
fn hmac_signatures_are_checked() {
    let server = ApiServer::start();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let body = json!({ "event": "news", "args": ["signed"] }).to_string();
    let signed = |t: u64, body: &str| {
        format!(
            "t={t},v1={}",
            hmac_hex(HMAC_SECRET, t, "POST", "/v1/emit", body)
        )
    };
    let send = |signature: &str, body: &str| {
        server.call(
            "POST",
            "/v1/emit",
            &[
                ("Ringcast-Key", "signer"),
                ("Ringcast-Signature", signature),
            ],
            body,
        )
    };
    assert_eq!(send(&signed(now, &body), &body).ok()["published"], false);
    send(&signed(now - 400, &body), &body).error(401, "unauthorized");
    let altered = body.replace("signed", "signee");
    send(&signed(now, &body), &altered).error(401, "unauthorized");
    // The signer's scope is emit only.
    let target = "/v1/info";
    let signature = format!(
        "t={now},v1={}",
        hmac_hex(HMAC_SECRET, now, "GET", target, "")
    );
    server
        .call(
            "GET",
            target,
            &[
                ("Ringcast-Key", "signer"),
                ("Ringcast-Signature", &signature),
            ],
            "",
        )
        .error(403, "forbidden");
}

// 43. The OpenAPI document parses as 3.1 and each of its paths answers with something other
// than 404; a batch with an invalid middle op runs the other two.
#[test]
fn openapi_paths_answer_and_batches_run_in_order() {
    let server = ApiServer::start();
    let mut js = Clients::js(
        &server.url(),
        json!([{ "name": "o", "version": 4, "rooms": ["batch", "ringcast:user:42"] }]),
    );
    let document = server.call("GET", "/v1/openapi.json", &[], "").ok();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 13, "{}", paths.len());
    let socket = js.id("o");
    for (path, methods) in paths {
        let concrete = path.replace("{id}", &socket).replace("{user}", "42");
        for method in methods.as_object().expect("methods").keys() {
            let method = method.to_ascii_uppercase();
            // A harmless body: a target that selects no one.
            let body = if method == "POST" {
                json!({ "to": { "rooms": ["nobody-here"] } }).to_string()
            } else {
                String::new()
            };
            let reply = server.call(&method, &concrete, &[("Authorization", ADMIN)], &body);
            assert_ne!(reply.status, 404, "{method} {concrete}: {reply:?}");
        }
    }
    let reply = server.post(
        "/v1/batch",
        json!({
            "ops": [
                { "op": "emit", "to": { "rooms": ["batch"] }, "event": "news", "args": ["first"] },
                { "op": "emit", "event": "disconnect" },
                { "op": "join", "to": { "rooms": ["batch"] }, "rooms": ["after"] },
            ],
        }),
    );
    let results = reply.ok()["results"].clone();
    assert_eq!(results[0]["ok"]["local_recipients"], 1, "{results}");
    assert_eq!(results[1]["error"]["code"], "reserved_event", "{results}");
    assert_eq!(results[2]["ok"]["local_affected"], 1, "{results}");
    assert_eq!(js.next("o", "/", "news"), json!(["first"]));
    assert_eq!(server.get("/v1/rooms/count?room=after").ok()["sockets"], 1);
    // stop_on_error stops at the failing op; a reader's batch is refused op by op.
    let reply = server.post(
        "/v1/batch",
        json!({ "ops": [{ "op": "emit", "event": "connect" }, { "op": "join", "rooms": ["x"] }], "stop_on_error": true }),
    );
    assert_eq!(reply.ok()["results"].as_array().map(Vec::len), Some(1));
    let reader = server.call(
        "POST",
        "/v1/batch",
        &[("Authorization", READER)],
        &json!({ "ops": [{ "op": "query" }, { "op": "emit", "event": "news" }] }).to_string(),
    );
    let results = reader.ok()["results"].clone();
    assert!(results[0]["ok"].is_object(), "{results}");
    assert_eq!(results[1]["error"]["code"], "forbidden", "{results}");
}

// 48 (the part without a running Redis): a node whose Redis link is down refuses cluster
// operations with 503 and nothing delivered; `local: true` goes through.
#[test]
fn a_cluster_operation_needs_the_link_but_local_ones_do_not() {
    let closed = common::free_port();
    let server = ApiServer::start_with(|config| {
        config.cluster.redis = Some(format!("redis://127.0.0.1:{closed}"));
    });
    let mut js = Clients::js(
        &server.url(),
        json!([{ "name": "l", "version": 4, "rooms": ["here"] }]),
    );
    let emit = json!({ "to": { "rooms": ["here"] }, "event": "news", "args": ["cluster"] });
    server
        .post("/v1/emit", emit)
        .error(503, "cluster_unavailable");
    server
        .post("/v1/rooms/join", json!({ "rooms": ["x"] }))
        .error(503, "cluster_unavailable");
    let local =
        json!({ "to": { "rooms": ["here"] }, "event": "news", "args": ["local"], "local": true });
    assert_eq!(
        server.post("/v1/emit", local).ok(),
        json!({ "local_recipients": 1, "published": false })
    );
    // Nothing of the refused emit was delivered: the local one is the first news.
    assert_eq!(js.next("l", "/", "news"), json!(["local"]));
    let query = server
        .post("/v1/sockets/query", json!({ "local": true }))
        .ok();
    assert_eq!(query["sockets"].as_array().map(Vec::len), Some(1));
    let info = server.get("/v1/info").ok();
    assert_eq!(info["cluster"]["enabled"], true);
    assert_eq!(info["cluster"]["connected"], false);
}

/// Waits (bounded) until `server`'s Redis link is `connected` as its `/v1/info` says.
#[track_caller]
fn wait_for_link(server: &ApiServer, connected: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = server.get("/v1/info").ok();
        if info["cluster"]["connected"] == connected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the link never became connected={connected}: {info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// 44 and 48: two nodes on one Redis. An emit on A to a user whose socket is on B is
// delivered, a join by user on A affects B, a query on A lists B's socket; with Redis
// killed, a cluster emit gets 503 and nothing is delivered, and `local: true` goes through.
#[test]
fn cluster_operations_cross_nodes_and_need_the_link() {
    let mut redis = common::redis::RedisServer::start();
    let url = redis.url();
    let node = |url: &str| {
        let url = url.to_owned();
        ApiServer::start_with(move |config| config.cluster.redis = Some(url))
    };
    let (a, b) = (node(&url), node(&url));
    wait_for_link(&a, true);
    wait_for_link(&b, true);
    let mut on_b = Clients::js(
        &b.url(),
        json!([{ "name": "remote", "version": 4, "rooms": ["ringcast:user:42"] }]),
    );
    let mut on_a = Clients::js(
        &a.url(),
        json!([{ "name": "near", "version": 4, "rooms": ["ringcast:user:42"] }]),
    );
    let reply = a.post(
        "/v1/emit",
        json!({ "to": { "users": ["42"] }, "event": "news", "args": ["across"] }),
    );
    assert_eq!(
        reply.ok(),
        json!({ "local_recipients": 1, "published": true })
    );
    assert_eq!(on_b.next("remote", "/", "news"), json!(["across"]));
    assert_eq!(on_a.next("near", "/", "news"), json!(["across"]));

    let reply = a.post(
        "/v1/rooms/join",
        json!({ "to": { "users": ["42"] }, "rooms": ["vip"] }),
    );
    assert_eq!(
        reply.ok(),
        json!({ "local_affected": 1, "published": true })
    );
    // The join reaches B through Redis: wait (bounded) until B counts its member.
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.get("/v1/rooms/count?room=vip&local=true").ok()["sockets"] != 1 {
        assert!(Instant::now() < deadline, "the join never reached B");
        std::thread::sleep(Duration::from_millis(20));
    }
    let query = a
        .post("/v1/sockets/query", json!({ "to": { "users": ["42"] } }))
        .ok();
    assert_eq!(query["partial"], false, "{query}");
    assert_eq!(query["nodes_expected"], 2, "{query}");
    let mut nodes: Vec<bool> = query["sockets"]
        .as_array()
        .expect("sockets")
        .iter()
        .map(|socket| socket["node"].is_null())
        .collect();
    nodes.sort();
    assert_eq!(nodes, [false, true], "one socket here, one remote: {query}");
    assert_eq!(a.get("/v1/rooms/count?room=vip").ok()["sockets"], 2);

    redis.kill();
    wait_for_link(&a, false);
    let emit = json!({ "to": { "users": ["42"] }, "event": "news", "args": ["refused"] });
    a.post("/v1/emit", emit).error(503, "cluster_unavailable");
    let local =
        json!({ "to": { "users": ["42"] }, "event": "news", "args": ["local"], "local": true });
    assert_eq!(
        a.post("/v1/emit", local).ok(),
        json!({ "local_recipients": 1, "published": false })
    );
    // Nothing of the refused emit was delivered here: the next news is the local one.
    assert_eq!(on_a.next("near", "/", "news"), json!(["local"]));

    // A refusal is not kept for its Idempotency-Key: the retry, once Redis is back, runs.
    let retried =
        json!({ "to": { "users": ["42"] }, "event": "news", "args": ["retried"] }).to_string();
    let headers = [
        ("Authorization", ADMIN),
        ("Idempotency-Key", "after-outage"),
    ];
    a.call("POST", "/v1/emit", &headers, &retried)
        .error(503, "cluster_unavailable");
    redis.restart();
    wait_for_link(&a, true);
    let reply = a.call("POST", "/v1/emit", &headers, &retried);
    assert_eq!(reply.ok()["published"], true);
    assert_eq!(reply.header("idempotent-replayed"), None);
    assert_eq!(on_a.next("near", "/", "news"), json!(["retried"]));
}

/// `call`, again while the answer is 409 `in_progress` (bounded): a node stores its answer
/// for the others without waiting for Redis, so right after it answered, another node may
/// still read the claim as running for a moment.
fn call_once_done(server: &ApiServer, headers: &[(&str, &str)], body: &str) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = server.call("POST", "/v1/emit", headers, body);
        let running = reply.status == 409 && reply.json()["error"]["code"] == "in_progress";
        if !running || Instant::now() >= deadline {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// 41 on a cluster: the Idempotency-Key is kept in Redis, so a retry on another node is a
// replay (one delivery), another body there a conflict, a retry while the first still runs
// on its node is told so; with Redis down a request with a key is not run.
#[test]
fn idempotency_keys_hold_across_nodes() {
    let mut redis = common::redis::RedisServer::start();
    let url = redis.url();
    let node = |url: &str| {
        let url = url.to_owned();
        ApiServer::start_with(move |config| config.cluster.redis = Some(url))
    };
    let (a, b) = (node(&url), node(&url));
    wait_for_link(&a, true);
    wait_for_link(&b, true);
    let mut on_b = Clients::js(
        &b.url(),
        json!([
            { "name": "i", "version": 4, "rooms": ["idem"] },
            { "name": "silent", "version": 4, "rooms": ["slow"], "ack": false },
        ]),
    );
    let body =
        json!({ "to": { "rooms": ["idem"] }, "event": "news", "args": ["once"] }).to_string();
    let headers = [("Authorization", ADMIN), ("Idempotency-Key", "cluster-17")];
    let first = a.call("POST", "/v1/emit", &headers, &body);
    assert_eq!(
        first.ok(),
        json!({ "local_recipients": 0, "published": true })
    );
    assert_eq!(first.header("idempotent-replayed"), None);
    let second = call_once_done(&b, &headers, &body);
    assert_eq!(second.ok(), first.json());
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    let other =
        json!({ "to": { "rooms": ["idem"] }, "event": "news", "args": ["twice"] }).to_string();
    b.call("POST", "/v1/emit", &headers, &other)
        .error(409, "idempotency_conflict");
    // Kept under the key's hash, never the key itself.
    let stored = common::redis::command(redis.port, &["KEYS", "socket.io-ringcast#idem#admin#*"])
        .expect("KEYS");
    assert_eq!(stored.lines().count(), 1, "{stored}");
    assert!(!stored.contains("cluster-17"), "{stored}");

    // A retry on B while A still runs the first (waiting 1.5 s for an ack that never comes).
    let slow =
        json!({ "to": { "rooms": ["slow"] }, "event": "ask", "ack": { "timeout_ms": 1500 } })
            .to_string();
    let api = a.api;
    let first = {
        let slow = slow.clone();
        std::thread::spawn(move || {
            let mut connection = Connection::open(api);
            let headers = [("Authorization", ADMIN), ("Idempotency-Key", "slow-2")];
            connection.send("POST", "/v1/emit", &headers, slow.as_bytes());
            connection.read_reply()
        })
    };
    on_b.next("silent", "/", "ask");
    let headers = [("Authorization", ADMIN), ("Idempotency-Key", "slow-2")];
    b.call("POST", "/v1/emit", &headers, &slow)
        .error(409, "in_progress");
    let first = first.join().expect("the first request");
    assert_eq!(first.ok()["timed_out"], true);
    let replay = call_once_done(&b, &headers, &slow);
    assert_eq!(replay.ok(), first.json());
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));

    // Exactly one delivery: the next news after "once" is the marker.
    a.post(
        "/v1/emit",
        json!({ "to": { "rooms": ["idem"] }, "event": "news", "args": ["marker"] }),
    )
    .ok();
    assert_eq!(on_b.next("i", "/", "news"), json!(["once"]));
    assert_eq!(on_b.next("i", "/", "news"), json!(["marker"]));

    // Redis down: a request with a key is refused before it runs, even a local one.
    redis.kill();
    wait_for_link(&b, false);
    let local =
        json!({ "to": { "rooms": ["idem"] }, "event": "news", "args": ["no"], "local": true })
            .to_string();
    let headers = [("Authorization", ADMIN), ("Idempotency-Key", "down-1")];
    b.call("POST", "/v1/emit", &headers, &local)
        .error(503, "cluster_unavailable");
    let without_key =
        json!({ "to": { "rooms": ["idem"] }, "event": "news", "args": ["yes"], "local": true });
    assert_eq!(
        b.post("/v1/emit", without_key).ok(),
        json!({ "local_recipients": 1, "published": false })
    );
    assert_eq!(on_b.next("i", "/", "news"), json!(["yes"]));
}

// Security rule 7 and the start's checks: an API open to the network without keys, an unknown
// scope and a taken address each refuse the start, saying why.
#[test]
fn the_start_refuses_an_open_api_unknown_scopes_and_a_taken_address() {
    let start = |table: &str| {
        let builder = Server::builder().configure(|config| {
            config.cores = 1;
            config.host = [127, 0, 0, 1].into();
            config.port = 0;
            config.pin_cores = false;
        });
        match ringcast::internals::control::api::start_with_api(builder, table) {
            Ok((handle, _)) => {
                handle.stop();
                Ok(())
            }
            Err(error) => Err(error),
        }
    };
    let open = start("listen = \"0.0.0.0:0\"").expect_err("open to the network");
    assert!(open.contains("not a loopback address"), "{open}");
    let scoped = start("listen = \"127.0.0.1:0\"\n[keys.ops]\nkey = \"k\"\nscopes = [\"fly\"]")
        .expect_err("unknown scope");
    assert!(scoped.contains("api.keys.ops.scopes"), "{scoped}");
    assert!(!scoped.contains("\"k\""), "{scoped}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address");
    let error = start(&format!("listen = \"{addr}\"")).expect_err("address in use");
    assert!(!error.is_empty());
    // A loopback API with no keys is allowed (and open to its host only).
    start("listen = \"127.0.0.1:0\"").expect("loopback without keys");
}
