//! What a polling request is answered with: [`PollReply`] (status, content type, body) and
//! [`EngineError`], mapped to HTTP once here ([`PollReply::error`]).
//!
//! Plain values: no session state, no I/O; never depends on the other engine files.

use bytes::Bytes;
use futures_channel::oneshot;

use crate::codec::eio::ContentType;

/// The HTTP answer to a polling request, made by the owner shard and written by whichever
/// shard holds the TCP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollReply {
    /// HTTP status.
    pub status: u16,
    /// Content-Type of the body.
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
}

impl PollReply {
    /// 200 with an Engine.IO payload.
    pub fn payload(content_type: ContentType, body: Vec<u8>) -> PollReply {
        PollReply {
            status: 200,
            content_type: content_type.as_str(),
            body: body.into(),
        }
    }

    /// 200 with a JSON body.
    pub fn json(body: Bytes) -> PollReply {
        PollReply {
            status: 200,
            content_type: "application/json",
            body,
        }
    }

    /// 200 `ok`, the answer to an accepted POST.
    pub fn ok() -> PollReply {
        PollReply {
            status: 200,
            content_type: "text/html",
            body: Bytes::from_static(b"ok"),
        }
    }

    /// An Engine.IO error answer (conformance.md §4).
    pub fn error(error: EngineError) -> PollReply {
        let (status, body): (u16, &'static [u8]) = match error {
            EngineError::UnknownTransport => (400, br#"{"code":0,"message":"Transport unknown"}"#),
            EngineError::UnknownSid => (400, br#"{"code":1,"message":"Session ID unknown"}"#),
            EngineError::BadHandshakeMethod => {
                (400, br#"{"code":2,"message":"Bad handshake method"}"#)
            }
            EngineError::BadRequest => (400, br#"{"code":3,"message":"Bad request"}"#),
            EngineError::Forbidden => (403, br#"{"code":4,"message":"Forbidden"}"#),
            EngineError::UnsupportedVersion => (
                400,
                br#"{"code":5,"message":"Unsupported protocol version"}"#,
            ),
            EngineError::DuplicatePoll => (400, b""),
            EngineError::PayloadTooLarge => (413, b""),
            EngineError::ShuttingDown => (503, br#"{"code":3,"message":"Server shutting down"}"#),
            EngineError::TooManySessions => {
                (503, br#"{"code":4,"message":"Too many connections"}"#)
            }
            EngineError::TooManyHandshakes => {
                (429, br#"{"code":4,"message":"Too many handshakes"}"#)
            }
        };
        PollReply {
            status,
            content_type: "application/json",
            body: Bytes::from_static(body),
        }
    }
}

/// Where a polling GET's answer goes: a channel, so the same path serves connections on this
/// shard and connections forwarded from other shards.
pub type PollWaiter = oneshot::Sender<PollReply>;

/// Why a request was refused; maps to the reference's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineError {
    /// Missing or unknown `transport`.
    UnknownTransport,
    /// Unknown, closed or malformed `sid`.
    UnknownSid,
    /// A handshake by a method other than GET.
    BadHandshakeMethod,
    /// A request that does not fit the session's transport state.
    BadRequest,
    /// Refused by policy.
    Forbidden,
    /// Missing or unsupported `EIO`.
    UnsupportedVersion,
    /// A second concurrent GET.
    DuplicatePoll,
    /// A body larger than maxPayload.
    PayloadTooLarge,
    /// A handshake while the server shuts down (see [`Engine::drain`](super::Engine::drain)).
    ShuttingDown,
    /// A handshake past the server's or the client address's session limit.
    TooManySessions,
    /// A handshake past the client address's handshakes per second.
    TooManyHandshakes,
}
