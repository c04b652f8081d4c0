//! Conformance tests: the behaviours the official Engine.IO v4, Socket.IO v5 and Engine.IO v3
//! suites assert (the project's shared spec, conformance.md §5), plus the extra checks of §4, §9 and
//! §10, run against `ringcast --conformance`. Written independently from the spec text; they
//! depend on no ringcast code, only on the running binary (or on an external server named by
//! `RINGCAST_EXTERNAL_ADDR=host:port`, e.g. the Node reference, where the lax behaviours of §8
//! are tolerated).

mod common;

#[path = "conformance/eio3.rs"]
mod eio3;
#[path = "conformance/eio4.rs"]
mod eio4;
#[path = "conformance/engine_v4.rs"]
mod engine_v4;
#[path = "conformance/extras.rs"]
mod extras;
#[path = "conformance/sio5.rs"]
mod sio5;
#[path = "conformance/support.rs"]
mod support;
