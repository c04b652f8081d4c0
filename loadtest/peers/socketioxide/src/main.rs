//! Reference server for `loadtest/compare`: socketioxide on tokio's current-thread runtime,
//! served by axum, with the ringcast bench contract on namespace "/":
//!
//! - `join(room)` + ack: joins the room, acks with no arguments
//! - `leave(room)` + ack: leaves the room, acks with no arguments
//! - `publish(room, ...payload)`: emits `message(...payload)` to every socket in the room (the
//!   sender included when it is a member, `io.to(room)`), acks with no arguments if asked
//! - `echo(...args)` + ack: acks the same arguments back unchanged (binary included)
//!
//! Usage: `peer-socketioxide [--port N] [--host H] [--max-buffer-size N]` (or env `PORT`, `HOST`;
//! defaults 3000, 0.0.0.0). Prints `listening on <port>` once bound.
//!
//! Settings: socketioxide's defaults (ping interval 25 s, ping timeout 20 s) except
//! `max_payload`, raised from socketioxide's 100 kB to the contract's 1e6 (Node's default), and
//! `max_buffer_size`, the per-socket outbound queue in packets: past socketioxide's default of
//! 128 an emit fails (a broadcast silently skips that socket), so a receiver that falls behind
//! would lose messages where Node and ringcast queue them. 32768 packets of the bench's
//! ~130-byte frames is about ringcast's 4 MiB per-session outbound cap. Pass
//! `--max-buffer-size 128` to get socketioxide's default back.

use std::fmt;

use axum::routing::get;
use rmpv::Value;
use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeTuple, Serializer};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};

/// All the arguments of an event (after the event name) or of an ack, in order.
///
/// socketioxide's common parser expands a value that serde sees as a tuple into the packet's
/// argument list (and otherwise takes or sends only one argument), so this type deserializes and
/// serializes as a tuple of any length. Each argument is an `rmpv::Value`, which socketioxide's
/// docs recommend over `serde_json::Value` because it keeps binary attachments as binary.
struct Args(Vec<Value>);

impl Serialize for Args {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(self.0.len())?;
        for arg in &self.0 {
            tuple.serialize_element(arg)?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArgsVisitor;
        impl<'de> Visitor<'de> for ArgsVisitor {
            type Value = Args;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the event arguments")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Args, A::Error> {
                let mut args = Vec::with_capacity(seq.size_hint().unwrap_or(2));
                while let Some(arg) = seq.next_element::<Value>()? {
                    args.push(arg);
                }
                Ok(Args(args))
            }
        }
        deserializer.deserialize_tuple(usize::MAX, ArgsVisitor)
    }
}

const NO_ARGS: Args = Args(Vec::new());

fn room(args: &Args) -> Option<String> {
    args.0.first().and_then(Value::as_str).map(str::to_owned)
}

async fn on_connect(socket: SocketRef) {
    socket.on(
        "join",
        async |socket: SocketRef, Data(args): Data<Args>, ack: AckSender| {
            if let Some(room) = room(&args) {
                socket.join(room);
            }
            ack.send(&NO_ARGS).ok();
        },
    );
    socket.on(
        "leave",
        async |socket: SocketRef, Data(args): Data<Args>, ack: AckSender| {
            if let Some(room) = room(&args) {
                socket.leave(room);
            }
            ack.send(&NO_ARGS).ok();
        },
    );
    socket.on(
        "publish",
        async |io: SocketIo, Data(mut args): Data<Args>, ack: AckSender| {
            if let Some(room) = room(&args) {
                args.0.remove(0);
                io.to(room).emit("message", &args).await.ok();
            }
            ack.send(&NO_ARGS).ok();
        },
    );
    socket.on("echo", async |Data(args): Data<Args>, ack: AckSender| {
        ack.send(&args).ok();
    });
}

fn option(args: &[String], name: &str, env: Option<&str>, default: &str) -> String {
    let flag = format!("--{name}");
    let prefix = format!("--{name}=");
    let mut found = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if *arg == flag {
            found = iter.next().cloned();
        } else if let Some(value) = arg.strip_prefix(&prefix) {
            found = Some(value.to_owned());
        }
    }
    found
        .or_else(|| env.and_then(|env| std::env::var(env).ok()))
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: peer-socketioxide [--port N] [--host H] [--max-buffer-size N]");
        return Ok(());
    }
    let port: u16 = option(&argv, "port", Some("PORT"), "3000").parse()?;
    let host = option(&argv, "host", Some("HOST"), "0.0.0.0");
    let max_buffer_size: usize = option(&argv, "max-buffer-size", None, "32768").parse()?;

    let (layer, io) = SocketIo::builder()
        .max_payload(1_000_000)
        .max_buffer_size(max_buffer_size)
        .build_layer();
    io.ns("/", on_connect);

    let app = axum::Router::new()
        .route("/", get(|| async { "peer-socketioxide" }))
        .layer(layer);

    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    println!("listening on {}", listener.local_addr()?.port());
    axum::serve(listener, app).await?;
    Ok(())
}
