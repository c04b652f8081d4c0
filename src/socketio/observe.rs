//! The lifecycle observer: what an application (the Admin UI, metrics, webhooks) hears of
//! every socket on a shard: connect, rooms joined and left, events in and out, transport
//! upgrades, disconnect with its reason.
//!
//! One observer per shard, made by the factory given to `ServerBuilder::observer`, so it may
//! keep shard-local state without locks. With none, every call site is one `None` check.

use super::message::{Args, Message};
use super::{DisconnectReason, Socket};
use crate::key::ShardId;

/// Hears what happens to the sockets of one shard, in order per socket: `connected` first,
/// then joins, leaves, events in and out, upgrades and data changes as they happen, then `left` for every
/// room the socket was still in and `disconnected` last.
///
/// Called on the shard's thread, with no lock or borrow held: an observer may use the socket
/// handle (it must not block, as a handler must not). Every method does nothing by default.
pub trait Observer {
    /// A socket joined its namespace (the room named by its id and the rooms its admission
    /// named included: those are not told as joins).
    fn connected(&self, socket: &Socket) {
        let _ = socket;
    }

    /// A socket joined a room (not its own id room, which it is in from the start).
    fn joined(&self, socket: &Socket, room: &str) {
        let _ = (socket, room);
    }

    /// A socket left a room (on its own, through an operation, or when it disconnected).
    fn left(&self, socket: &Socket, room: &str) {
        let _ = (socket, room);
    }

    /// A socket sent an event (called before the event's handler).
    fn event_received(&self, socket: &Socket, event: &str, message: &Message) {
        let _ = (socket, event, message);
    }

    /// An event was sent to a socket, directly or by a broadcast it was a recipient of (a
    /// broadcast's recipients only while [`Observer::watches_recipients`] says so).
    fn event_sent(&self, socket: &Socket, event: &str, args: &Args) {
        let _ = (socket, event, args);
    }

    /// Whether the recipients of a broadcast of `event` are each told to
    /// [`Observer::event_sent`] now; asked once per broadcast. When not, the broadcast is told
    /// once to [`Observer::broadcast_sent`] with its number of recipients, and the shard does
    /// not collect them (the per-recipient calls cost a handle and a call each).
    fn watches_recipients(&self, event: &str) -> bool {
        let _ = event;
        true
    }

    /// An event a broadcast sent to `recipients` sockets of this shard, while
    /// [`Observer::watches_recipients`] said no.
    fn broadcast_sent(&self, event: &str, args: &Args, recipients: usize) {
        let _ = (event, args, recipients);
    }

    /// A socket's connection moved to another transport (`"websocket"` after an upgrade).
    fn upgraded(&self, socket: &Socket, transport: &str) {
        let _ = (socket, transport);
    }

    /// The application's value kept with a socket changed (`Socket::set_data`,
    /// `Socket::update_data`).
    fn data_changed(&self, socket: &Socket) {
        let _ = socket;
    }

    /// A socket left its namespace (its handle no longer sends; its id and namespace stay
    /// readable).
    fn disconnected(&self, socket: &Socket, reason: DisconnectReason) {
        let _ = (socket, reason);
    }
}

/// Makes one shard's observer, given the shard's index.
pub type ObserverFactory = dyn Fn(ShardId) -> Box<dyn Observer> + Send + Sync;

/// Several observers heard as one, each in the order given (`ServerBuilder::observer` called
/// more than once).
pub(crate) struct Observers(pub(crate) Vec<Box<dyn Observer>>);

impl Observer for Observers {
    fn connected(&self, socket: &Socket) {
        self.0.iter().for_each(|o| o.connected(socket));
    }
    fn joined(&self, socket: &Socket, room: &str) {
        self.0.iter().for_each(|o| o.joined(socket, room));
    }
    fn left(&self, socket: &Socket, room: &str) {
        self.0.iter().for_each(|o| o.left(socket, room));
    }
    fn event_received(&self, socket: &Socket, event: &str, message: &Message) {
        self.0
            .iter()
            .for_each(|o| o.event_received(socket, event, message));
    }
    fn event_sent(&self, socket: &Socket, event: &str, args: &Args) {
        self.0
            .iter()
            .for_each(|o| o.event_sent(socket, event, args));
    }
    fn watches_recipients(&self, event: &str) -> bool {
        self.0.iter().any(|o| o.watches_recipients(event))
    }
    fn broadcast_sent(&self, event: &str, args: &Args, recipients: usize) {
        self.0
            .iter()
            .for_each(|o| o.broadcast_sent(event, args, recipients));
    }
    fn upgraded(&self, socket: &Socket, transport: &str) {
        self.0.iter().for_each(|o| o.upgraded(socket, transport));
    }
    fn data_changed(&self, socket: &Socket) {
        self.0.iter().for_each(|o| o.data_changed(socket));
    }
    fn disconnected(&self, socket: &Socket, reason: DisconnectReason) {
        self.0.iter().for_each(|o| o.disconnected(socket, reason));
    }
}
