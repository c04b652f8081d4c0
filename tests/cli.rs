//! The `ringcast` binary as an operator meets it: a taken port is refused, not shared.

mod common;

use std::process::Command;

#[test]
fn a_port_another_server_listens_on_is_refused() {
    let first = common::Server::start(&["--cores", "2"]);
    let port = first.addr.port().to_string();
    let second = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(["--cores", "2", "--host", "127.0.0.1", "--port", &port])
        .output()
        .expect("run ringcast");
    assert!(
        !second.status.success(),
        "a second server shared port {port}"
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use"), "unexpected error: {stderr}");
}
