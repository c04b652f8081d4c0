//! The two applications the `ringcast` binary serves without user code: the built-in events
//! every served namespace understands (the contract the loadtest drives), and the conformance
//! app the official Engine.IO / Socket.IO test suites expect (conformance.md §3).

use std::time::Duration;

use crate::config::Config;
use crate::server::{Server, ServerBuilder};
use crate::socketio::{Args, Namespace};

pub use crate::control::Standalone;

/// The built-in events, every one open to every room (the namespace policy of a server with
/// no configuration): `join(room)` + ack, `leave(room)` + ack, `publish(room, payload)` (emits
/// `message(payload)` to the whole room, the sender included if it is a member), and
/// `echo(payload)` + ack (acks the payload back unchanged, binary included). An ack is empty on
/// success and `[{"error": {"code", "message"}}]` otherwise: `room_limit` past the room limit,
/// `invalid_room` for a missing, empty, overlong (over 256 bytes) or control-character name,
/// `forbidden` for a room under the server's reserved prefix `ringcast:`.
pub fn builtin_namespace() -> Namespace {
    crate::control::open_namespace()
}

/// The conformance app: `/engine.io/` echoes raw Engine.IO messages; `/socket.io/` serves `/`
/// (auth, message -> message-back, message-with-ack) and `/custom` (auth).
pub fn conformance(mut config: Config) -> ServerBuilder {
    config.engine.ping_interval = Duration::from_millis(300);
    config.engine.ping_timeout = Duration::from_millis(200);
    config.engine.max_payload = 1_000_000;
    config.engine.allow_eio3 = true;
    config.engine.eio3_ws_open_delay = Some(Duration::from_millis(10));
    config.socketio.connect_timeout = Duration::from_millis(1000);
    config.path = "/socket.io/".to_owned();
    config.cors.origins.clear();
    let send_auth = |socket: &crate::socketio::Socket| {
        if let Ok(args) = Args::new().with_raw(&socket.auth_raw()) {
            let _ = socket.emit("auth", &args);
        }
    };
    let main = Namespace::new()
        .on_connect(send_auth)
        .on("message", |socket, message, _ack| {
            let _ = socket.emit("message-back", &message.to_args());
        })
        .on("message-with-ack", |_socket, message, ack| {
            if let Some(ack) = ack {
                let _ = ack.send(&message.to_args());
            }
        });
    Server::builder()
        .config(config)
        .namespace("/", main)
        .namespace("/custom", Namespace::new().on_connect(send_auth))
        .engine_echo("/engine.io/")
}
