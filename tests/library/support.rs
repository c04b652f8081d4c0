//! Shared by the library tests: start a ringcast server in this process (2 shards, loopback,
//! a free port), run one node script from `tests/library/js/` against it, and collect what the
//! server's handlers report over a channel. Depends only on ringcast's public API.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringcast::{ServerBuilder, ServerHandle};

/// How long one node script may run before it is killed and the test fails.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(30);

/// A server started for one test; stopped when dropped (also when the test panics).
pub struct TestServer {
    handle: Option<ServerHandle>,
}

impl TestServer {
    /// Starts `builder` on 127.0.0.1, a port the OS picks, with two unpinned shards.
    pub fn start(builder: ServerBuilder) -> TestServer {
        TestServer::start_with_shards(builder, 2)
    }

    /// Starts `builder` on 127.0.0.1, a port the OS picks, with `shards` unpinned shards.
    pub fn start_with_shards(builder: ServerBuilder, shards: usize) -> TestServer {
        let handle = builder
            .configure(|config| {
                config.cores = shards;
                config.host = [127, 0, 0, 1].into();
                config.port = 0;
                config.pin_cores = false;
                config.force_epoll = crate::common::epoll_requested();
            })
            .start()
            .expect("start ringcast");
        TestServer {
            handle: Some(handle),
        }
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        let handle = self.handle.as_ref().expect("server is running");
        format!("http://{}", handle.local_addr())
    }

    /// The running server's handle.
    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("server is running")
    }

    /// Runs a script on its own thread (while the test drives the server); join the thread
    /// for its standard output.
    pub fn spawn_script(&self, script: &'static str) -> JoinHandle<String> {
        let url = self.url();
        std::thread::spawn(move || run_script_at(&url, script))
    }

    /// Runs `tests/library/js/<script>` against this server; panics with the script's output
    /// unless it exits 0 in time. Returns its standard output.
    pub fn run_script(&self, script: &str) -> String {
        run_script_at(&self.url(), script)
    }

    /// Runs a script and parses the last line it printed as JSON (its report to the test).
    pub fn run_script_json(&self, script: &str) -> serde_json::Value {
        last_json_line(script, &self.run_script(script))
    }
}

/// The last line a script printed, as JSON (its report to the test).
pub fn last_json_line(script: &str, stdout: &str) -> serde_json::Value {
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|error| panic!("{script} printed no JSON report ({error}): {stdout}"))
}

/// Runs `tests/library/js/<script>` against the server at `url`; panics with the script's
/// output unless it exits 0 in time. Returns its standard output.
fn run_script_at(url: &str, script: &str) -> String {
    let path = js_dir().join(script);
    let child = Command::new("node")
        .arg(&path)
        .env("RINGCAST_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run node {}: {error}", path.display()));
    let outcome = wait_with_deadline(child, SCRIPT_DEADLINE);
    if !outcome.success {
        panic!(
            "{script} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            outcome.status, outcome.stdout, outcome.stderr
        );
    }
    outcome.stdout
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop();
        }
    }
}

/// Receives exactly `count` reports, waiting at most `within` for all of them.
pub fn collect<T>(reports: &Receiver<T>, count: usize, within: Duration) -> Vec<T> {
    let deadline = Instant::now() + within;
    (0..count)
        .map(|n| {
            let left = deadline.saturating_duration_since(Instant::now());
            reports
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("only {n} of {count} reports within {within:?}"))
        })
        .collect()
}

/// Asserts that nothing more is reported within `quiet`.
pub fn assert_no_more<T: std::fmt::Debug>(reports: &Receiver<T>, quiet: Duration) {
    if let Ok(extra) = reports.recv_timeout(quiet) {
        panic!("unexpected extra report: {extra:?}");
    }
}

fn js_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/library/js");
    let clients = std::env::var_os("RINGCAST_CLIENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients"));
    assert!(
        clients.join("node_modules/socket.io-client").is_dir(),
        "socket.io-client is not installed: run `npm ci --prefix tests/clients`"
    );
    dir
}

struct Outcome {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

/// Waits for `child`, killing it (by its own pid) when `deadline` passes; pipes are drained on
/// threads so a chatty script cannot block on a full pipe.
fn wait_with_deadline(mut child: Child, deadline: Duration) -> Outcome {
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => Outcome {
            success: status.success(),
            status: status.to_string(),
            stdout,
            stderr,
        },
        None => Outcome {
            success: false,
            status: format!("killed after {deadline:?}"),
            stdout,
            stderr,
        },
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}
