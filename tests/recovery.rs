//! Connection state recovery (issue 14, spec `ecosystem-protocols.md` D) with npm
//! socket.io-client 4.x against the real binary on two shards, over WebSocket and
//! long-polling: a client whose connection goes away comes back with its id, rooms and the
//! events it missed; a bogus pid gets a fresh session.

mod common;

use std::time::Duration;

use common::script::{self, Runtime};
use common::Server;

const RECOVERY: &[&str] = &["--cores", "2", "--recovery-window", "10000"];

fn scenario(mode: &str, name: &str) {
    let server = Server::start(RECOVERY);
    script::run(
        Runtime::Node,
        "js/recovery.mjs",
        &[mode, name],
        &server.url(),
        &[],
        Duration::from_secs(40),
    )
    .expect_ok();
}

#[test]
fn a_lost_websocket_client_is_recovered() {
    scenario("websocket", "recovered");
}

#[test]
fn a_lost_polling_client_is_recovered() {
    scenario("polling", "recovered");
}

#[test]
fn a_client_whose_tcp_connection_dies_is_recovered() {
    scenario("websocket", "killed");
}

#[test]
fn a_bogus_pid_gets_a_fresh_session() {
    scenario("websocket", "bogus");
}
