//! A WebSocket client that stops reading (ringcast's slow-consumer behaviour, against the real
//! binary): the server keeps reading from it while writes to it are blocked, disconnects it
//! once its outbound queue overflows, and a ping timeout later gives up on the blocked
//! connection instead of holding it open.

mod common;

use std::time::Duration;

use common::ws_client::Client;

/// One event's payload: 64 KiB, so that a few dozen fill every buffer on the way.
const BIG: usize = 64 * 1024;

#[test]
fn a_client_that_stops_reading_is_still_read_then_dropped() {
    let ping_timeout = Duration::from_millis(1000);
    let server = common::Server::start(&[
        "--cores",
        "2",
        "--ping-interval",
        "60000",
        "--ping-timeout",
        &ping_timeout.as_millis().to_string(),
    ]);
    if server.is_external() {
        // Relies on ringcast's flags and built-in events.
        return;
    }
    let mut listener = Client::connect(server.addr, None);
    listener.join("r");
    let mut stalled = Client::connect(server.addr, Some(4096));
    stalled.join("big");

    // From now on `stalled` never reads. Everything published to "big" comes back to it and
    // piles up: in the kernel's buffers first, then in its queue on the server (each message
    // is about 64 KiB; these stay under the 4 MiB queue bound).
    let big = format!(r#"42["publish","big","{}"]"#, "x".repeat(BIG));
    for _ in 0..56 {
        stalled.send(&big);
    }
    // Its writes are blocked, and still what it sends is read and handled.
    stalled.send(r#"42["publish","r","through"]"#);
    assert_eq!(listener.text(), r#"42["message","through"]"#);

    // Past the queue bound the session is closed (a slow consumer). The connection can't be
    // closed politely, with a close frame after everything queued: its writes stay blocked.
    // So a ping timeout later the server gives up on it and shuts it, dropping what it could
    // not write.
    for _ in 0..192 {
        if !stalled.try_send(&big) {
            break;
        }
    }
    std::thread::sleep(ping_timeout + Duration::from_secs(2));
    let (ended, closes) = stalled.read_to_end(Duration::from_secs(10));
    assert!(
        ended,
        "the server still holds a client that stopped reading"
    );
    assert_eq!(
        closes, 0,
        "the server gave up on the connection, not closed it politely"
    );

    // The shard carries on.
    listener.send(r#"422["echo","still here"]"#);
    assert_eq!(listener.text(), r#"432["still here"]"#);
}

#[test]
fn a_client_that_reads_late_gets_everything_in_order() {
    // The same pile-up without overflowing: once the client reads again, every queued message
    // arrives, in order.
    let server = common::Server::start(&["--cores", "2"]);
    if server.is_external() {
        return;
    }
    let mut slow = Client::connect(server.addr, Some(4096));
    slow.join("big");
    for n in 0..40 {
        let payload = format!("{n:04}{}", "y".repeat(BIG));
        slow.send(&format!(r#"42["publish","big","{payload}"]"#));
    }
    std::thread::sleep(Duration::from_millis(200));
    for n in 0..40 {
        let text = slow.text();
        let expected = format!(r#"42["message","{n:04}"#);
        assert!(text.starts_with(&expected), "message {n} in order");
        assert_eq!(text.len(), expected.len() + BIG + 2);
    }
    slow.send(r#"422["echo","done"]"#);
    assert_eq!(slow.text(), r#"432["done"]"#);
}
