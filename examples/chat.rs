//! A chat server on the ringcast library.
//!
//! Clients `join` a room (with an ack carrying the member count on this shard's view), `say`
//! something to it (everyone else in the room gets `said` with the speaker's id), and learn
//! when someone leaves. Run with `cargo run --release --example chat -- 3000`, then connect
//! any Socket.IO client to `http://127.0.0.1:3000`.

use ringcast::{Args, ConnectError, Namespace, Server};

fn main() {
    let port = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let chat = Namespace::new()
        // Refuse nameless users: the client's `connect_error` gets this message.
        .middleware(|handshake| {
            let name: Option<String> = handshake
                .auth::<serde_json::Value>()
                .ok()
                .and_then(|auth| auth.get("name")?.as_str().map(str::to_owned));
            match name {
                Some(name) if !name.is_empty() => Ok(()),
                _ => Err(ConnectError::new("a name is required")),
            }
        })
        .on_connect(|socket| {
            let _ = socket.emit("welcome", &Args::new().with_str(socket.id()));
        })
        .on("join", |socket, message, ack| {
            let Some(room) = message.str(0) else {
                return;
            };
            socket.join(&room);
            socket
                .to(&room)
                .emit("joined", &Args::new().with_str(socket.id()));
            if let Some(ack) = ack {
                let _ = ack.send(&Args::new().with_str(&room));
            }
        })
        .on("say", |socket, message, _ack| {
            let Some(room) = message.str(0) else {
                return;
            };
            let said = Args::new().with_str(socket.id());
            let said = match message.raw(1) {
                Some(text) => said.with_raw(text).unwrap_or_else(|_| Args::new()),
                None => said,
            };
            socket.to(&room).emit("said", &said);
        })
        .on_disconnect(|socket, reason| {
            socket.broadcast().emit(
                "left",
                &Args::new().with_str(socket.id()).with_str(reason.as_str()),
            );
        });
    let server = Server::builder()
        .configure(|config| config.port = port)
        .namespace("/", chat)
        .start()
        .expect("could not bind the port");
    println!("chat server on {}", server.local_addr());
    server.wait();
}
