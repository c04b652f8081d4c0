//! ringcast: a Socket.IO server for Linux, one shard per core, each with its own io_uring
//! event loop, session slab and room index; shards share nothing but lock-free rings.
//!
//! Layers, each importing only those below it (see ARCHITECTURE.md):
//! `codec` (pure wire formats) and `deadline` (timer heaps) < `engine` (Engine.IO sessions,
//! sans-IO) < `socketio` (namespaces, sockets, acks, rooms, broadcasts) and `net` (the only
//! socket I/O) < `shard` (one thread's composition root) < `server` (the public builder).
//!
//! ```no_run
//! use ringcast::{Args, Namespace, Server};
//!
//! let ns = Namespace::new().on("ping", |_socket, message, ack| {
//!     if let Some(ack) = ack {
//!         ack.send(&message.to_args());
//!     }
//! });
//! Server::builder().namespace("/", ns).start().unwrap().wait();
//! ```
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod apps;
pub mod bus;
pub mod codec;
pub mod config;
/// Deadline heaps with lazy deletion, for the engine's and Socket.IO's timers.
pub mod deadline;
pub mod engine;
pub mod gather;
pub mod id;
mod net;
pub mod rooms;
mod server;
mod shard;
pub mod socketio;
mod stats;

pub use config::{Config, CorsConfig, EngineConfig, HttpConfig, SocketIoConfig};
pub use engine::SendError;
pub use server::ServerOperator;
pub use server::{Server, ServerBuilder, ServerHandle};
pub use socketio::{
    AckError, AckSender, Args, BroadcastAcks, BroadcastOperator, ConnectError, DisconnectReason,
    Handshake, HandshakeInfo, Message, Namespace, Observer, OpError, OpFuture, Socket, SocketInfo,
};
