//! Runs a client scenario script under tests/clients/ (Node or the venv's Python) with a
//! deadline, and hands back its output; the scripts send traffic only to the URL they are given.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Which interpreter runs the script.
#[derive(Clone, Copy, Debug)]
pub enum Runtime {
    Node,
    Python,
}

/// What a script printed, and whether it exited 0 in time.
#[derive(Debug)]
pub struct Outcome {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    pub what: String,
}

impl Outcome {
    /// Panics with the script's output unless it succeeded.
    pub fn expect_ok(self) -> Outcome {
        assert!(
            self.ok,
            "`{}` failed\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.stdout, self.stderr
        );
        self
    }
}

pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("clients")
}

/// The venv's Python, asserting it is installed.
pub fn python() -> PathBuf {
    let python = clients_dir().join(".venv").join("bin").join("python");
    assert!(
        python.is_file(),
        "{} is missing: python3 -m venv tests/clients/.venv && \
         tests/clients/.venv/bin/pip install -r tests/clients/requirements.txt",
        python.display()
    );
    python
}

/// Runs `script` with `args` and `env` (plus `RINGCAST_URL=url`), killed at `deadline`.
pub fn run(
    runtime: Runtime,
    script: &str,
    args: &[&str],
    url: &str,
    env: &[(&str, String)],
    deadline: Duration,
) -> Outcome {
    let dir = clients_dir();
    let program = match runtime {
        Runtime::Node => {
            let manifest = dir.join("node_modules/socket.io-client/package.json");
            assert!(
                manifest.is_file(),
                "npm clients missing: npm ci --prefix tests/clients"
            );
            PathBuf::from("node")
        }
        Runtime::Python => python(),
    };
    let mut command = Command::new(&program);
    command
        .arg(script)
        .args(args)
        .current_dir(&dir)
        .env("RINGCAST_URL", url)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let what = format!("{} {script} {}", program.display(), args.join(" "));
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start `{what}`: {error}"));
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let status = wait_with_deadline(&mut child, deadline);
    Outcome {
        ok: status.is_some_and(|status| status.success()),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        what,
    }
}

/// Reads a child's pipe to the end on its own thread, so a chatty child never blocks on it.
pub fn collect(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The child's exit status, or None after killing it (by its own handle) at the deadline.
pub fn wait_with_deadline(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if started.elapsed() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}
