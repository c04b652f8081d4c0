//! The standalone control plane of the `ringcast` binary (spec `control-plane.md`): the
//! configuration file, per-namespace policy, JWT auth with live expiry, users and revocation,
//! and the HTTP server API. An application built on the library's seams (namespaces,
//! middleware, operators, routes), as `apps` builds the built-in events; the library gains no
//! behaviour from it. Must not depend on the engine, the shard or the bus.

// Until the binary reads them (the next steps of the control plane).
#![allow(dead_code)]

pub(crate) mod api;
pub(crate) mod secret;
pub(crate) mod units;
