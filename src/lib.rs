//! ringcast: a Socket.IO server for Linux, one shard per core, each with its own io_uring
//! event loop, session slab and room index; shards share nothing but lock-free rings.
//!
//! Layers, each importing only those below it (see ARCHITECTURE.md):
//! `codec` (pure wire formats) and `deadline` (timer heaps) < `engine` (Engine.IO sessions,
//! sans-IO) < `socketio` (namespaces, sockets, acks, rooms, broadcasts) and `net` (the only
//! socket I/O) < `shard` (one thread's composition root) < `server` (the public builder).
//!
//! The public API is what the crate root exports, plus [`apps`]; the layers themselves are
//! private (the fuzz targets, benches and tests reach what they need through a hidden
//! `internals` module that may change in any release).
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

mod admin;
pub mod apps;
mod bus;
mod cluster;
mod codec;
mod config;
mod control;
mod datetime;
mod deadline;
mod directory;
mod engine;
mod gather;
mod histogram;
mod id;
mod key;
mod metrics;
mod net;
mod rooms;
mod server;
mod shard;
mod socketio;
mod stats;

pub use admin::Admin;
pub use codec::json::JsonError;
pub use config::{
    AdminConfig, AdminMode, ClusterConfig, Config, CorsConfig, EngineConfig, HttpConfig, Parser,
    RecoveryConfig, RedisMode, SlowConsumerPolicy, SocketIoConfig, SubscriptionMode,
};
pub use engine::{CloseReason, SendError};
pub use key::ShardId;
pub use server::{Server, ServerBuilder, ServerHandle, ServerOperator};
pub use socketio::{
    AckError, AckSender, Admission, AdmissionFuture, Args, BroadcastAcks, BroadcastOperator,
    ConnectError, DisconnectReason, Handshake, HandshakeInfo, Message, MiddlewareFuture, Namespace,
    Observer, OpError, OpFuture, ServerAck, Socket, SocketInfo,
};

/// Not public API: exported for the fuzz targets, benches and tests; may change in any release.
///
/// The modules here mirror the crate's private ones and re-export only the items those users
/// name.
#[doc(hidden)]
pub mod internals {
    /// This process as a node of a Redis cluster, sans-IO (`crate::cluster`).
    pub mod cluster {
        pub use crate::cluster::{
            Dropped, Incoming, LocalBroadcast, Node, Publish, RemoteAckBroadcast, RemoteAction,
            RemoteBroadcast, RemoteOperation, RemoteQuery, Subscriptions, MAX_MESSAGE,
        };
    }
    /// The control plane (`crate::control`).
    pub mod control {
        /// The HTTP server API.
        pub mod api {
            pub use crate::control::api::start_with_api;
        }
        /// JWT verification: configuration, keys, claims mapping.
        pub mod jwt {
            pub use crate::control::jwt::{
                AuthError, ClaimsConfig, Grant, Invalid, JwtConfig, Verifier,
            };
        }
    }
    /// Wire formats (`crate::codec`).
    pub mod codec {
        /// The Redis adapter's and the emitter's messages and channels.
        pub mod adapter {
            pub use crate::codec::adapter::{
                broadcast_channel, broadcast_pattern, broadcast_room, classic_channel,
                classic_publish_channel, looks_like_socket_id, request_channel, response_channel,
                room_channel, sharded_channel, sharded_response_channel, specific_response_channel,
                AdapterError, BroadcastMessage, BroadcastOpts, ClassicChannel, ClusterBody,
                ClusterMessage, ClusterType, Flags, OptsOrder, Packet, RemoteSocket, Request,
                RequestBody, RequestType, Response, ShardedChannel, SubscriptionMode,
                DEFAULT_MAX_LEN, DEFAULT_PREFIX, EMITTER_UID, MAX_DEPTH,
            };
        }
        /// Engine.IO packets and polling payloads.
        pub mod eio {
            pub use crate::codec::eio::{
                decode_payload, decode_text, decode_ws_binary, decode_ws_text, encode_payload,
                ContentType, Packet, PacketType, Version, RECORD_SEPARATOR, V3_BINARY_BINARY,
                V3_BINARY_LENGTH_END, V3_BINARY_STRING, V3_LENGTH_END,
            };
        }
        /// permessage-deflate: the negotiation and one message's DEFLATE each way.
        pub mod deflate {
            pub use crate::codec::deflate::{
                negotiate, Agreement, Deflater, InflateError, Inflater,
            };
        }
        /// Encoded server frames.
        pub mod frame {
            pub use crate::codec::frame::Frame;
        }
        /// HTTP request heads.
        pub mod http {
            pub use crate::codec::http::{parse_request, query_param};
        }
        /// JSON validation and scanning.
        pub mod json {
            pub use crate::codec::json::{
                check_placeholders, from_slice, is_string, parse_str, split_array, validate,
            };
        }
        /// socket.io-msgpack-parser packets.
        pub mod msgpack {
            pub use crate::codec::msgpack::{decode, encode, encode_event, MsgpackError};
        }
        /// notepack.io MessagePack and its conversion to and from event data.
        pub mod notepack {
            pub use crate::codec::notepack::{
                decode_event, decode_value, encode_event, encode_value, event_to_value,
                json_to_value, read, write, DecodedEvent, DecodedValue, NotepackError, MAX_DEPTH,
            };
            pub use rmpv::Value;
        }
        /// Socket.IO packets and binary attachments.
        pub mod sio {
            pub use crate::codec::sio::{decode, encode, Assembler, PacketType};
        }
        /// WebSocket frames.
        pub mod ws {
            pub use crate::codec::ws::{unmask, unmask_scalar, Decoder, Message, RSV1};
        }
    }
    /// The cross-shard rings (`crate::bus`).
    pub mod bus {
        pub use crate::bus::{mesh, Endpoint};
    }
    /// Socket I/O (`crate::net`).
    pub mod net {
        /// The process's one link to Redis, on a thread of its own.
        pub mod redis {
            pub use crate::net::redis::{
                Backoff, ClusterSeeds, CommandAnswer, CommandError, Incoming, IncomingKind,
                LinkCounts, PublishError, RedisLink, RedisLinkConfig, RedisUrl, SeedsError,
                ServerCount, TlsCa, TlsError, UrlError,
            };
        }
    }
    /// Engine.IO sessions (`crate::engine`).
    pub mod engine {
        pub use crate::engine::{pump, Engine, Event, LinkKey, Peer, PollReply, SessionKey};
    }
    /// Generational keys and shard indexes (`crate::key`).
    pub mod key {
        pub use crate::key::{Key, Slots};
    }
    /// One shard's room index (`crate::rooms`).
    pub mod rooms {
        pub use crate::rooms::Rooms;
    }
    /// One shard's Socket.IO server (`crate::socketio`).
    pub mod socketio {
        pub use crate::socketio::{
            encode_event, LocalTask, Namespaces, ShardHooks, SocketIo, SocketIoMsg,
        };
    }
}
