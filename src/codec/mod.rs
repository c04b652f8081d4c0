//! Pure wire formats: parsers and encoders over `&[u8]` / `Bytes`.
//!
//! Nothing here does I/O, reads a clock or knows about shards or sessions; every decoder
//! answers complete, incomplete or error, so each one can be fuzzed on its own.

pub mod adapter;
pub mod deflate;
pub mod eio;
pub mod frame;
pub mod http;
pub mod json;
pub mod msgpack;
pub mod notepack;
pub mod sio;
pub mod ws;
