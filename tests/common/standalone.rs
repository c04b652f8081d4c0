//! The standalone binary as its tests run it: a temp dir of its own per test, and `ringcast`
//! started with a config file on a free loopback port, its whole log kept; killed by its own
//! handle when dropped.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A path as the text a command line takes.
pub fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// A directory of its own under the system's temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "ringcast-control-{}-{name}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `ringcast` started with a config file, its whole log kept (stdout and stderr).
pub struct Server {
    pub child: Child,
    pub url: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(config_text: &str, dir: &TempDir, env: &[(&str, &str)]) -> Server {
        let path = dir.path("ringcast.toml");
        std::fs::write(&path, config_text).expect("write the config");
        Server::start_with(&path, &[], env)
    }

    pub fn start_with(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        for _ in 0..5 {
            let port = super::free_port();
            let mut command = Command::new(env!("CARGO_BIN_EXE_ringcast"));
            command
                .args(["--config", s(config), "--host", "127.0.0.1", "--port"])
                .arg(port.to_string())
                .args(args)
                .args(super::epoll_requested().then_some("--epoll"))
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (name, value) in env {
                command.env(name, value);
            }
            let mut child = command.spawn().expect("spawn ringcast");
            let log = Arc::new(Mutex::new(Vec::new()));
            let (ready, listening) = std::sync::mpsc::channel();
            for pipe in [
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
            ]
            .into_iter()
            .flatten()
            {
                let (log, ready) = (log.clone(), ready.clone());
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                        if line.contains("ringcast listening") {
                            let _ = ready.send(());
                        }
                        println!("{line}");
                        log.lock().expect("log").push(line);
                    }
                });
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut server = Server {
                child,
                url: format!("http://127.0.0.1:{port}"),
                log,
            };
            loop {
                if listening.recv_timeout(Duration::from_millis(20)).is_ok() {
                    return server;
                }
                if let Ok(Some(status)) = server.child.try_wait() {
                    let log = server.log.lock().expect("log").join("\n");
                    if log.contains("in use") {
                        break;
                    }
                    panic!("ringcast exited ({status}) before listening:\n{log}");
                }
                assert!(
                    Instant::now() < deadline,
                    "ringcast did not start listening"
                );
            }
        }
        panic!("ringcast did not start on any of 5 free ports");
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) with the pid of a child this test spawned and has not reaped.
        unsafe { libc::kill(pid, signal) };
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
