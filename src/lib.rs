//! ringcast: a thread-per-core io_uring Socket.IO server.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod codec;
