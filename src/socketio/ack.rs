//! Acknowledgements: why one did not arrive ([`AckError`]), what waits for one on a socket
//! ([`AckHandler`]), and how a broadcast's acks from every shard are gathered into one answer.
//!
//! Data and callbacks only: sending and receiving acks is `dispatch`'s and `adapter`'s job.

use std::fmt;
use std::time::Instant;

use super::adapter::{Origin, Reply};
use super::message::{Args, Message};
use crate::gather::{Collector, RequestId};

/// Why an acknowledgement did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// The deadline passed first.
    Timeout,
    /// The socket disconnected first.
    Disconnected,
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AckError::Timeout => "operation has timed out",
            AckError::Disconnected => "socket has been disconnected",
        })
    }
}

impl std::error::Error for AckError {}

/// What a broadcast-with-ack's callback gets: every ack, or why some are missing and those
/// that came.
pub type BroadcastAcks = Result<Vec<Message>, (AckError, Vec<Message>)>;

/// What runs when an ack arrives (or its deadline passes).
pub(crate) enum AckHandler {
    /// A handler on this shard.
    Local(Box<dyn FnOnce(Result<Message, AckError>)>),
    /// A recipient of a broadcast-with-ack: the ack goes to the request at `origin`. `sent`
    /// (the tick it was sent in) times the round trip for the metrics.
    Broadcast {
        origin: Origin,
        request: RequestId,
        sent: Instant,
    },
}

/// What a broadcast's gathered acks go to: the recipients every responder reported, and the
/// acks (or why some are missing).
pub(crate) type CountedAcks = Box<dyn FnOnce(usize, BroadcastAcks)>;

/// The origin side of a broadcast that waits for every recipient's ack: each shard first
/// reports its number of recipients, then their acks follow.
pub(crate) struct AckCollector {
    responses: Vec<Message>,
    /// Recipients reported so far (every shard's and node's `Recipients`).
    expected: usize,
    callback: CountedAcks,
}

impl AckCollector {
    pub(crate) fn new(callback: CountedAcks) -> AckCollector {
        AckCollector {
            responses: Vec::new(),
            expected: 0,
            callback,
        }
    }
}

impl Collector<Reply> for AckCollector {
    fn add(&mut self, reply: Reply) -> usize {
        match reply {
            Reply::Recipients(count) => {
                self.expected += count;
                count
            }
            Reply::Nodes(count) => count,
            Reply::Ack(message) => {
                self.responses.push(message);
                0
            }
            // With the cluster out of reach, the acks of this process still count.
            // Anything else is not an answer a broadcast asks for; counted as one so the
            // request still ends.
            _ => 0,
        }
    }

    fn finish(self: Box<Self>, complete: bool) {
        let AckCollector {
            responses,
            expected,
            callback,
        } = *self;
        let outcome = if complete {
            Ok(responses)
        } else {
            Err((AckError::Timeout, responses))
        };
        super::dispatch::contain("ack", || callback(expected, outcome));
    }
}

/// Answers another server's `serverSideEmit` with an ack: Node passes on the first argument
/// only, and so does this. Dropping it answers nothing, and the asking server times out (as
/// when a Node listener never calls back).
pub struct ServerAck(Box<dyn FnOnce(&Args)>);

impl ServerAck {
    /// An ack that runs `answer` with the arguments it is sent.
    pub(crate) fn new(answer: impl FnOnce(&Args) + 'static) -> ServerAck {
        ServerAck(Box::new(answer))
    }

    /// Answers with `args` (the first one crosses to the asking server; none sends `null`).
    pub fn send(self, args: &Args) {
        (self.0)(args);
    }
}

impl fmt::Debug for ServerAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerAck")
    }
}
