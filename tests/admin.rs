//! The Admin UI's server side (`--admin`) against the real `ringcast --cores 2`, driven by
//! npm socket.io-client 4.x as the UI uses it (tests/clients/js/admin.mjs): wrong credentials
//! refused, session reuse, config, all_sockets, the per-socket events for clients on both
//! shards, each command, server_stats; production and read-only modes. And the real UI in
//! headless Chromium, served by ringcast and, as the hosted UI is, from another origin (with
//! `--cors-origin … --cors-credentials`); its screenshots land in
//! `target/tmp/admin-ui-screenshots/`.
//!
//! Needs `node` and `npm ci --prefix tests/clients` (and `npm ci --prefix tests/ui` with
//! Debian's `chromium` for the real UI). Depends on the binary, and on the public API where an
//! application's handler is needed.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The README's sample hash (spec C.2): the password `changeit`.
const HASH: &str = "$2b$10$heqvAkYMez.Va6Et2uXInOnkCT6/uQj1brkrbyG3LpopDklcq7ZOS";
/// Outer bound on one script; the script enforces its own, shorter one.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(60);

/// Starts `ringcast --cores 2` with `args` and runs the admin script's `scenario` against it.
fn run(scenario: &str, args: &[&str]) {
    let server = common::Server::start(&[&["--cores", "2"], args].concat());
    run_against(scenario, &server.url());
}

/// Runs the admin script's `scenario` against the server at `url`.
fn run_against(scenario: &str, url: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    assert!(
        dir.join("node_modules/socket.io-client/package.json")
            .is_file(),
        "install the npm clients first with `npm ci --prefix tests/clients`"
    );
    let mut child = Command::new("node")
        .args(["js/admin.mjs", "default", scenario])
        .current_dir(&dir)
        .env("RINGCAST_URL", url)
        .env("RINGCAST_SHARDS", "2")
        .env_remove("RINGCAST_EXTERNAL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node (is it installed?)");
    let pipe = |mut reader: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = reader.read_to_string(&mut text);
            text
        })
    };
    let stdout = pipe(Box::new(child.stdout.take().expect("piped")));
    let stderr = pipe(Box::new(child.stderr.take().expect("piped")));
    let started = Instant::now();
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_DEADLINE {
            // Our own child, by its handle.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "admin scenario {scenario} failed ({status:?})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    print!("{stdout}");
}

#[test]
fn admin_development_with_auth_reports_and_commands_across_shards() {
    run(
        "dev",
        &[
            "--admin-username",
            "admin",
            "--admin-password-hash",
            HASH,
            "--admin-server-id",
            "test-node",
        ],
    );
}

#[test]
fn an_applications_data_change_is_reported_and_keeps_the_client_id() {
    let config = ringcast::AdminConfig {
        enabled: true,
        ..ringcast::AdminConfig::default()
    };
    let admin = ringcast::Admin::new(config, &["/".to_owned()], "/socket.io/", false);
    let app = ringcast::Namespace::new().on("set", |socket, message, ack| {
        let value: serde_json::Value = message.get(0).unwrap_or_default();
        let _ = socket.set_data(&value);
        if let Some(ack) = ack {
            let _ = ack.send(&ringcast::Args::new());
        }
    });
    let builder = ringcast::Server::builder()
        .namespace("/", app)
        .configure(|config| {
            config.cores = 2;
            config.host = [127, 0, 0, 1].into();
            config.port = 0;
            config.pin_cores = false;
            config.force_epoll = common::epoll_requested();
        });
    let server = admin.install(builder).start().expect("start");
    let _stats = admin.start(&server);
    run_against("data", &format!("http://{}", server.local_addr()));
    server.stop();
}

#[test]
fn admin_production_mode_reports_only_stats() {
    run("production", &["--admin", "--admin-mode", "production"]);
}

#[test]
fn admin_read_only_offers_no_commands() {
    run("readonly", &["--admin", "--admin-read-only"]);
}

#[test]
fn an_invalid_admin_hash_is_refused_at_startup() {
    let output = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args([
            "--admin-username",
            "admin",
            "--admin-password-hash",
            "plain",
            "--port",
            "0",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run ringcast");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("admin password hash"));
}

/// One GET on its own connection: the status, the head and the body.
fn get(server: &common::Server, path: &str) -> (u16, String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let response = common::exchange(server.addr, request.as_bytes(), Duration::from_secs(5));
    let (status, body) = common::status_and_body(&response);
    let text = String::from_utf8_lossy(&response);
    let head = text.split_once("\r\n\r\n").map_or("", |(head, _)| head);
    (status, head.to_ascii_lowercase(), body)
}

#[test]
fn the_admin_ui_folder_is_served_with_types_and_nothing_outside_it() {
    let root = std::env::temp_dir().join(format!("ringcast-admin-ui-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dist = root.join("dist");
    std::fs::create_dir_all(dist.join("js")).expect("mkdir");
    std::fs::create_dir_all(dist.join("css")).expect("mkdir");
    std::fs::write(dist.join("index.html"), "<!doctype html><title>ui</title>").expect("write");
    std::fs::write(dist.join("js/app.abc.js"), "console.log(1)").expect("write");
    std::fs::write(dist.join("css/app.abc.css"), "body{}").expect("write");
    std::fs::write(dist.join("favicon.png"), [0x89, b'P', b'N', b'G']).expect("write");
    std::fs::write(root.join("secret.txt"), "outside").expect("write");
    std::os::unix::fs::symlink(root.join("secret.txt"), dist.join("link.txt")).expect("link");
    let dir = dist.to_str().expect("utf-8 temp path");
    let server = common::Server::start(&["--cores", "2", "--admin-ui-dir", dir]);

    let (status, head, body) = get(&server, "/admin-ui/");
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(body.contains("<title>ui</title>"));
    for (path, kind) in [
        ("/admin-ui/index.html", "text/html"),
        ("/admin-ui/js/app.abc.js", "text/javascript"),
        ("/admin-ui/css/app.abc.css", "text/css"),
        ("/admin-ui/favicon.png", "image/png"),
    ] {
        let (status, head, _) = get(&server, path);
        assert_eq!(status, 200, "{path}");
        assert!(
            head.contains(&format!("content-type: {kind}")),
            "{path}: {head}"
        );
    }
    let (status, head, _) = get(&server, "/admin-ui");
    assert_eq!(status, 301);
    assert!(head.contains("location: /admin-ui/"), "{head}");
    for path in [
        "/admin-ui/../secret.txt",
        "/admin-ui/%2e%2e/secret.txt",
        "/admin-ui/..%2fsecret.txt",
        "/admin-ui/link.txt",
        "/admin-ui/js/../../secret.txt",
        "/admin-ui/nope.js",
        "/secret.txt",
    ] {
        let (status, _, body) = get(&server, path);
        assert_eq!(status, 404, "{path}");
        assert!(!body.contains("outside"), "{path}");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&root);
}

/// Runs tests/ui/admin_ui.mjs (the real UI in headless Chromium) against `ringcast --cores 2`
/// with `args` (auth and the UI folder given here), naming it `server_id`; with `ui_port`, the
/// script serves the UI itself from that other origin. Screenshots go to
/// `target/tmp/admin-ui-screenshots/<shots>/`, named in the output.
fn run_ui_scenario(server_id: &str, ui_port: Option<u16>, shots: &str, args: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ui = root.join("tests/ui");
    let dist = ui.join("node_modules/@socket.io/admin-ui/ui/dist");
    assert!(
        dist.join("index.html").is_file() && ui.join("node_modules/puppeteer-core").is_dir(),
        "install the UI and puppeteer-core first with `npm ci --prefix tests/ui`"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&chromium).is_file(),
        "{chromium} is missing: `apt-get install chromium` (or name one with CHROMIUM)"
    );
    let dist_arg = dist.to_str().expect("utf-8 path");
    let server = common::Server::start(
        &[
            &[
                "--cores",
                "2",
                "--admin-username",
                "admin",
                "--admin-password-hash",
                HASH,
                "--admin-server-id",
                server_id,
                "--admin-ui-dir",
                dist_arg,
            ],
            args,
        ]
        .concat(),
    );
    // Under target/ (CARGO_TARGET_TMPDIR), one folder per test, emptied first.
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("admin-ui-screenshots")
        .join(shots);
    let _ = std::fs::remove_dir_all(&screenshots);
    let mut command = Command::new("node");
    command
        .arg("admin_ui.mjs")
        .current_dir(&ui)
        .env("RINGCAST_URL", server.url())
        .env("SERVER_ID", server_id)
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOT_DIR", &screenshots)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(port) = ui_port {
        command
            .env("UI_PORT", port.to_string())
            .env("UI_DIST", &dist);
    }
    let mut child = command.spawn().expect("start node");
    let started = Instant::now();
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_DEADLINE + Duration::from_secs(30) {
            // Our own child, by its handle (the script closes its browser itself).
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().expect("script output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.is_some_and(|s| s.success()),
        "the Admin UI scenario failed ({status:?})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    print!("{stdout}");
}

#[test]
fn the_real_admin_ui_logs_in_and_lists_sockets_in_headless_chromium() {
    run_ui_scenario("ui-test-node", None, "same-origin", &[]);
}

/// The hosted case (admin.socket.io): the UI from another origin reaches the server
/// cross-origin, long-polling first, with credentials.
#[test]
fn the_real_admin_ui_from_another_origin_logs_in_with_cors_credentials() {
    let ui_port = common::free_port();
    let origin = format!("http://127.0.0.1:{ui_port}");
    run_ui_scenario(
        "ui-cors-node",
        Some(ui_port),
        "cross-origin",
        &["--cors-origin", &origin, "--cors-credentials"],
    );
}
