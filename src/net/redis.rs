//! The process's one link to Redis: two clients (a subscriber, and one for publishes and
//! commands) driven by `fred` on one OS thread of their own, with a tokio current-thread
//! runtime. Shards reach it only through [`RedisLink`]'s non-blocking calls and never wait on
//! Redis: a publish is a `try_send` into a bounded queue, a `PUBSUB NUMSUB` / `SHARDNUMSUB`
//! answer comes back through a oneshot, incoming messages are handed to a callback on the link
//! thread.
//!
//! It is a pipe: it never interprets what it carries (what to publish and what an incoming
//! message means is the cluster adapter's), and it must not depend on the rest of the crate
//! nor on the shards' runtime. It is the only file in `src/` that names `fred` or `tokio`
//! (`tests/layering.rs` checks both).
//!
//! **What it speaks.** Classic pub/sub (`PUBLISH`, `SUBSCRIBE`, `PSUBSCRIBE`, `PUBSUB NUMSUB`,
//! the classic Redis adapter's) and Redis 7's sharded pub/sub (`SPUBLISH`, `SSUBSCRIBE`,
//! `PUBSUB SHARDNUMSUB`, the sharded adapter's), to one server or to a Redis Cluster
//! ([`RedisLinkConfig::cluster`], seeds as `--redis-cluster host:port,…` gives them:
//! [`ClusterSeeds`]), in clear or over TLS (`rediss://`, rustls: the system's roots plus any CA
//! given to [`RedisLinkConfig::tls_ca_pem`]).
//!
//! **On a cluster** (what `fred` does, and what the link adds): a sharded publish or
//! subscription goes to the master owning its channel's hash slot, and a `MOVED`/`ASK` answer
//! to either is followed by the client; a classic subscription goes to one master (the client
//! picks it from its own id), which is enough because a cluster broadcasts classic messages to
//! every node; `PUBSUB NUMSUB` and `SHARDNUMSUB` only count the answering node's subscribers,
//! so the link asks every master and adds the answers up (what Node's adapter does with
//! node-redis). When the cluster's layout changes, every subscription is issued again.
//!
//! **Outages.** Both clients reconnect forever with capped exponential backoff ([`Backoff`],
//! 50 ms doubling to 5 s by default); every subscription asked for (channels, patterns, shard
//! channels) is remembered and issued again on every new subscriber connection. One warning is
//! logged per outage (Redis down at start, or lost while running), one info line when the link
//! is back. On a cluster the link is up when every master is reached by both clients.
//!
//! **Subscriptions are coalesced.** `subscribe` and the like only edit the wanted set and wake
//! the link thread; whatever changed meanwhile is issued as one difference (a channel
//! subscribed and unsubscribed again before that never reaches Redis).
//!
//! **Publishes are bounded, drop-newest.** A publish (classic or sharded) is queued if the
//! queue holds fewer than [`RedisLinkConfig::max_queued`] messages and
//! [`RedisLinkConfig::max_queued_bytes`] bytes (queued or in flight); otherwise it is refused at
//! once ([`PublishError::Full`]) and counted in `publish_dropped`. While the link is down
//! nothing leaves the queue, so an outage fills it and every publish past the bound is dropped;
//! what is queued goes out once Redis is back. At most [`RedisLinkConfig::max_in_flight`]
//! publishes are handed to the client at once, so its own retry buffer stays bounded too. A
//! publish Redis did not acknowledge within [`RedisLinkConfig::command_timeout`] is counted in
//! `publish_failed`.
//!
//! **Keys** (`SET key value EX secs`, `EXISTS key`, `DEL key`, `SET … NX PX`, `GET key`: what
//! the Admin UI's shared sessions, revocations and idempotency keys need) go through the same bounded request queue as
//! `PUBSUB NUMSUB`, on the command connection; on a cluster `fred` sends each to the master
//! owning the key's hash slot and follows `MOVED`/`ASK`. [`RedisLink::set_ex`] and
//! [`RedisLink::delete`] are fire-and-forget (refused at once while the link is down or the
//! queue is full); [`RedisLink::exists`] answers through a oneshot like
//! [`RedisLink::server_count`], within the command timeout. [`RedisLink::scan_values`] reads
//! every key matching a glob with its value (`SCAN … MATCH`, then `MGET`): on a cluster it
//! scans every master, as `PUBSUB NUMSUB` asks every master, and reads each slot's keys at the
//! master owning it. [`RedisLink::set_nx_px`] (`SET … NX PX`, a claim only one caller wins)
//! and [`RedisLink::get`] answer the same way, [`RedisLink::set_px`] is fire-and-forget;
//! each goes to the master owning its key.
//!
//! **Incoming messages** whose payload is not a byte string, or is longer than
//! [`RedisLinkConfig::max_incoming_bytes`], or that the link thread could not keep up with,
//! are dropped and counted (`received_dropped`), never a panic; a callback that panics is
//! contained and logged.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::{
    Builder, Client, ClientLike, ClientState, ClusterInterface, Config, EventInterface,
    PubsubInterface, ReconnectPolicy, ServerConfig, Value,
};
use fred::types::config::{Server, TlsConfig, TlsConnector, TlsHostMapping};
use fred::types::{ClusterHash, ClusterStateChange, CustomCommand, Message, MessageKind};
use futures_channel::oneshot;
use futures_util::stream::{FuturesUnordered, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, Notify};

/// How long a stopping link keeps publishing what is queued, and waits for its connections to
/// close.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// Commands (`PUBSUB NUMSUB`, `SET`, `GET`, `EXISTS`, `DEL`, scans) waiting for the link thread, past which
/// they are refused with [`CommandError::Overloaded`].
const MAX_QUEUED_REQUESTS: usize = 1024;
/// Commands in flight at once on the command connection.
const MAX_REQUESTS_IN_FLIGHT: usize = 256;
/// Keys one `SCAN` step is asked to look at (its `COUNT` hint): a few round trips for a
/// keyspace of thousands, each step short for the server.
const SCAN_COUNT: &str = "1000";
/// Events (messages, errors, connects) the client buffers for the link thread before it counts
/// a lag.
const EVENT_CAPACITY: usize = 1024;
/// How often the link compares its view of each client with the client's own state (see
/// `Worker::reconcile`).
const RECONCILE_EVERY: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// The URL

/// A Redis server's address: `redis://[user:password@]host[:port][/db]`, or `rediss://…` for
/// TLS.
///
/// The password is kept but never shown: [`fmt::Display`] and [`fmt::Debug`] write `***` in
/// its place, so a URL can be logged as it is.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    tls: bool,
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    database: Option<u8>,
}

/// Why a Redis URL was refused. Its message never contains the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError(String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid Redis URL: {} (expected redis://[user:password@]host[:port][/db], or \
             rediss://… for TLS)",
            self.0
        )
    }
}

impl std::error::Error for UrlError {}

impl RedisUrl {
    /// The port when the URL names none.
    pub const DEFAULT_PORT: u16 = 6379;

    /// Parses `redis://[user:password@]host[:port][/db]`, or the same with `rediss://` for
    /// TLS: a host name, an IPv4 address or an IPv6 address in brackets; the port defaults to
    /// 6379; `db` is 0 to 255; user and password may be percent-encoded. Anything else is
    /// refused: other schemes (`redis-cluster://`, `unix://`), query strings, fragments.
    ///
    /// A `rediss://` server's certificate must name the host as written here (a host name or
    /// an IP address), and be signed by a root the system trusts or by a CA given to
    /// [`RedisLinkConfig::tls_ca_pem`].
    pub fn parse(url: &str) -> Result<RedisUrl, UrlError> {
        let fail = |why: &str| Err(UrlError(why.to_owned()));
        let (tls, rest) = match (url.strip_prefix("redis://"), url.strip_prefix("rediss://")) {
            (Some(rest), _) => (false, rest),
            (None, Some(rest)) => (true, rest),
            (None, None) => {
                let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
                return match scheme {
                    "" => fail("no scheme"),
                    _ => Err(UrlError(format!(
                        "scheme {scheme}:// is not supported, only redis:// and rediss://"
                    ))),
                };
            }
        };
        if rest.contains(['?', '#']) {
            return fail("query strings and fragments are not supported");
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((credentials, host_port)) => (Some(credentials), host_port),
            None => (None, authority),
        };
        let (username, password) = match credentials {
            None => (None, None),
            Some(credentials) => {
                let (user, password) = match credentials.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (credentials, None),
                };
                let user = percent_decode(user).ok_or_else(|| UrlError("bad user name".into()))?;
                let password = match password {
                    Some(password) => Some(
                        percent_decode(password)
                            .ok_or_else(|| UrlError("bad percent-encoding in password".into()))?,
                    ),
                    None => None,
                };
                ((!user.is_empty()).then_some(user), password)
            }
        };
        let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
            let Some((host, after)) = bracketed.split_once(']') else {
                return fail("unclosed '[' in the host");
            };
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return fail("garbage after the IPv6 address"),
                },
            };
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return fail("not an IPv6 address in brackets");
            }
            (host, port)
        } else {
            match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            }
        };
        if host.is_empty() {
            return fail("no host");
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        {
            return fail("bad character in the host");
        }
        let port = match port {
            None => Self::DEFAULT_PORT,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port != 0 && text.bytes().all(|b| b.is_ascii_digit()) => port,
                _ => return fail("the port is not a number from 1 to 65535"),
            },
        };
        let database = match path {
            "" => None,
            db => match db.parse::<u8>() {
                Ok(db) if db.to_string() == path => Some(db),
                _ => return fail("the database is not a number from 0 to 255"),
            },
        };
        Ok(RedisUrl {
            tls,
            host: host.to_owned(),
            port,
            username,
            password,
            database,
        })
    }

    /// The host name or address (an IPv6 address without its brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database selected after connecting, if the URL names one.
    pub fn database(&self) -> Option<u8> {
        self.database
    }

    /// The ACL user name, if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// Whether the URL carries a password (which is never shown).
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// Whether the link reaches this server over TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }
}

impl FromStr for RedisUrl {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<RedisUrl, UrlError> {
        RedisUrl::parse(url)
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.tls { "rediss://" } else { "redis://" })?;
        match (&self.username, &self.password) {
            (None, None) => {}
            (Some(user), None) => write!(f, "{user}@")?,
            (user, Some(_)) => write!(f, "{}:***@", user.as_deref().unwrap_or(""))?,
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{}:{}", self.host, self.port)?;
        }
        if let Some(db) = self.database {
            write!(f, "/{db}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// Decodes `%XX` escapes; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------------------------
// A cluster's seeds

/// The nodes a link to a Redis Cluster first asks for the cluster's layout (`CLUSTER SLOTS`);
/// it finds the other masters there, so one reachable seed is enough. What
/// `--redis-cluster host:port,host:port` names.
///
/// Every seed shares the first one's scheme and credentials: one link has one TLS setting and
/// one user for every node. A cluster has only database 0, so no seed names another.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSeeds(Vec<RedisUrl>);

/// Why a list of cluster seeds was refused. Its message never contains a password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeedsError {
    /// The list names no seed.
    Empty,
    /// Seed `position` (counted from 1) is blank: two commas in a row, or one at an end.
    Blank {
        /// Its place in the list, from 1.
        position: usize,
    },
    /// Seed `position` is not an address.
    Url {
        /// Its place in the list, from 1.
        position: usize,
        /// What is wrong with it.
        error: UrlError,
    },
    /// Seed `position` names a database other than 0, which a Redis Cluster does not have.
    Database {
        /// Its place in the list, from 1.
        position: usize,
    },
    /// Seed `position` names another scheme, user or password than the first seed.
    Mismatch {
        /// Its place in the list, from 1.
        position: usize,
    },
}

impl fmt::Display for SeedsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid Redis Cluster seeds (expected host:port,host:port,…): ")?;
        match self {
            SeedsError::Empty => f.write_str("no seed"),
            SeedsError::Blank { position } => write!(f, "seed {position} is empty"),
            SeedsError::Url { position, error } => write!(f, "seed {position}: {error}"),
            SeedsError::Database { position } => write!(
                f,
                "seed {position} names a database; a Redis Cluster has only database 0"
            ),
            SeedsError::Mismatch { position } => write!(
                f,
                "seed {position} names another scheme, user or password than the first seed; \
                 one link reaches every node the same way"
            ),
        }
    }
}

impl std::error::Error for SeedsError {}

impl ClusterSeeds {
    /// Parses a comma-separated list of seeds, each `host:port` (`[v6]:port`; the port
    /// defaults to 6379) or a whole `redis://` / `rediss://` URL. A seed without a scheme
    /// takes the first seed's scheme and credentials, so
    /// `rediss://:password@10.0.0.1:7000,10.0.0.2:7000` reaches both over TLS with that
    /// password. Blanks around a seed are ignored.
    pub fn parse(list: &str) -> Result<ClusterSeeds, SeedsError> {
        if list.trim().is_empty() {
            return Err(SeedsError::Empty);
        }
        let mut seeds: Vec<RedisUrl> = Vec::new();
        for (index, seed) in list.split(',').enumerate() {
            let position = index + 1;
            let seed = seed.trim();
            if seed.is_empty() {
                return Err(SeedsError::Blank { position });
            }
            let url = if seed.contains("://") {
                RedisUrl::parse(seed)
            } else {
                RedisUrl::parse(&format!("redis://{seed}")).map(|mut url| {
                    if let Some(first) = seeds.first() {
                        url.tls = first.tls;
                        if url.username.is_none() && url.password.is_none() {
                            url.username.clone_from(&first.username);
                            url.password.clone_from(&first.password);
                        }
                    }
                    url
                })
            };
            seeds.push(url.map_err(|error| SeedsError::Url { position, error })?);
        }
        ClusterSeeds::new(seeds)
    }

    /// The seeds given, checked: at least one, none naming a database other than 0, all with
    /// the first one's scheme and credentials.
    pub fn new(seeds: Vec<RedisUrl>) -> Result<ClusterSeeds, SeedsError> {
        let Some(first) = seeds.first() else {
            return Err(SeedsError::Empty);
        };
        for (index, seed) in seeds.iter().enumerate() {
            let position = index + 1;
            if seed.database.is_some_and(|db| db != 0) {
                return Err(SeedsError::Database { position });
            }
            if (seed.tls, &seed.username, &seed.password)
                != (first.tls, &first.username, &first.password)
            {
                return Err(SeedsError::Mismatch { position });
            }
        }
        Ok(ClusterSeeds(seeds))
    }

    /// The seeds, in the order given.
    pub fn seeds(&self) -> &[RedisUrl] {
        &self.0
    }

    /// The first seed: its scheme and credentials serve every node.
    pub fn first(&self) -> &RedisUrl {
        // `new` refuses an empty list.
        &self.0[0]
    }
}

impl FromStr for ClusterSeeds {
    type Err = SeedsError;

    fn from_str(list: &str) -> Result<ClusterSeeds, SeedsError> {
        ClusterSeeds::parse(list)
    }
}

impl fmt::Display for ClusterSeeds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, seed) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{seed}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ClusterSeeds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterSeeds({self})")
    }
}

// ---------------------------------------------------------------------------------------------
// TLS

/// Certificate authorities a `rediss://` link trusts besides the system's roots: a private
/// CA's certificate, say. Empty by default (the system's roots only).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsCa(Vec<CertificateDer<'static>>);

/// Why certificates for TLS were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// The PEM text is malformed.
    Pem(String),
    /// The PEM text holds no `CERTIFICATE` section.
    NoCertificate,
    /// A certificate can't serve as a root (it is not a well-formed X.509 certificate).
    Certificate(String),
    /// The TLS client could not be set up.
    Setup(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { path, error } => {
                write!(f, "cannot read the CA file {}: {error}", path.display())
            }
            TlsError::Pem(error) => write!(f, "malformed PEM: {error}"),
            TlsError::NoCertificate => f.write_str("the PEM holds no CERTIFICATE"),
            TlsError::Certificate(error) => write!(f, "a CA certificate can't be used: {error}"),
            TlsError::Setup(error) => write!(f, "TLS setup failed: {error}"),
        }
    }
}

impl std::error::Error for TlsError {}

impl TlsCa {
    /// Every `CERTIFICATE` in `pem` (other sections, keys included, are skipped); each is
    /// checked to be usable as a root.
    pub fn from_pem(pem: &[u8]) -> Result<TlsCa, TlsError> {
        let mut certificates = Vec::new();
        for certificate in CertificateDer::pem_slice_iter(pem) {
            let certificate = certificate.map_err(|error| TlsError::Pem(error.to_string()))?;
            rustls::RootCertStore::empty()
                .add(certificate.clone())
                .map_err(|error| TlsError::Certificate(error.to_string()))?;
            certificates.push(certificate);
        }
        if certificates.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        Ok(TlsCa(certificates))
    }

    /// [`TlsCa::from_pem`] with the PEM file at `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<TlsCa, TlsError> {
        let path = path.as_ref();
        let pem = std::fs::read(path).map_err(|error| TlsError::Read {
            path: path.to_owned(),
            error: error.to_string(),
        })?;
        TlsCa::from_pem(&pem)
    }

    /// A TLS client (TLS 1.2 and 1.3 through rustls with ring) trusting the system's roots
    /// (those that load: a broken system store is logged, not fatal, as a private CA may be all
    /// that is needed) and these certificates; `who` names its user in the log. The `rediss://`
    /// link's, and an `https://` backend hook endpoint's.
    pub(crate) fn client_config(&self, who: &str) -> Result<rustls::ClientConfig, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        let system = rustls_native_certs::load_native_certs();
        for error in &system.errors {
            tracing::debug!("{who}: a system root certificate did not load: {error}");
        }
        let (_, ignored) = roots.add_parsable_certificates(system.certs);
        if ignored > 0 {
            tracing::debug!("{who}: {ignored} system root certificates ignored");
        }
        for certificate in &self.0 {
            roots
                .add(certificate.clone())
                .map_err(|error| TlsError::Certificate(error.to_string()))?;
        }
        if roots.is_empty() {
            tracing::warn!(
                "{who}: no root certificate to check the server's against (no system roots, no \
                 CA given); TLS connections will fail"
            );
        }
        // ring, deprecated by rustls for lacking post-quantum key exchange, rather than
        // aws-lc-rs (a large C build): for links to Redis and to hook backends that is a fair
        // trade, and fred is built for it.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Setup(error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }

    /// How many certificates.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// None (the system's roots only).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for TlsCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsCa({} certificates)", self.0.len())
    }
}

/// The TLS client for `rediss://` ([`TlsCa::client_config`] with the system's roots and
/// `extra`).
fn tls_connector(extra: &TlsCa) -> Result<TlsConfig, TlsError> {
    let config = extra.client_config("redis link")?;
    Ok(TlsConfig {
        connector: TlsConnector::from(config),
        // A cluster's nodes are checked against the names `CLUSTER SLOTS` gives them (their
        // IP addresses, or the host names they announce).
        hostnames: TlsHostMapping::None,
    })
}

// ---------------------------------------------------------------------------------------------
// The configuration

/// How the link waits between attempts to reach Redis: `min`, doubling each failed attempt up
/// to `max`, forever, with up to `min` of random jitter (so many processes do not all come
/// back at once). A successful connection starts again from `min`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub min: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    fn policy(&self) -> ReconnectPolicy {
        let min = millis(self.min).max(1);
        let max = millis(self.max).max(min);
        let mut policy = ReconnectPolicy::new_exponential(0, min, max, 2);
        policy.set_jitter(min);
        policy
    }
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// What [`RedisLink::start`] needs. Its `Debug` never shows the password.
#[derive(Clone, Debug)]
pub struct RedisLinkConfig {
    /// The server; for a cluster, the first seed (what [`RedisLink::url`] shows).
    pub url: RedisUrl,
    /// `Some` for a Redis Cluster, reached through these seeds with the first one's scheme and
    /// credentials (`url` is then not used to connect); `None` for one server at `url`.
    pub cluster: Option<ClusterSeeds>,
    /// For `rediss://`: the certificate authorities trusted besides the system's roots.
    pub tls_ca: TlsCa,
    /// The wait between attempts to reconnect.
    pub backoff: Backoff,
    /// Publishes waiting for the link thread, at most (default 10,000).
    pub max_queued: usize,
    /// Bytes of channel names and payloads queued or in flight, at most (default 64 MiB).
    pub max_queued_bytes: usize,
    /// Publishes handed to the client and not yet acknowledged, at most (default 1024).
    pub max_in_flight: usize,
    /// The longest payload received that is handed on; longer ones are dropped and counted
    /// (default 16 MiB).
    pub max_incoming_bytes: usize,
    /// How long a command (a publish, a `PUBSUB NUMSUB`) may wait for its answer, and a
    /// connection attempt for its connection (default 5 s).
    pub command_timeout: Duration,
}

impl RedisLinkConfig {
    /// The defaults, for the one server at `url`.
    pub fn new(url: RedisUrl) -> RedisLinkConfig {
        RedisLinkConfig {
            url,
            cluster: None,
            tls_ca: TlsCa::default(),
            backoff: Backoff::default(),
            max_queued: 10_000,
            max_queued_bytes: 64 << 20,
            max_in_flight: 1024,
            max_incoming_bytes: 16 << 20,
            command_timeout: Duration::from_secs(5),
        }
    }

    /// The defaults, for the Redis Cluster these seeds belong to.
    pub fn cluster(seeds: ClusterSeeds) -> RedisLinkConfig {
        let mut config = RedisLinkConfig::new(seeds.first().clone());
        config.cluster = Some(seeds);
        config
    }

    /// Trusts, besides the system's roots, the CA certificates in `pem` (every `CERTIFICATE`
    /// section of it) for `rediss://`; added to those already given.
    pub fn tls_ca_pem(mut self, pem: &[u8]) -> Result<RedisLinkConfig, TlsError> {
        self.tls_ca.0.extend(TlsCa::from_pem(pem)?.0);
        Ok(self)
    }

    /// [`RedisLinkConfig::tls_ca_pem`] with the PEM file at `path` (what a `--redis-ca`
    /// flag would name).
    pub fn tls_ca_file(mut self, path: impl AsRef<Path>) -> Result<RedisLinkConfig, TlsError> {
        self.tls_ca.0.extend(TlsCa::from_file(path)?.0);
        Ok(self)
    }

    /// Whether the link is to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// The server or the seeds, as they may be logged (passwords shown as `***`).
    fn target(&self) -> String {
        match &self.cluster {
            Some(seeds) => format!("cluster {seeds}"),
            None => self.url.to_string(),
        }
    }

    /// The URL whose scheme and credentials are used.
    fn access(&self) -> &RedisUrl {
        self.cluster.as_ref().map_or(&self.url, ClusterSeeds::first)
    }

    fn fred_config(&self, tls: Option<TlsConfig>) -> Config {
        let access = self.access();
        let (server, database) = match &self.cluster {
            Some(seeds) => {
                let hosts = seeds
                    .seeds()
                    .iter()
                    .map(|seed| (seed.host.as_str(), seed.port));
                (ServerConfig::new_clustered(hosts.collect()), None)
            }
            None => (
                ServerConfig::new_centralized(self.url.host.as_str(), self.url.port),
                self.url.database,
            ),
        };
        Config {
            // The reconnect policy applies to the first connection too: Redis down at start is
            // an outage like any other.
            fail_fast: false,
            server,
            username: access.username.clone(),
            password: access.password.clone(),
            database,
            tls,
            ..Config::default()
        }
    }

    /// The TLS client, for a `rediss://` target only.
    fn tls(&self) -> Result<Option<TlsConfig>, TlsError> {
        if self.access().tls {
            tls_connector(&self.tls_ca).map(Some)
        } else {
            Ok(None)
        }
    }

    fn builder(&self, tls: Option<TlsConfig>) -> Builder {
        let mut builder = Builder::from_config(self.fred_config(tls));
        builder.set_policy(self.backoff.policy());
        let timeout = self.command_timeout;
        builder.with_connection_config(|connection| {
            connection.connection_timeout = timeout;
            connection.internal_command_timeout = timeout;
            connection.tcp.nodelay = Some(true);
            connection.tcp.keepalive = Some(
                socket2::TcpKeepalive::new()
                    .with_time(Duration::from_secs(30))
                    .with_interval(Duration::from_secs(10)),
            );
            // A command unanswered this long means a dead connection (a partition, a frozen
            // server): close it and reconnect.
            connection.unresponsive.max_timeout = Some(timeout * 2);
            connection.unresponsive.interval = Duration::from_secs(1);
        });
        builder.with_performance_config(|performance| {
            performance.default_command_timeout = timeout;
            performance.broadcast_channel_capacity = EVENT_CAPACITY;
        });
        builder
    }
}

// ---------------------------------------------------------------------------------------------
// The public handle

/// Which kind of subscription a message came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IncomingKind {
    /// A channel subscribed with [`RedisLink::subscribe`] (published with `PUBLISH`).
    Channel,
    /// A pattern subscribed with [`RedisLink::psubscribe`] (published with `PUBLISH`);
    /// [`Incoming::pattern`] names it.
    Pattern,
    /// A shard channel subscribed with [`RedisLink::ssubscribe`] (published with `SPUBLISH`).
    /// Redis keeps shard channels apart from classic ones: `PUBLISH x` never reaches an
    /// `SSUBSCRIBE x`, nor `SPUBLISH x` a `SUBSCRIBE x`.
    Sharded,
}

/// A message from Redis, as the subscriber connection received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The channel it was published on.
    pub channel: String,
    /// For a message received through a pattern subscription, the pattern. The client does
    /// not say which pattern a `pmessage` came through, so the link names the first of its
    /// patterns (in byte order) that matches the channel; when several match, Redis sends one
    /// copy per pattern and each copy names that first one.
    pub pattern: Option<String>,
    /// The payload, as published.
    pub payload: Bytes,
    /// Which kind of subscription it came through.
    pub kind: IncomingKind,
}

/// Why a publish was not queued. The message is dropped and counted in `publish_dropped`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// The queue is at its bound (messages or bytes): drop-newest.
    Full,
    /// The link was stopped.
    Stopped,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PublishError::Full => "the Redis publish queue is full; the message was dropped",
            PublishError::Stopped => "the Redis link is stopped; the message was dropped",
        })
    }
}

impl std::error::Error for PublishError {}

/// Why a command to Redis has no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// The link is not connected now (it answers at once rather than wait for an outage).
    Disconnected,
    /// Too many requests wait for the link thread.
    Overloaded,
    /// Redis did not answer within the command timeout.
    Timeout,
    /// The link was stopped.
    Stopped,
    /// Redis answered with an error, or with something that is not the expected answer.
    Redis(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Disconnected => f.write_str("the Redis link is not connected"),
            CommandError::Overloaded => f.write_str("too many Redis requests are waiting"),
            CommandError::Timeout => f.write_str("Redis did not answer in time"),
            CommandError::Stopped => f.write_str("the Redis link is stopped"),
            CommandError::Redis(error) => write!(f, "Redis: {error}"),
        }
    }
}

impl std::error::Error for CommandError {}

/// The link's counts, read without locking (each is an atomic; they are not a snapshot of
/// one instant).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkCounts {
    /// Both connections are up.
    pub connected: bool,
    /// Times the link came back after an outage (connections made after the first).
    pub reconnects: u64,
    /// Publishes Redis acknowledged.
    pub published: u64,
    /// Publishes refused: the queue was full, or the link stopped.
    pub publish_dropped: u64,
    /// Publishes handed to Redis that failed or were not acknowledged in time.
    pub publish_failed: u64,
    /// Messages received and handed to the callback.
    pub received: u64,
    /// Messages received and dropped: not a byte string, too long, stale, or missed because
    /// the link thread fell behind.
    pub received_dropped: u64,
    /// Publishes queued now, not yet handed to Redis.
    pub queued: u64,
    /// Bytes of channel names and payloads queued or in flight now.
    pub queued_bytes: u64,
}

/// The answer to a command ([`RedisLink::server_count`], [`RedisLink::exists`]): a future
/// any runtime can await (a shard's included); it resolves on the link thread's answer.
#[must_use = "a future does nothing unless awaited"]
#[derive(Debug)]
pub struct CommandAnswer<T>(oneshot::Receiver<Result<T, CommandError>>);

/// The answer to [`RedisLink::server_count`].
pub type ServerCount = CommandAnswer<u64>;

impl<T> Future for CommandAnswer<T> {
    type Output = Result<T, CommandError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(CommandError::Stopped)))
    }
}

/// The process's link to Redis. Cheap to clone (clones share one link), `Send + Sync`; every
/// call returns at once, from any thread. The link thread stops on [`RedisLink::stop`] or when
/// the last clone is dropped (a clone held by the `on_message` callback itself counts: such a
/// link ends only on `stop`).
#[derive(Clone)]
pub struct RedisLink {
    handle: Arc<Handle>,
}

/// What the callers share; dropping the last one stops the link thread.
struct Handle {
    shared: Arc<Shared>,
    publishes: mpsc::Sender<Publish>,
    requests: mpsc::Sender<Request>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
    url: RedisUrl,
}

/// What the callers and the link thread share.
struct Shared {
    config: RedisLinkConfig,
    /// The server or the cluster's seeds, as logged.
    target: String,
    counts: Counts,
    /// Bytes of publishes queued or in flight.
    queued_bytes: AtomicUsize,
    stopped: AtomicBool,
    stop: Notify,
    wanted: Mutex<Wanted>,
    /// Bumped on every change of `wanted`.
    wanted_generation: AtomicU64,
    wanted_changed: Notify,
}

#[derive(Default)]
struct Counts {
    connected: AtomicBool,
    reconnects: AtomicU64,
    published: AtomicU64,
    publish_dropped: AtomicU64,
    publish_failed: AtomicU64,
    received: AtomicU64,
    received_dropped: AtomicU64,
}

/// The three kinds of subscription, each a set of names of its own in Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Sub {
    Channel,
    Pattern,
    Shard,
}

impl Sub {
    const ALL: [Sub; 3] = [Sub::Channel, Sub::Pattern, Sub::Shard];
}

/// Names, one set per kind of subscription.
#[derive(Clone, Default, PartialEq, Eq)]
struct Subscriptions([BTreeSet<String>; 3]);

impl Subscriptions {
    fn of(&self, sub: Sub) -> &BTreeSet<String> {
        &self.0[sub as usize]
    }

    fn of_mut(&mut self, sub: Sub) -> &mut BTreeSet<String> {
        &mut self.0[sub as usize]
    }
}

/// The subscriptions asked for (what every new subscriber connection issues), and what changed
/// since the link thread last looked.
#[derive(Default)]
struct Wanted {
    subscriptions: Subscriptions,
    /// Names added or removed since the last look, to compare with what Redis was told: the
    /// link thread's work is the size of the change, not of the whole set.
    changed: BTreeSet<(Sub, String)>,
}

impl Wanted {
    /// Whether anything changed.
    fn add(&mut self, sub: Sub, names: impl IntoIterator<Item = String>) -> bool {
        let mut changed = false;
        for name in names {
            if self.subscriptions.of_mut(sub).insert(name.clone()) {
                self.changed.insert((sub, name));
                changed = true;
            }
        }
        changed
    }

    /// Whether anything changed.
    fn remove(&mut self, sub: Sub, names: impl IntoIterator<Item = String>) -> bool {
        let mut changed = false;
        for name in names {
            if self.subscriptions.of_mut(sub).remove(&name) {
                self.changed.insert((sub, name));
                changed = true;
            }
        }
        changed
    }
}

struct Publish {
    /// The channel, or the stream's key.
    channel: String,
    size: usize,
    body: Body,
}

/// What a queued [`Publish`] sends.
enum Body {
    /// `PUBLISH channel payload`.
    Channel(Bytes),
    /// `SPUBLISH channel payload`.
    Sharded(Bytes),
    /// `name key args…`: a write as frequent as publishes (`XADD`, `HSET`, …).
    Command {
        name: &'static str,
        args: Vec<Value>,
    },
}

struct NumSub {
    channel: String,
    /// `PUBSUB SHARDNUMSUB` rather than `PUBSUB NUMSUB`.
    sharded: bool,
    answer: oneshot::Sender<Result<u64, CommandError>>,
}

/// A command for the link thread's command connection.
enum Request {
    NumSub(NumSub),
    /// `name key args…` (`SET … EX`, `SET … PX`, `DEL`);
    /// nobody waits for it.
    Write {
        name: &'static str,
        key: String,
        args: Vec<Value>,
    },
    /// `EXISTS key`, answered with whether it does.
    Exists {
        key: String,
        answer: oneshot::Sender<Result<bool, CommandError>>,
    },
    /// `SET key value NX PX millis`, answered with whether it was set.
    SetNxPx {
        key: String,
        value: String,
        millis: u64,
        answer: oneshot::Sender<Result<bool, CommandError>>,
    },
    /// `GET key`, `GETDEL key` or `HGET key field`, answered with the text (none when it is
    /// not there).
    Text {
        name: &'static str,
        args: Vec<String>,
        answer: oneshot::Sender<Result<Option<String>, CommandError>>,
    },
    /// `SCAN … MATCH pattern` (every master of a cluster) then `MGET`, answered with at most
    /// `limit` keys and their string values.
    ScanValues {
        pattern: String,
        limit: usize,
        answer: oneshot::Sender<Result<Vec<(String, String)>, CommandError>>,
    },
    /// `XREVRANGE` pages back from the newest entry to the one whose `field` is `value`,
    /// answered with the entries after it (none when it is not found within `limit`).
    StreamAfter {
        key: String,
        field: String,
        value: Bytes,
        limit: usize,
        answer: oneshot::Sender<Result<Option<Vec<StreamEntry>>, CommandError>>,
    },
}

/// One entry of a Redis stream: its id and its fields, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// The entry id (`<ms>-<seq>`).
    pub id: String,
    /// Field names and values.
    pub fields: Vec<(String, Bytes)>,
}

impl StreamEntry {
    /// The value of field `name`, if the entry has it.
    pub fn field(&self, name: &str) -> Option<&Bytes> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value)
    }
}

impl RedisLink {
    /// Starts the link thread and returns at once, whether Redis is up or not; the thread
    /// connects (and keeps retrying) on its own. `on_message` runs on the link thread for every
    /// message received; it should hand the message on (to the shards) and return.
    ///
    /// Fails only if the thread or its runtime can't be created.
    pub fn start(
        config: RedisLinkConfig,
        on_message: impl Fn(Incoming) + Send + 'static,
    ) -> std::io::Result<RedisLink> {
        let tls = config.tls().map_err(std::io::Error::other)?;
        let publisher = config
            .builder(tls.clone())
            .build()
            .map_err(std::io::Error::other)?;
        let subscriber = config.builder(tls).build().map_err(std::io::Error::other)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (publishes, publish_rx) = mpsc::channel(config.max_queued.max(1));
        let (requests, request_rx) = mpsc::channel(MAX_QUEUED_REQUESTS);
        let url = config.url.clone();
        let shared = Arc::new(Shared {
            target: config.target(),
            config,
            counts: Counts::default(),
            queued_bytes: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            stop: Notify::new(),
            wanted: Mutex::new(Wanted::default()),
            wanted_generation: AtomicU64::new(0),
            wanted_changed: Notify::new(),
        });
        let worker = Worker {
            shared: shared.clone(),
            publisher,
            subscriber,
            on_message: Box::new(on_message),
            state: LinkState::default(),
            patterns: (u64::MAX, Vec::new()),
        };
        let thread = std::thread::Builder::new()
            .name("ringcast-redis".into())
            .spawn(move || runtime.block_on(worker.run(publish_rx, request_rx)))?;
        let thread_id = thread.thread().id();
        Ok(RedisLink {
            handle: Arc::new(Handle {
                shared,
                publishes,
                requests,
                thread: Mutex::new(Some(thread)),
                thread_id,
                url,
            }),
        })
    }

    /// Queues `PUBLISH channel payload`; never blocks. A publish the queue can't take now is
    /// dropped (drop-newest), counted in `publish_dropped`, and returned as an error; queued
    /// ones go out in the order they were queued, once the link is connected.
    pub fn publish(&self, channel: impl Into<String>, payload: Bytes) -> Result<(), PublishError> {
        self.queue(channel.into(), Body::Channel(payload))
    }

    /// Queues `SPUBLISH channel payload` (Redis 7 sharded pub/sub; on a cluster, sent to the
    /// master owning the channel's hash slot); never blocks. The same queue, bounds, order and
    /// counts as [`RedisLink::publish`].
    pub fn spublish(&self, channel: impl Into<String>, payload: Bytes) -> Result<(), PublishError> {
        self.queue(channel.into(), Body::Sharded(payload))
    }

    /// Queues `XADD key MAXLEN ~ max_len * field value…`: appends an entry to the stream at
    /// `key` (on a cluster, at the master owning the key's slot), which Redis trims to about
    /// `max_len` entries (whole macro nodes at a time, so a few more may stay). The same
    /// queue, bounds, order and counts as [`RedisLink::publish`]: a log written as often as
    /// broadcasts are published.
    pub fn append(
        &self,
        key: impl Into<String>,
        max_len: usize,
        fields: Vec<(&'static str, Bytes)>,
    ) -> Result<(), PublishError> {
        let mut args: Vec<Value> = Vec::with_capacity(4 + 2 * fields.len());
        args.extend([
            "MAXLEN".into(),
            "~".into(),
            max_len.max(1).to_string().into(),
        ]);
        args.push("*".into());
        for (name, value) in fields {
            args.push(name.into());
            args.push(value.into());
        }
        self.queue_command("XADD", key.into(), args)
    }

    /// Queues `HSET key field value` like a publish ([`RedisLink::append`]).
    pub fn hset(
        &self,
        key: impl Into<String>,
        field: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), PublishError> {
        let args = vec![field.into().into(), value.into().into()];
        self.queue_command("HSET", key.into(), args)
    }

    /// Queues `HDEL key field` like a publish ([`RedisLink::append`]).
    pub fn hdel(
        &self,
        key: impl Into<String>,
        field: impl Into<String>,
    ) -> Result<(), PublishError> {
        self.queue_command("HDEL", key.into(), vec![field.into().into()])
    }

    /// Queues `PEXPIRE key millis` like a publish ([`RedisLink::append`]).
    pub fn pexpire(&self, key: impl Into<String>, millis: u64) -> Result<(), PublishError> {
        let args = vec![millis.max(1).to_string().into()];
        self.queue_command("PEXPIRE", key.into(), args)
    }

    /// Queues `SET key value PX millis` like a publish ([`RedisLink::append`]): unlike
    /// [`RedisLink::set_px`], kept while the link is down, and bounded with the publishes.
    pub fn queue_set_px(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
        millis: u64,
    ) -> Result<(), PublishError> {
        let args = expiring(value.into(), "PX", millis);
        self.queue_command("SET", key.into(), args)
    }

    /// Queues the write `name key args…` with the publishes.
    fn queue_command(
        &self,
        name: &'static str,
        key: String,
        args: Vec<Value>,
    ) -> Result<(), PublishError> {
        self.queue(key, Body::Command { name, args })
    }

    fn queue(&self, channel: String, body: Body) -> Result<(), PublishError> {
        let shared = &self.handle.shared;
        let refuse = |error| {
            shared
                .counts
                .publish_dropped
                .fetch_add(1, Ordering::Relaxed);
            Err(error)
        };
        if shared.stopped.load(Ordering::Acquire) {
            return refuse(PublishError::Stopped);
        }
        let size = channel.len()
            + match &body {
                Body::Channel(payload) | Body::Sharded(payload) => payload.len(),
                Body::Command { args, .. } => args
                    .iter()
                    .map(|arg| arg.as_bytes().map_or(8, <[u8]>::len))
                    .sum(),
            };
        let before = shared.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if before.saturating_add(size) > shared.config.max_queued_bytes {
            shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            return refuse(PublishError::Full);
        }
        let publish = Publish {
            channel,
            size,
            body,
        };
        match self.handle.publishes.try_send(publish) {
            Ok(()) => Ok(()),
            Err(error) => {
                shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                match error {
                    mpsc::error::TrySendError::Full(_) => refuse(PublishError::Full),
                    mpsc::error::TrySendError::Closed(_) => refuse(PublishError::Stopped),
                }
            }
        }
    }

    /// Subscribes to `channels` (`SUBSCRIBE`), now if connected and again on every new
    /// subscriber connection.
    pub fn subscribe<S: Into<String>>(&self, channels: impl IntoIterator<Item = S>) {
        self.change(|wanted| wanted.add(Sub::Channel, channels.into_iter().map(Into::into)));
    }

    /// Subscribes to `patterns` (`PSUBSCRIBE`, Redis glob patterns), now if connected and
    /// again on every new subscriber connection.
    pub fn psubscribe<S: Into<String>>(&self, patterns: impl IntoIterator<Item = S>) {
        self.change(|wanted| wanted.add(Sub::Pattern, patterns.into_iter().map(Into::into)));
    }

    /// Subscribes to the shard channels `channels` (`SSUBSCRIBE`, Redis 7; on a cluster, at
    /// the master owning each channel's hash slot), now if connected and again on every new
    /// subscriber connection. Their messages come with [`IncomingKind::Sharded`].
    ///
    /// Cheap to call often (a room appearing): calls only edit the wanted set, and the link
    /// thread issues whatever changed meanwhile in one pass.
    pub fn ssubscribe<S: Into<String>>(&self, channels: impl IntoIterator<Item = S>) {
        self.change(|wanted| wanted.add(Sub::Shard, channels.into_iter().map(Into::into)));
    }

    /// Forgets `channels` (`UNSUBSCRIBE`).
    pub fn unsubscribe<S: Into<String>>(&self, channels: impl IntoIterator<Item = S>) {
        self.change(|wanted| wanted.remove(Sub::Channel, channels.into_iter().map(Into::into)));
    }

    /// Forgets `patterns` (`PUNSUBSCRIBE`).
    pub fn punsubscribe<S: Into<String>>(&self, patterns: impl IntoIterator<Item = S>) {
        self.change(|wanted| wanted.remove(Sub::Pattern, patterns.into_iter().map(Into::into)));
    }

    /// Forgets the shard channels `channels` (`SUNSUBSCRIBE`). A channel subscribed and
    /// forgotten again before the link thread looked is never sent to Redis.
    pub fn sunsubscribe<S: Into<String>>(&self, channels: impl IntoIterator<Item = S>) {
        self.change(|wanted| wanted.remove(Sub::Shard, channels.into_iter().map(Into::into)));
    }

    /// Edits the wanted set (the lock is held for the edit only) and wakes the link thread if
    /// anything changed. Many calls before it wakes cost one pass.
    fn change(&self, edit: impl FnOnce(&mut Wanted) -> bool) {
        let shared = &self.handle.shared;
        let mut wanted = lock(&shared.wanted);
        if edit(&mut wanted) {
            shared.wanted_generation.fetch_add(1, Ordering::AcqRel);
            drop(wanted);
            shared.wanted_changed.notify_one();
        }
    }

    /// `PUBSUB NUMSUB channel` on the command connection: how many connections are subscribed
    /// to `channel` (on the classic adapter's request channel, the number of servers); on a
    /// cluster, the sum of every master's answer (each counts only its own subscribers).
    /// Answers [`CommandError::Disconnected`] at once while the link is down, and never waits
    /// longer than the command timeout.
    pub fn server_count(&self, channel: impl Into<String>) -> ServerCount {
        self.ask(channel.into(), false)
    }

    /// `PUBSUB SHARDNUMSUB channel`: how many connections are subscribed to the shard channel
    /// `channel` (on the sharded adapter's main channel, the number of servers); on a cluster,
    /// the sum of every master's answer, as Node's sharded adapter counts (the master owning
    /// the channel's slot has them all; the others answer 0). Same future and errors as
    /// [`RedisLink::server_count`].
    pub fn shard_server_count(&self, channel: impl Into<String>) -> ServerCount {
        self.ask(channel.into(), true)
    }

    fn ask(&self, channel: String, sharded: bool) -> ServerCount {
        let (answer, receiver) = oneshot::channel();
        let request = NumSub {
            channel,
            sharded,
            answer,
        };
        if let Err((Request::NumSub(request), why)) = self.request(Request::NumSub(request)) {
            let _ = request.answer.send(Err(why));
        }
        CommandAnswer(receiver)
    }

    /// `SET key value EX secs` on the command connection (on a cluster, at the master owning
    /// the key's slot); never blocks, and nobody waits for Redis's answer (a failure is logged
    /// at debug). Refused at once, and not retried later, while the link is down
    /// ([`CommandError::Disconnected`]), when too many commands wait
    /// ([`CommandError::Overloaded`]) or once stopped.
    pub fn set_ex(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
        secs: u64,
    ) -> Result<(), CommandError> {
        self.write("SET", key.into(), expiring(value.into(), "EX", secs))
    }

    /// `EXISTS key` on the command connection (on a cluster, at the master owning the key's
    /// slot): whether the key is there. The same future and errors as
    /// [`RedisLink::server_count`]: [`CommandError::Disconnected`] at once while the link is
    /// down, never longer than the command timeout.
    pub fn exists(&self, key: impl Into<String>) -> CommandAnswer<bool> {
        let (answer, receiver) = oneshot::channel();
        let request = Request::Exists {
            key: key.into(),
            answer,
        };
        if let Err((Request::Exists { answer, .. }, why)) = self.request(request) {
            let _ = answer.send(Err(why));
        }
        CommandAnswer(receiver)
    }

    /// `DEL key` on the command connection (on a cluster, at the master owning the key's
    /// slot); fire-and-forget with the same refusals as [`RedisLink::set_ex`]. Deleting a key
    /// that is not there is not an error.
    pub fn delete(&self, key: impl Into<String>) -> Result<(), CommandError> {
        self.write("DEL", key.into(), Vec::new())
    }

    /// `SET key value NX PX millis` on the command connection (on a cluster, at the master
    /// owning the key's slot): true when the key was set, false when it was already there
    /// (a claim across the cluster: only one caller gets true). The same future and errors as
    /// [`RedisLink::server_count`]: [`CommandError::Disconnected`] at once while the link is
    /// down, never longer than the command timeout.
    pub fn set_nx_px(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
        millis: u64,
    ) -> CommandAnswer<bool> {
        let (answer, receiver) = oneshot::channel();
        let Some(answer) = self.refuse_while_down(answer) else {
            return CommandAnswer(receiver);
        };
        let request = Request::SetNxPx {
            key: key.into(),
            value: value.into(),
            // `PX 0` is an error in Redis.
            millis: millis.max(1),
            answer,
        };
        if let Err((Request::SetNxPx { answer, .. }, why)) = self.request(request) {
            let _ = answer.send(Err(why));
        }
        CommandAnswer(receiver)
    }

    /// `SET key value PX millis` on the command connection (on a cluster, at the master
    /// owning the key's slot); fire-and-forget with the same refusals as [`RedisLink::set_ex`].
    pub fn set_px(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
        millis: u64,
    ) -> Result<(), CommandError> {
        self.write("SET", key.into(), expiring(value.into(), "PX", millis))
    }

    /// `GET key` on the command connection (on a cluster, at the master owning the key's
    /// slot): its value, `None` when it is not there. A value that is not a string (another
    /// type: Redis's `WRONGTYPE`) or not UTF-8 is an error. The same future and errors as
    /// [`RedisLink::server_count`].
    pub fn get(&self, key: impl Into<String>) -> CommandAnswer<Option<String>> {
        self.text("GET", vec![key.into()])
    }

    /// `GETDEL key` (Redis 6.2+) on the command connection (on a cluster, at the master owning
    /// the key's slot): its value, taken (the key is deleted), `None` when it is not there; a
    /// read only one caller in the cluster gets. Answers and errors as [`RedisLink::get`].
    pub fn getdel(&self, key: impl Into<String>) -> CommandAnswer<Option<String>> {
        self.text("GETDEL", vec![key.into()])
    }

    /// `HGET key field`: the field's value in the hash at `key`, `None` when either is not
    /// there. Answers and errors as [`RedisLink::get`].
    pub fn hget(
        &self,
        key: impl Into<String>,
        field: impl Into<String>,
    ) -> CommandAnswer<Option<String>> {
        self.text("HGET", vec![key.into(), field.into()])
    }

    /// The entries of the stream at `key` after the newest one whose `field` is `value`,
    /// oldest first: `XREVRANGE` pages back from the newest entry until it finds that one;
    /// `None` when it is not there, or not among the newest `limit` entries. Within one
    /// command timeout; errors as [`RedisLink::get`].
    pub fn stream_after(
        &self,
        key: impl Into<String>,
        field: impl Into<String>,
        value: Bytes,
        limit: usize,
    ) -> CommandAnswer<Option<Vec<StreamEntry>>> {
        let (answer, receiver) = oneshot::channel();
        let Some(answer) = self.refuse_while_down(answer) else {
            return CommandAnswer(receiver);
        };
        let request = Request::StreamAfter {
            key: key.into(),
            field: field.into(),
            value,
            limit,
            answer,
        };
        if let Err((Request::StreamAfter { answer, .. }, why)) = self.request(request) {
            let _ = answer.send(Err(why));
        }
        CommandAnswer(receiver)
    }

    /// A command answered with text or nothing (`GET`, `GETDEL`, `HGET`).
    fn text(&self, name: &'static str, args: Vec<String>) -> CommandAnswer<Option<String>> {
        let (answer, receiver) = oneshot::channel();
        let Some(answer) = self.refuse_while_down(answer) else {
            return CommandAnswer(receiver);
        };
        let request = Request::Text { name, args, answer };
        if let Err((Request::Text { answer, .. }, why)) = self.request(request) {
            let _ = answer.send(Err(why));
        }
        CommandAnswer(receiver)
    }

    /// Queues a write nobody waits for (see [`RedisLink::forget`]).
    fn write(&self, name: &'static str, key: String, args: Vec<Value>) -> Result<(), CommandError> {
        self.forget(Request::Write { name, key, args })
    }

    /// Answers [`CommandError::Disconnected`] through `answer` while the link is known down
    /// (and not stopped: a stopped link says so when the request is refused), so the caller
    /// does not wait on a command that can only fail; hands `answer` back otherwise.
    fn refuse_while_down<T>(
        &self,
        answer: oneshot::Sender<Result<T, CommandError>>,
    ) -> Option<oneshot::Sender<Result<T, CommandError>>> {
        let shared = &self.handle.shared;
        if !shared.stopped.load(Ordering::Acquire)
            && !shared.counts.connected.load(Ordering::Relaxed)
        {
            let _ = answer.send(Err(CommandError::Disconnected));
            return None;
        }
        Some(answer)
    }

    /// Every key matching the glob `pattern` (Redis's `MATCH` syntax) holding a string, with
    /// its value, sorted by key: `SCAN 0 MATCH pattern COUNT 1000` until the cursor comes back
    /// to 0 (on a cluster, on every master, since each holds only its own slots' keys), then
    /// `MGET` (on a cluster, per hash slot, at its master). At most `limit` keys are read: the
    /// scan stops once it has found that many. Keys deleted between the scan and the read,
    /// keys of another type, and keys or values that are not UTF-8 are left out.
    ///
    /// The same future and errors as [`RedisLink::server_count`]:
    /// [`CommandError::Disconnected`] at once while the link is down, and the whole scan
    /// within the command timeout ([`CommandError::Timeout`] past it, nothing partial).
    pub fn scan_values(
        &self,
        pattern: impl Into<String>,
        limit: usize,
    ) -> CommandAnswer<Vec<(String, String)>> {
        let (answer, receiver) = oneshot::channel();
        // Checked here too, not only on the link thread: once either connection is known lost,
        // a scan would only fail part way (or after the timeout) on the other.
        let shared = &self.handle.shared;
        if !shared.stopped.load(Ordering::Acquire)
            && !shared.counts.connected.load(Ordering::Relaxed)
        {
            let _ = answer.send(Err(CommandError::Disconnected));
            return CommandAnswer(receiver);
        }
        let request = Request::ScanValues {
            pattern: pattern.into(),
            limit,
            answer,
        };
        if let Err((Request::ScanValues { answer, .. }, why)) = self.request(request) {
            let _ = answer.send(Err(why));
        }
        CommandAnswer(receiver)
    }

    /// Queues a command nobody waits for: refused at once while the link is down (it would
    /// only be dropped on the link's thread), when too many commands wait, or once stopped.
    fn forget(&self, request: Request) -> Result<(), CommandError> {
        if !self.handle.shared.counts.connected.load(Ordering::Relaxed) {
            return Err(CommandError::Disconnected);
        }
        self.request(request).map_err(|(_, why)| why)
    }

    /// Queues a command for the link thread, or hands it back with why not.
    fn request(&self, request: Request) -> Result<(), (Request, CommandError)> {
        self.handle
            .requests
            .try_send(request)
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(request) => (request, CommandError::Overloaded),
                mpsc::error::TrySendError::Closed(request) => (request, CommandError::Stopped),
            })
    }

    /// The link's counts, without locking.
    pub fn counts(&self) -> LinkCounts {
        let shared = &self.handle.shared;
        let counts = &shared.counts;
        let publishes = &self.handle.publishes;
        LinkCounts {
            connected: counts.connected.load(Ordering::Relaxed),
            reconnects: counts.reconnects.load(Ordering::Relaxed),
            published: counts.published.load(Ordering::Relaxed),
            publish_dropped: counts.publish_dropped.load(Ordering::Relaxed),
            publish_failed: counts.publish_failed.load(Ordering::Relaxed),
            received: counts.received.load(Ordering::Relaxed),
            received_dropped: counts.received_dropped.load(Ordering::Relaxed),
            queued: (publishes.max_capacity() - publishes.capacity()) as u64,
            queued_bytes: shared.queued_bytes.load(Ordering::Relaxed) as u64,
        }
    }

    /// The server, as it may be logged (the password is never shown); for a cluster, the
    /// first seed.
    pub fn url(&self) -> &RedisUrl {
        &self.handle.url
    }

    /// Whether the link is to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.handle.shared.config.is_cluster()
    }

    /// Stops the link: later publishes are refused, what is queued is published for up to a
    /// second if connected (the rest is dropped and counted), both connections are closed and
    /// the thread ends; returns once it has (at most about two seconds). Called on the link
    /// thread (from the callback) it only asks. Idempotent; every clone is stopped.
    pub fn stop(&self) {
        self.handle.stop();
    }
}

impl Handle {
    fn stop(&self) {
        self.shared.stopped.store(true, Ordering::Release);
        self.shared.stop.notify_one();
        if std::thread::current().id() == self.thread_id {
            return;
        }
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLink")
            .field("url", &self.handle.url)
            .field("counts", &self.counts())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------
// The link thread

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

type ErrorEvent = Result<(fred::error::Error, Option<Server>), RecvError>;

/// Whether one client reaches every server it needs (one, or every master of a cluster), as
/// its events say.
#[derive(Default)]
struct Reach {
    /// A connection was made since the client last failed to connect as a whole.
    made: bool,
    /// Servers whose connection was lost and not made again.
    lost: BTreeSet<Server>,
}

impl Reach {
    fn up(&self) -> bool {
        self.made && self.lost.is_empty()
    }

    fn error(&mut self, event: &ErrorEvent) {
        match event {
            // A connection lost: that server is down until its next connect event.
            Ok((_, Some(server))) => {
                self.lost.insert(server.clone());
            }
            // The client failed to (re)connect as a whole, or errors were missed.
            Ok((_, None)) | Err(_) => self.made = false,
        }
    }

    fn connect(&mut self, event: &Result<Server, RecvError>) {
        match event {
            Ok(server) => {
                self.lost.remove(server);
            }
            // Connect events were missed: whatever was lost may be back.
            Err(_) => self.lost.clear(),
        }
        self.made = true;
    }

    /// A node left the cluster: it is no longer needed.
    fn cluster_changed(&mut self, event: &Result<Vec<ClusterStateChange>, RecvError>) {
        if let Ok(changes) = event {
            for change in changes {
                if let ClusterStateChange::Remove(server) = change {
                    self.lost.remove(server);
                }
            }
        }
    }
}

/// Whether each client is up, as the client's events say, and what has been logged.
#[derive(Default)]
struct LinkState {
    publisher: Reach,
    subscriber: Reach,
    up: bool,
    ever_up: bool,
    /// The current outage has been logged.
    warned: bool,
    down_since: Option<Instant>,
}

impl LinkState {
    fn side(&mut self, side: Side) -> &mut Reach {
        match side {
            Side::Publisher => &mut self.publisher,
            Side::Subscriber => &mut self.subscriber,
        }
    }
}

#[derive(Clone, Copy)]
enum Side {
    Publisher,
    Subscriber,
}

/// Owned by the link thread.
struct Worker {
    shared: Arc<Shared>,
    publisher: Client,
    subscriber: Client,
    on_message: Box<dyn Fn(Incoming) + Send>,
    state: LinkState,
    /// The patterns subscribed, sorted, and the `wanted_generation` they were read at.
    patterns: (u64, Vec<String>),
}

impl Worker {
    async fn run(
        mut self,
        mut publishes: mpsc::Receiver<Publish>,
        mut requests: mpsc::Receiver<Request>,
    ) {
        let shared = self.shared.clone();
        // Every receiver is taken before connecting, so the first connection's events are seen.
        let mut publisher_errors = self.publisher.error_rx();
        let mut publisher_connects = self.publisher.reconnect_rx();
        let mut publisher_changes = self.publisher.cluster_change_rx();
        let mut subscriber_errors = self.subscriber.error_rx();
        let mut subscriber_connects = self.subscriber.reconnect_rx();
        let mut subscriber_changes = self.subscriber.cluster_change_rx();
        let mut messages = self.subscriber.message_rx();
        let subscriptions = tokio::spawn(keep_subscriptions(
            self.subscriber.clone(),
            shared.clone(),
            self.subscriber.reconnect_rx(),
            self.subscriber.cluster_change_rx(),
        ));
        let mut publisher_task = self.publisher.connect();
        let mut subscriber_task = self.subscriber.connect();
        let mut restart: Option<(Side, tokio::time::Instant)> = None;
        let mut publishing: FuturesUnordered<Task> = FuturesUnordered::new();
        let mut asking: FuturesUnordered<Task> = FuturesUnordered::new();
        let (mut events_open, mut messages_open) = ([true; 6], true);
        let max_in_flight = shared.config.max_in_flight.max(1);
        let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            if shared.stopped.load(Ordering::Acquire) {
                break;
            }
            // Unbiased: a flood of incoming messages must not starve publishes, nor the reverse.
            tokio::select! {
                _ = shared.stop.notified() => break,
                event = publisher_errors.recv(), if events_open[0] => {
                    events_open[0] = self.on_error(Side::Publisher, event);
                }
                event = subscriber_errors.recv(), if events_open[1] => {
                    events_open[1] = self.on_error(Side::Subscriber, event);
                }
                event = publisher_connects.recv(), if events_open[2] => {
                    events_open[2] = self.on_connect(Side::Publisher, event);
                }
                event = subscriber_connects.recv(), if events_open[3] => {
                    events_open[3] = self.on_connect(Side::Subscriber, event);
                }
                event = publisher_changes.recv(), if events_open[4] => {
                    events_open[4] = self.on_cluster_change(Side::Publisher, event);
                }
                event = subscriber_changes.recv(), if events_open[5] => {
                    events_open[5] = self.on_cluster_change(Side::Subscriber, event);
                }
                message = messages.recv(), if messages_open => match message {
                    Ok(message) => self.deliver(message),
                    Err(RecvError::Lagged(missed)) => {
                        shared.counts.received_dropped.fetch_add(missed, Ordering::Relaxed);
                        tracing::warn!(
                            "redis link: {missed} incoming messages dropped, the link thread fell behind"
                        );
                    }
                    Err(RecvError::Closed) => messages_open = false,
                },
                Some(()) = publishing.next(), if !publishing.is_empty() => {}
                Some(()) = asking.next(), if !asking.is_empty() => {}
                _ = reconcile.tick() => self.reconcile(),
                publish = publishes.recv(),
                    if self.state.up && publishing.len() < max_in_flight =>
                {
                    match publish {
                        Some(publish) => publishing.push(self.publish(publish)),
                        None => break,
                    }
                }
                request = requests.recv(), if asking.len() < MAX_REQUESTS_IN_FLIGHT => {
                    match request {
                        Some(request) => {
                            if let Some(task) = self.command(request) {
                                asking.push(task);
                            }
                        }
                        None => break,
                    }
                }
                ended = &mut publisher_task, if restart.is_none() => {
                    restart = Some((Side::Publisher, self.connection_ended(Side::Publisher, ended)));
                }
                ended = &mut subscriber_task, if restart.is_none() => {
                    restart = Some((Side::Subscriber, self.connection_ended(Side::Subscriber, ended)));
                }
                _ = tokio::time::sleep_until(restart.map_or_else(tokio::time::Instant::now, |r| r.1)),
                    if restart.is_some() =>
                {
                    match restart.take().map(|r| r.0) {
                        Some(Side::Publisher) => publisher_task = self.publisher.connect(),
                        Some(Side::Subscriber) => subscriber_task = self.subscriber.connect(),
                        None => {}
                    }
                }
            }
        }

        self.shut_down(publishes, publishing, subscriptions).await;
    }

    /// An error event: that connection (or, with no server named, the client) is down until
    /// its next connect event.
    fn on_error(&mut self, side: Side, event: ErrorEvent) -> bool {
        if matches!(event, Err(RecvError::Closed)) {
            return false;
        }
        self.state.side(side).error(&event);
        let error = event.ok().map(|(error, _server)| error.to_string());
        self.refresh(error.as_deref());
        true
    }

    /// A connect event (the first connection's included): that connection is up.
    fn on_connect(&mut self, side: Side, event: Result<Server, RecvError>) -> bool {
        if matches!(event, Err(RecvError::Closed)) {
            return false;
        }
        self.state.side(side).connect(&event);
        self.refresh(None);
        true
    }

    /// The cluster's layout changed: a node that left is no longer waited for.
    fn on_cluster_change(
        &mut self,
        side: Side,
        event: Result<Vec<ClusterStateChange>, RecvError>,
    ) -> bool {
        if matches!(event, Err(RecvError::Closed)) {
            return false;
        }
        self.state.side(side).cluster_changed(&event);
        self.refresh(None);
        true
    }

    /// A client's errors and connects come through two channels, so the link can't see their
    /// order: a failed attempt's error (naming no server) read after the next attempt's
    /// connects would leave that client down for good. The client's own state settles it: a
    /// client that says it is connected, with no connection the link knows lost, is up. (A
    /// lost connection is not settled this way: the client still says connected while it
    /// waits to reconnect.)
    fn reconcile(&mut self) {
        let mut changed = false;
        for (side, client) in [
            (Side::Publisher, &self.publisher),
            (Side::Subscriber, &self.subscriber),
        ] {
            let connected = client.state() == ClientState::Connected;
            let reach = self.state.side(side);
            if connected && !reach.made && reach.lost.is_empty() {
                reach.made = true;
                changed = true;
            }
        }
        if changed {
            self.refresh(None);
        }
    }

    /// Sets `connected` and logs the transitions: one warning per outage, one line when back.
    fn refresh(&mut self, error: Option<&str>) {
        let shared = &self.shared;
        let target = &shared.target;
        let state = &mut self.state;
        let up = state.publisher.up() && state.subscriber.up();
        if up && !state.up {
            if state.ever_up {
                shared.counts.reconnects.fetch_add(1, Ordering::Relaxed);
                let outage = state
                    .down_since
                    .map(|since| since.elapsed())
                    .unwrap_or_default();
                tracing::info!(
                    "redis link to {target} is back after {} ms; subscriptions issued again",
                    outage.as_millis()
                );
            } else {
                tracing::info!("redis link connected to {target}");
            }
            state.ever_up = true;
            state.warned = false;
            state.down_since = None;
        } else if !up && state.up {
            state.down_since = Some(Instant::now());
        }
        if !up && !state.warned && (state.up || error.is_some()) {
            state.warned = true;
            let why = error.unwrap_or("connection closed");
            let config = &shared.config;
            let backoff = &config.backoff;
            if state.ever_up {
                tracing::warn!(
                    "redis link to {target} lost ({why}); local delivery goes on; publishes \
                     queue up to {} messages / {} bytes, then are dropped and counted; \
                     reconnecting every {} ms doubling to {} ms",
                    config.max_queued,
                    config.max_queued_bytes,
                    backoff.min.as_millis(),
                    backoff.max.as_millis()
                );
            } else {
                tracing::warn!(
                    "cannot connect to redis at {target} ({why}); serving local clients only; \
                     publishes queue up to {} messages / {} bytes, then are dropped and \
                     counted; retrying every {} ms doubling to {} ms",
                    config.max_queued,
                    config.max_queued_bytes,
                    backoff.min.as_millis(),
                    backoff.max.as_millis()
                );
            }
        }
        state.up = up;
        shared.counts.connected.store(up, Ordering::Relaxed);
    }

    /// A connection task ended (the client gives up only on a configuration error): counts as
    /// down, and is started again after the longest backoff.
    fn connection_ended(
        &mut self,
        side: Side,
        ended: Result<Result<(), fred::error::Error>, tokio::task::JoinError>,
    ) -> tokio::time::Instant {
        let why = match ended {
            Ok(Ok(())) => "closed".to_owned(),
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        tracing::error!(
            "redis link to {}: a connection gave up ({why}); starting it again",
            self.shared.target
        );
        self.state.side(side).made = false;
        self.refresh(Some(&why));
        tokio::time::Instant::now() + self.shared.config.backoff.max
    }

    fn publish(&self, publish: Publish) -> Task {
        let client = self.publisher.clone();
        let shared = self.shared.clone();
        Box::pin(async move {
            let Publish {
                channel,
                size,
                body,
            } = publish;
            let result: Result<Value, _> = match body {
                Body::Channel(payload) => client.publish(channel, payload).await,
                Body::Sharded(payload) => client.spublish(channel, payload).await,
                Body::Command { name, args } => {
                    let mut all: Vec<Value> = Vec::with_capacity(1 + args.len());
                    all.push(channel.into());
                    all.extend(args);
                    client.custom(key_command(name), all).await
                }
            };
            shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            match result {
                Ok(_) => shared.counts.published.fetch_add(1, Ordering::Relaxed),
                Err(error) => {
                    tracing::debug!("redis link: a publish failed: {error}");
                    shared.counts.publish_failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        })
    }

    /// A command from the request queue, as a task for the command connection (none when it
    /// was answered at once).
    fn command(&self, request: Request) -> Option<Task> {
        match request {
            Request::NumSub(request) => self.num_sub(request),
            Request::Write { name, key, args } => self.forget(name, key, args),
            Request::Exists { key, answer } => self.ask("EXISTS", vec![key], answer, exists_answer),
            Request::SetNxPx {
                key,
                value,
                millis,
                answer,
            } => {
                let args = vec![
                    key,
                    value,
                    "NX".to_owned(),
                    "PX".to_owned(),
                    millis.to_string(),
                ];
                self.ask("SET", args, answer, set_nx_answer)
            }
            Request::Text { name, args, answer } => self.ask(name, args, answer, text_answer),
            Request::ScanValues {
                pattern,
                limit,
                answer,
            } => self.scan_values(pattern, limit, answer),
            Request::StreamAfter {
                key,
                field,
                value,
                limit,
                answer,
            } => self.stream_after(key, field, value, limit, answer),
        }
    }

    /// Pages back through a stream with `XREVRANGE` (a few hundred entries a page) until the
    /// entry whose `field` is `value`, keeping the newer ones; all within the command timeout.
    fn stream_after(
        &self,
        key: String,
        field: String,
        value: Bytes,
        limit: usize,
        answer: oneshot::Sender<Result<Option<Vec<StreamEntry>>, CommandError>>,
    ) -> Option<Task> {
        const PAGE: usize = 256;
        self.answer_with(answer, move |client| async move {
            let mut newer: Vec<StreamEntry> = Vec::new();
            let mut end = "+".to_owned();
            loop {
                let args: Vec<Value> = vec![
                    key.clone().into(),
                    end.clone().into(),
                    "-".into(),
                    "COUNT".into(),
                    PAGE.to_string().into(),
                ];
                let page = client.custom::<Value, _>(key_command("XREVRANGE"), args);
                let entries = stream_entries(page.await.map_err(command_error)?)?;
                let Some(last) = entries.last() else {
                    return Ok(None);
                };
                end = format!("({}", last.id);
                let full_page = entries.len() == PAGE;
                for entry in entries {
                    if entry.field(&field) == Some(&value) {
                        newer.reverse();
                        return Ok(Some(newer));
                    }
                    if newer.len() >= limit {
                        return Ok(None);
                    }
                    newer.push(entry);
                }
                if !full_page {
                    return Ok(None);
                }
            }
        })
    }

    /// `SCAN … MATCH` on the server, or on every master of a cluster one after the other (the
    /// limit is over all of them), then the values of what was found.
    fn scan_values(
        &self,
        pattern: String,
        limit: usize,
        answer: oneshot::Sender<Result<Vec<(String, String)>, CommandError>>,
    ) -> Option<Task> {
        let cluster = self.shared.config.is_cluster();
        let masters = self.masters();
        self.answer_with(answer, move |client| async move {
            let masters = masters?;
            let mut keys = BTreeSet::new();
            match masters {
                None => scan_on(&client, &pattern, limit, &mut keys).await?,
                Some(masters) => {
                    for master in masters {
                        if keys.len() >= limit {
                            break;
                        }
                        let node = client.with_cluster_node(master);
                        scan_on(&node, &pattern, limit, &mut keys).await?;
                    }
                }
            }
            let keys: Vec<String> = keys.into_iter().collect();
            let mut found = Vec::with_capacity(keys.len());
            // `by_slot` keeps each `MGET` within one slot on a cluster (else CROSSSLOT),
            // and to a few hundred keys, so no reply is huge.
            for group in by_slot(&keys, cluster) {
                let asked = group.len();
                let mget = client.custom::<Value, _>(key_command("MGET"), group.clone());
                let values = mget_values(mget.await.map_err(command_error)?, asked)?;
                found.extend(
                    group
                        .into_iter()
                        .zip(values)
                        .filter_map(|(key, value)| Some((key, value?))),
                );
            }
            found.sort();
            Ok(found)
        })
    }

    /// `name key args…` on the command connection with nobody waiting for it: dropped while
    /// the link is down, logged at debug when it fails or times out.
    fn forget(&self, name: &'static str, key: String, args: Vec<Value>) -> Option<Task> {
        if !self.state.publisher.up() {
            tracing::debug!("redis link: {name} {key} dropped, the link is down");
            return None;
        }
        let client = self.publisher.clone();
        let timeout = self.shared.config.command_timeout;
        Some(Box::pin(async move {
            let mut all: Vec<Value> = Vec::with_capacity(args.len() + 1);
            all.push(key.clone().into());
            all.extend(args);
            let sent = client.custom::<Value, _>(key_command(name), all);
            match tokio::time::timeout(timeout, sent).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::debug!("redis link: {name} {key} failed: {error}"),
                Err(_elapsed) => tracing::debug!("redis link: {name} {key} timed out"),
            }
        }))
    }

    /// `name args…` (the first argument its key) on the command connection, its reply read
    /// by `read` and sent to `answer`: `Disconnected` at once while the link is down,
    /// `Timeout` past the command timeout.
    fn ask<T: Send + 'static>(
        &self,
        name: &'static str,
        args: Vec<String>,
        answer: oneshot::Sender<Result<T, CommandError>>,
        read: fn(Value) -> Result<T, CommandError>,
    ) -> Option<Task> {
        self.answer_with(answer, move |client| async move {
            let value = client
                .custom::<Value, _>(key_command(name), args)
                .await
                .map_err(command_error)?;
            read(value)
        })
    }

    /// `PUBSUB NUMSUB` or `SHARDNUMSUB`, asked of the server, or of every master of a cluster
    /// (each counts only its own connections) and added up.
    fn num_sub(&self, request: NumSub) -> Option<Task> {
        let NumSub {
            channel,
            sharded,
            answer,
        } = request;
        // On a cluster, every master the client's routing table knows (it has one once
        // connected).
        let masters = self.masters();
        self.answer_with(answer, move |client| async move {
            let Some(masters) = masters? else {
                return count_on(&client, channel, sharded).await;
            };
            let asked = masters.into_iter().map(|master| {
                let client = client.with_cluster_node(master);
                let channel = channel.clone();
                async move { count_on(&client, channel, sharded).await }
            });
            let counts = futures_util::future::try_join_all(asked).await?;
            Ok(counts.into_iter().sum())
        })
    }

    /// The masters of the cluster the client knows, or `None` for one server; `Disconnected`
    /// while the client has no layout yet.
    fn masters(&self) -> Result<Option<Vec<Server>>, CommandError> {
        if !self.shared.config.is_cluster() {
            return Ok(None);
        }
        match self.publisher.cached_cluster_state() {
            Some(layout) => Ok(Some(layout.unique_primary_nodes())),
            None => Err(CommandError::Disconnected),
        }
    }

    /// Runs `work` on the command connection as a task that sends its result to `answer`
    /// (`Timeout` past the command timeout); `Disconnected` at once, and no task, while the
    /// link is down.
    fn answer_with<T, F>(
        &self,
        answer: oneshot::Sender<Result<T, CommandError>>,
        work: impl FnOnce(Client) -> F,
    ) -> Option<Task>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, CommandError>> + Send + 'static,
    {
        if !self.state.publisher.up() {
            let _ = answer.send(Err(CommandError::Disconnected));
            return None;
        }
        let work = work(self.publisher.clone());
        let timeout = self.shared.config.command_timeout;
        Some(Box::pin(async move {
            let result = match tokio::time::timeout(timeout, work).await {
                Err(_elapsed) => Err(CommandError::Timeout),
                Ok(result) => result,
            };
            let _ = answer.send(result);
        }))
    }

    fn deliver(&mut self, message: Message) {
        let counts = &self.shared.counts;
        let payload = match message.value {
            Value::Bytes(bytes) => bytes,
            Value::String(text) => text.into_inner(),
            _ => {
                counts.received_dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if payload.len() > self.shared.config.max_incoming_bytes {
            counts.received_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let channel = message.channel.to_string();
        let (kind, pattern) = match message.kind {
            MessageKind::PMessage => match self.pattern_for(&channel) {
                Some(pattern) => (IncomingKind::Pattern, Some(pattern)),
                // Matches no pattern still wanted: one just unsubscribed.
                None => {
                    let counts = &self.shared.counts;
                    counts.received_dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            MessageKind::SMessage => (IncomingKind::Sharded, None),
            _ => (IncomingKind::Channel, None),
        };
        self.shared.counts.received.fetch_add(1, Ordering::Relaxed);
        let incoming = Incoming {
            channel,
            pattern,
            payload,
            kind,
        };
        if catch_unwind(AssertUnwindSafe(|| (self.on_message)(incoming))).is_err() {
            tracing::error!("redis link: the message callback panicked; the message is lost");
        }
    }

    /// The first pattern subscribed (in byte order) that matches `channel`.
    fn pattern_for(&mut self, channel: &str) -> Option<String> {
        let generation = self.shared.wanted_generation.load(Ordering::Acquire);
        if self.patterns.0 != generation {
            let wanted = lock(&self.shared.wanted);
            let patterns = wanted.subscriptions.of(Sub::Pattern);
            self.patterns = (generation, patterns.iter().cloned().collect());
        }
        self.patterns
            .1
            .iter()
            .find(|pattern| glob_match(pattern.as_bytes(), channel.as_bytes()))
            .cloned()
    }

    /// Publishes what is queued (if connected) for up to [`STOP_GRACE`], drops the rest, and
    /// closes both clients.
    async fn shut_down(
        self,
        mut publishes: mpsc::Receiver<Publish>,
        mut publishing: FuturesUnordered<Task>,
        subscriptions: tokio::task::JoinHandle<()>,
    ) {
        let shared = self.shared.clone();
        publishes.close();
        let max_in_flight = shared.config.max_in_flight.max(1);
        let up = self.state.up;
        let mut open = true;
        let drain = async {
            loop {
                tokio::select! {
                    Some(()) = publishing.next(), if !publishing.is_empty() => {}
                    publish = publishes.recv(), if open && up && publishing.len() < max_in_flight => {
                        match publish {
                            Some(publish) => publishing.push(self.publish(publish)),
                            None => open = false,
                        }
                    }
                    else => break,
                }
            }
        };
        let _ = tokio::time::timeout(STOP_GRACE, drain).await;
        let mut left = 0;
        while let Ok(publish) = publishes.try_recv() {
            shared
                .queued_bytes
                .fetch_sub(publish.size, Ordering::AcqRel);
            left += 1;
        }
        shared
            .counts
            .publish_dropped
            .fetch_add(left, Ordering::Relaxed);
        subscriptions.abort();
        // A client that is down has nothing to say goodbye to (and QUIT would wait for it);
        // the runtime, dropped with the thread, ends its tasks.
        let (publisher_up, subscriber_up) = (self.state.publisher.up(), self.state.subscriber.up());
        let quit = futures_util::future::join(
            async { publisher_up.then_some(self.publisher.quit().await) },
            async { subscriber_up.then_some(self.subscriber.quit().await) },
        );
        let _ = tokio::time::timeout(STOP_GRACE, quit).await;
        shared.counts.connected.store(false, Ordering::Relaxed);
        tracing::info!(
            "redis link to {} stopped ({left} queued publishes dropped)",
            shared.target
        );
    }
}

/// One server's `PUBSUB NUMSUB channel` or `PUBSUB SHARDNUMSUB channel`.
async fn count_on<C: PubsubInterface>(
    client: &C,
    channel: String,
    sharded: bool,
) -> Result<u64, CommandError> {
    let answer = if sharded {
        client.pubsub_shardnumsub::<Value, _>(channel).await
    } else {
        client.pubsub_numsub::<Value, _>(channel).await
    };
    match answer {
        Ok(value) => num_sub_count(value),
        Err(error) if *error.kind() == fred::error::ErrorKind::Timeout => {
            Err(CommandError::Timeout)
        }
        Err(error) => Err(CommandError::Redis(error.to_string())),
    }
}

/// Walks one server's keyspace with `SCAN` until the cursor is back to 0 or `keys` holds
/// `limit` keys (a key `SCAN` returns twice, as it may while the table grows, counts once).
async fn scan_on<C: ClientLike>(
    client: &C,
    pattern: &str,
    limit: usize,
    keys: &mut BTreeSet<String>,
) -> Result<(), CommandError> {
    // `SCAN` names no key: the client (or `with_cluster_node`) picks the server.
    let command = CustomCommand::new_static("SCAN", ClusterHash::Random, false);
    let mut cursor = "0".to_owned();
    while keys.len() < limit {
        let args = vec![
            cursor,
            "MATCH".to_owned(),
            pattern.to_owned(),
            "COUNT".to_owned(),
            SCAN_COUNT.to_owned(),
        ];
        let page = client
            .custom::<Value, _>(command.clone(), args)
            .await
            .map_err(command_error)?;
        let (next, found) = scan_page(page)?;
        for key in found {
            if keys.len() >= limit {
                break;
            }
            keys.insert(key);
        }
        if next == "0" {
            break;
        }
        cursor = next;
    }
    Ok(())
}

/// A client error as a command's: a timeout is the link's, the rest is Redis's.
fn command_error(error: fred::error::Error) -> CommandError {
    if *error.kind() == fred::error::ErrorKind::Timeout {
        CommandError::Timeout
    } else {
        CommandError::Redis(error.to_string())
    }
}

/// A bulk string as text; `None` for anything else, or bytes that are not UTF-8.
fn text_of(value: Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.to_string()),
        Value::Bytes(bytes) => String::from_utf8(bytes.to_vec()).ok(),
        _ => None,
    }
}

/// `SCAN` answers `[next cursor, [key, …]]`; keys that are not UTF-8 are skipped (they could
/// not be handed on as text).
fn scan_page(value: Value) -> Result<(String, Vec<String>), CommandError> {
    let unexpected = || CommandError::Redis("unexpected answer to SCAN".to_owned());
    let Value::Array(mut items) = value else {
        return Err(unexpected());
    };
    if items.len() != 2 {
        return Err(unexpected());
    }
    let keys = match items.pop() {
        Some(Value::Array(keys)) => keys.into_iter().filter_map(text_of).collect(),
        _ => return Err(unexpected()),
    };
    let cursor = match items.pop() {
        Some(Value::Integer(cursor)) if cursor >= 0 => cursor.to_string(),
        Some(cursor) => text_of(cursor).ok_or_else(unexpected)?,
        None => return Err(unexpected()),
    };
    // A cursor is a number; anything else sent back as one would loop on garbage.
    if cursor.is_empty() || !cursor.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unexpected());
    }
    Ok((cursor, keys))
}

/// `MGET` answers one value per key asked, nil for a key that is gone or not a string.
fn mget_values(value: Value, asked: usize) -> Result<Vec<Option<String>>, CommandError> {
    match value {
        Value::Array(values) if values.len() == asked => {
            Ok(values.into_iter().map(text_of).collect())
        }
        _ => Err(CommandError::Redis("unexpected answer to MGET".to_owned())),
    }
}

/// A command whose first argument is its key: on a cluster, `fred` sends it to the master
/// owning that key's hash slot.
fn key_command(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

/// `EXISTS key` answers how many of the keys given exist: 0 or 1.
fn exists_answer(value: Value) -> Result<bool, CommandError> {
    match value {
        Value::Integer(count) => Ok(count > 0),
        _ => Err(CommandError::Redis(
            "unexpected answer to EXISTS".to_owned(),
        )),
    }
}

/// `SET … NX` answers `OK` when it set the key and nil when the key was there.
fn set_nx_answer(value: Value) -> Result<bool, CommandError> {
    match value {
        Value::Null => Ok(false),
        Value::String(ref text) if &**text == "OK" => Ok(true),
        Value::Bytes(ref bytes) if &bytes[..] == b"OK" => Ok(true),
        _ => Err(CommandError::Redis(
            "unexpected answer to SET NX".to_owned(),
        )),
    }
}

/// `GET key` answers the value, or nil when the key is not there.
fn text_answer(value: Value) -> Result<Option<String>, CommandError> {
    match value {
        Value::Null => Ok(None),
        value => text_of(value)
            .map(Some)
            .ok_or_else(|| CommandError::Redis("unexpected answer: not text".to_owned())),
    }
}

/// `SET`'s arguments after the key for `value` expiring after `amount` of `unit` (`EX`
/// seconds, `PX` milliseconds): at least one, as `EX 0` and `PX 0` are errors in Redis.
fn expiring(value: String, unit: &'static str, amount: u64) -> Vec<Value> {
    vec![value.into(), unit.into(), amount.max(1).to_string().into()]
}

/// `XRANGE` / `XREVRANGE` answer `[[id, [field, value, …]], …]`.
fn stream_entries(value: Value) -> Result<Vec<StreamEntry>, CommandError> {
    let unexpected = || CommandError::Redis("unexpected answer to XREVRANGE".to_owned());
    let Value::Array(items) = value else {
        return match value {
            Value::Null => Ok(Vec::new()),
            _ => Err(unexpected()),
        };
    };
    items
        .into_iter()
        .map(|item| {
            let Value::Array(parts) = item else {
                return Err(unexpected());
            };
            let [id, Value::Array(flat)] =
                <[Value; 2]>::try_from(parts).map_err(|_| unexpected())?
            else {
                return Err(unexpected());
            };
            let id = text_of(id).ok_or_else(unexpected)?;
            let mut fields = Vec::with_capacity(flat.len() / 2);
            let mut flat = flat.into_iter();
            while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
                let name = text_of(name).ok_or_else(unexpected)?;
                let value = value
                    .as_bytes()
                    .map(Bytes::copy_from_slice)
                    .ok_or_else(unexpected)?;
                fields.push((name, value));
            }
            Ok(StreamEntry { id, fields })
        })
        .collect()
}

/// `PUBSUB NUMSUB channel` (and `SHARDNUMSUB`) answers `[channel, count]`.
fn num_sub_count(value: Value) -> Result<u64, CommandError> {
    let unexpected = || CommandError::Redis("unexpected answer to PUBSUB NUMSUB".to_owned());
    let Value::Array(items) = value else {
        return Err(unexpected());
    };
    match items.get(1) {
        Some(Value::Integer(count)) => u64::try_from(*count).map_err(|_| unexpected()),
        _ => Err(unexpected()),
    }
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

/// Channel or pattern names per `SUBSCRIBE`, `UNSUBSCRIBE`, … command: a pass over many is a
/// few commands, none of them huge.
const NAMES_PER_COMMAND: usize = 256;

/// Keeps the subscriber's subscriptions equal to what is wanted: issues what changed whenever
/// it changes, and everything again after every (re)connect and cluster layout change.
async fn keep_subscriptions(
    subscriber: Client,
    shared: Arc<Shared>,
    mut connects: tokio::sync::broadcast::Receiver<Server>,
    mut layout_changes: tokio::sync::broadcast::Receiver<Vec<ClusterStateChange>>,
) {
    let mut sync = SubscriptionSync::default();
    let mut retry: Option<tokio::time::Instant> = None;
    let mut retry_delay = shared.config.backoff.min;
    let (mut connects_open, mut changes_open) = (true, true);
    loop {
        tokio::select! {
            event = connects.recv(), if connects_open => match event {
                // A new connection has none of the subscriptions (on a cluster, the connection
                // to one master; issuing all again is harmless to the others).
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    sync.reissue = true;
                    retry_delay = shared.config.backoff.min;
                }
                Err(RecvError::Closed) => connects_open = false,
            },
            event = layout_changes.recv(), if changes_open => match event {
                // Slots moved: a master that lost a slot dropped its shard subscriptions, and
                // the new owner has none of them yet.
                Ok(_) | Err(RecvError::Lagged(_)) => sync.reissue = true,
                Err(RecvError::Closed) => changes_open = false,
            },
            _ = shared.wanted_changed.notified() => {}
            _ = tokio::time::sleep_until(retry.unwrap_or_else(tokio::time::Instant::now)), if retry.is_some() => {}
        }
        retry = None;
        if let Err(error) = sync.pass(&subscriber, &shared).await {
            tracing::debug!("redis link: subscribing failed ({error}); trying again");
            retry = Some(tokio::time::Instant::now() + retry_delay);
            retry_delay = (retry_delay * 2).min(shared.config.backoff.max);
        }
    }
}

/// What the subscriber was told, and what the next pass must look at.
#[derive(Default)]
struct SubscriptionSync {
    /// What Redis was told to subscribe to and not told to forget: what it has unless a
    /// connection was lost since (`reissue` is then set).
    issued: Subscriptions,
    /// Compare everything wanted or issued, not only what changed (a pass failed).
    full: bool,
    /// Issue everything wanted again (a connection was made, or the cluster's layout changed).
    reissue: bool,
    /// A refusal has been logged since the last pass that went through.
    warned: bool,
}

/// What one pass sends.
#[derive(Default)]
struct Plan {
    add: [Vec<String>; 3],
    remove: [Vec<String>; 3],
}

impl SubscriptionSync {
    /// One pass: what is wanted and not issued is subscribed, what is issued and not wanted is
    /// forgotten. After Redis refuses a command the rest of the pass goes on; after the
    /// connection fails it stops (every command would wait out the command timeout). Either
    /// way the next pass compares everything.
    async fn pass(
        &mut self,
        subscriber: &Client,
        shared: &Shared,
    ) -> Result<(), fred::error::Error> {
        let plan = self.plan(&shared.wanted);
        // (kind, subscribe rather than forget, names) per command.
        let mut commands: Vec<(Sub, bool, Vec<String>)> = Vec::new();
        for sub in Sub::ALL {
            let (adds, removes) = (&plan.add[sub as usize], &plan.remove[sub as usize]);
            match sub {
                Sub::Channel | Sub::Pattern => {
                    for names in adds.chunks(NAMES_PER_COMMAND) {
                        commands.push((sub, true, names.to_vec()));
                    }
                    for names in removes.chunks(NAMES_PER_COMMAND) {
                        commands.push((sub, false, names.to_vec()));
                    }
                }
                Sub::Shard => {
                    // One channel per `SSUBSCRIBE`, as Node's adapter sends them: the client
                    // resolves an `SSUBSCRIBE` on its first confirmation, and would take the
                    // others (one per channel) for the answers to the commands after it; and
                    // on a cluster one command may only name channels of one hash slot.
                    for channel in adds {
                        commands.push((sub, true, vec![channel.clone()]));
                    }
                    // `SUNSUBSCRIBE` expects no answer from the client's side (confirmations
                    // are dropped), so several channels go in one command: all of them on one
                    // server, those of one hash slot on a cluster.
                    for names in by_slot(removes, shared.config.is_cluster()) {
                        commands.push((sub, false, names));
                    }
                }
            }
        }
        let mut failed: Option<fred::error::Error> = None;
        for (sub, subscribing, names) in commands {
            if failed.as_ref().is_some_and(is_transport) {
                break;
            }
            let sent = match (sub, subscribing) {
                (Sub::Channel, true) => subscriber.subscribe(names.clone()).await,
                (Sub::Channel, false) => subscriber.unsubscribe(names.clone()).await,
                (Sub::Pattern, true) => subscriber.psubscribe(names.clone()).await,
                (Sub::Pattern, false) => subscriber.punsubscribe(names.clone()).await,
                (Sub::Shard, true) => subscriber.ssubscribe(names.clone()).await,
                (Sub::Shard, false) => subscriber.sunsubscribe(names.clone()).await,
            };
            self.note(sub, names, subscribing, sent, &mut failed);
        }
        match failed {
            None => {
                self.full = false;
                self.reissue = false;
                self.warned = false;
                Ok(())
            }
            Some(error) => {
                self.full = true;
                if !is_transport(&error) && !self.warned {
                    self.warned = true;
                    tracing::warn!(
                        "redis link: Redis refused a subscription ({error}); retrying until it \
                         takes it (sharded pub/sub needs Redis 7)"
                    );
                }
                Err(error)
            }
        }
    }

    /// What to send: the changes since the last pass, or everything on a full pass.
    fn plan(&mut self, wanted: &Mutex<Wanted>) -> Plan {
        let mut plan = Plan::default();
        let mut wanted = lock(wanted);
        let changed = std::mem::take(&mut wanted.changed);
        let wanted = &wanted.subscriptions;
        if self.full || self.reissue {
            for sub in Sub::ALL {
                let (wanted, issued) = (wanted.of(sub), self.issued.of(sub));
                plan.add[sub as usize] = match self.reissue {
                    true => wanted.iter().cloned().collect(),
                    false => wanted.difference(issued).cloned().collect(),
                };
                plan.remove[sub as usize] = issued.difference(wanted).cloned().collect();
            }
        } else {
            for (sub, name) in changed {
                let (wanted, issued) = (
                    wanted.of(sub).contains(&name),
                    self.issued.of(sub).contains(&name),
                );
                match (wanted, issued) {
                    (true, false) => plan.add[sub as usize].push(name),
                    (false, true) => plan.remove[sub as usize].push(name),
                    // Subscribed and forgotten again (or the reverse) since the last pass:
                    // nothing to tell Redis.
                    _ => {}
                }
            }
        }
        plan
    }

    /// Records what a command did: on success the names are issued (or forgotten); the first
    /// error is kept.
    fn note(
        &mut self,
        sub: Sub,
        names: Vec<String>,
        subscribed: bool,
        sent: Result<(), fred::error::Error>,
        failed: &mut Option<fred::error::Error>,
    ) {
        match sent {
            Ok(()) => {
                let issued = self.issued.of_mut(sub);
                for name in names {
                    if subscribed {
                        issued.insert(name);
                    } else {
                        issued.remove(&name);
                    }
                }
            }
            Err(error) => {
                tracing::debug!(
                    "redis link: {:?} {} of {} names failed: {error}",
                    sub,
                    if subscribed {
                        "subscribing"
                    } else {
                        "forgetting"
                    },
                    names.len()
                );
                failed.get_or_insert(error);
            }
        }
    }
}

/// The connection, not Redis, failed: the rest of a pass would fail the same way (each after
/// the command timeout), so it waits for the retry.
fn is_transport(error: &fred::error::Error) -> bool {
    use fred::error::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::IO
            | ErrorKind::Timeout
            | ErrorKind::Canceled
            | ErrorKind::Routing
            | ErrorKind::Cluster
            | ErrorKind::Protocol
            | ErrorKind::Tls
            | ErrorKind::Backpressure
    )
}

/// `names` in groups a command may carry: on a cluster, one group per hash slot (at most
/// [`NAMES_PER_COMMAND`] each); otherwise groups of [`NAMES_PER_COMMAND`].
fn by_slot(names: &[String], cluster: bool) -> Vec<Vec<String>> {
    if !cluster {
        return names
            .chunks(NAMES_PER_COMMAND)
            .map(<[String]>::to_vec)
            .collect();
    }
    let mut slots: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for name in names {
        slots
            .entry(fred::util::redis_keyslot(name.as_bytes()))
            .or_default()
            .push(name.clone());
    }
    slots
        .into_values()
        .flat_map(|group| {
            group
                .chunks(NAMES_PER_COMMAND)
                .map(<[String]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Redis's glob matching (`stringmatchlen`, case-sensitive): `*`, `?`, `[abc]`, `[^abc]`,
/// `[a-z]`, and `\` quoting the next character.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was and how much of the text it has taken.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => {
                let (matched, next) = class_match(pattern, p + 1, text[t]);
                matched.then_some(next)
            }
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == text[t]).then_some(p + 2),
            Some(&c) => (c == text[t]).then_some(p + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                t += 1;
            }
            (None, Some((star_p, star_t))) => {
                star = Some((star_p, star_t + 1));
                p = star_p + 1;
                t = star_t + 1;
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pattern[start]` (just after `[`); whether it
/// matched and where the pattern goes on. An unterminated class ends with the pattern.
fn class_match(pattern: &[u8], start: usize, c: u8) -> (bool, usize) {
    let mut i = start;
    let negated = pattern.get(i) == Some(&b'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    loop {
        match pattern.get(i) {
            None => break,
            Some(b']') => {
                i += 1;
                break;
            }
            Some(b'\\') if i + 1 < pattern.len() => {
                matched |= pattern[i + 1] == c;
                i += 2;
            }
            Some(&low) if i + 2 < pattern.len() && pattern[i + 1] == b'-' => {
                let high = pattern[i + 2];
                let (low, high) = if low <= high {
                    (low, high)
                } else {
                    (high, low)
                };
                matched |= (low..=high).contains(&c);
                i += 3;
            }
            Some(&other) => {
                matched |= other == c;
                i += 1;
            }
        }
    }
    (matched != negated, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let url = RedisUrl::parse("redis://127.0.0.1:6380").unwrap();
        assert_eq!(
            (url.host(), url.port(), url.database()),
            ("127.0.0.1", 6380, None)
        );
        assert_eq!((url.username(), url.has_password()), (None, false));

        let url = RedisUrl::parse("redis://localhost").unwrap();
        assert_eq!((url.host(), url.port()), ("localhost", 6379));

        let url = RedisUrl::parse("redis://user:p%40ss@redis.internal:7000/3").unwrap();
        assert_eq!(url.host(), "redis.internal");
        assert_eq!((url.port(), url.database()), (7000, Some(3)));
        assert_eq!(url.username(), Some("user"));
        assert_eq!(url.password.as_deref(), Some("p@ss"));

        let url = RedisUrl::parse("redis://:secret@[::1]:6390/0").unwrap();
        assert_eq!(
            (url.host(), url.port(), url.database()),
            ("::1", 6390, Some(0))
        );
        assert_eq!(
            (url.username(), url.password.as_deref()),
            (None, Some("secret"))
        );

        let url: RedisUrl = "redis://alice@h:1".parse().unwrap();
        assert_eq!((url.username(), url.has_password()), (Some("alice"), false));
        assert!(!url.is_tls());

        let url = RedisUrl::parse("rediss://:pw@redis.example:6380/1").unwrap();
        assert!(url.is_tls());
        assert_eq!((url.host(), url.port()), ("redis.example", 6380));
        assert_eq!(url.to_string(), "rediss://:***@redis.example:6380/1");
    }

    #[test]
    fn cluster_seeds_parse() {
        let seeds = ClusterSeeds::parse("127.0.0.1:7000, [::1]:7001 ,node-3").unwrap();
        let hosts: Vec<(&str, u16)> = seeds.seeds().iter().map(|s| (s.host(), s.port())).collect();
        assert_eq!(
            hosts,
            [
                ("127.0.0.1", 7000),
                ("::1", 7001),
                ("node-3", RedisUrl::DEFAULT_PORT)
            ]
        );
        assert!(seeds.seeds().iter().all(|seed| !seed.is_tls()));
        assert_eq!(
            seeds.to_string(),
            "redis://127.0.0.1:7000,redis://[::1]:7001,redis://node-3:6379"
        );

        // Seeds without a scheme take the first one's scheme and credentials.
        let seeds: ClusterSeeds = "rediss://u:hunter2@a:1,b:2,rediss://u:hunter2@c:3"
            .parse()
            .unwrap();
        for seed in seeds.seeds() {
            assert!(seed.is_tls());
            assert_eq!(seed.username(), Some("u"));
            assert_eq!(seed.password.as_deref(), Some("hunter2"));
        }
        assert_eq!(
            format!("{seeds:?}"),
            "ClusterSeeds(rediss://u:***@a:1,rediss://u:***@b:2,rediss://u:***@c:3)"
        );
        let config = RedisLinkConfig::cluster(seeds.clone());
        assert!(config.is_cluster());
        assert_eq!(config.url, seeds.seeds()[0]);
        assert_eq!(config.target(), format!("cluster {seeds}"));
        assert!(!format!("{config:?}").contains("hunter2"));
        // A database 0 is no database.
        assert!(ClusterSeeds::parse("redis://a:1/0,b:2").is_ok());

        for (list, error) in [
            ("", SeedsError::Empty),
            ("  ", SeedsError::Empty),
            ("a:1,,b:2", SeedsError::Blank { position: 2 }),
            ("a:1,", SeedsError::Blank { position: 2 }),
            ("a:1,redis://b:2/3", SeedsError::Database { position: 2 }),
            ("a:1,rediss://b:2", SeedsError::Mismatch { position: 2 }),
            (
                "redis://:x@a:1,redis://:y@b:2",
                SeedsError::Mismatch { position: 2 },
            ),
            (
                "redis://:x@a:1,u:z@b:2",
                SeedsError::Mismatch { position: 2 },
            ),
        ] {
            assert_eq!(ClusterSeeds::parse(list), Err(error), "{list:?}");
        }
        assert!(ClusterSeeds::new(Vec::new()).is_err());
        match ClusterSeeds::parse("a:1,b:x") {
            Err(SeedsError::Url { position: 2, error }) => {
                assert!(error.to_string().contains("port"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        let shown = ClusterSeeds::parse("redis://:hunter2@a:1,http://b:2")
            .unwrap_err()
            .to_string();
        assert!(
            shown.contains("seed 2") && shown.contains("http://"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn tls_ca_pem_is_checked() {
        assert_eq!(TlsCa::from_pem(b""), Err(TlsError::NoCertificate));
        assert_eq!(
            TlsCa::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            Err(TlsError::NoCertificate)
        );
        assert!(matches!(
            TlsCa::from_pem(
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
            ),
            Err(TlsError::Pem(_))
        ));
        // Well-formed PEM around bytes that are no certificate.
        assert!(matches!(
            TlsCa::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(TlsError::Certificate(_))
        ));
        let config = RedisLinkConfig::new(RedisUrl::parse("rediss://h:1").unwrap());
        assert!(config.tls_ca.is_empty());
        assert!(matches!(
            config.tls_ca_file("/nonexistent/ringcast-ca.pem"),
            Err(TlsError::Read { .. })
        ));
    }

    #[test]
    fn urls_refused_say_why() {
        for (url, why) in [
            ("rediss:/h:1", "no scheme"),
            ("redis-cluster://h:1", "redis-cluster:// is not supported"),
            ("unix:///tmp/redis.sock", "unix:// is not supported"),
            ("http://h:1", "http:// is not supported"),
            ("h:6379", "no scheme"),
            ("redis://", "no host"),
            ("redis://:pw@:6379", "no host"),
            ("redis://h:0", "port"),
            ("redis://h:65536", "port"),
            ("redis://h:+80", "port"),
            ("redis://h:x", "port"),
            ("redis://h:1/256", "database"),
            ("redis://h:1/01", "database"),
            ("redis://h:1/a", "database"),
            ("redis://h:1/0/1", "database"),
            ("redis://h:1?db=2", "query"),
            ("redis://h:1#x", "fragment"),
            ("redis://[::1:6379", "unclosed"),
            ("redis://[nothex]:1", "IPv6"),
            ("redis://h h:1", "bad character"),
            ("redis://u:%zz@h:1", "percent"),
        ] {
            let error = RedisUrl::parse(url).expect_err(url).to_string();
            assert!(error.contains(why), "{url}: {error}");
            assert!(error.contains("expected redis://"), "{url}: {error}");
        }
    }

    #[test]
    fn the_password_is_never_shown() {
        let url = RedisUrl::parse("redis://bob:hunter2-secret@h:1/2").unwrap();
        assert_eq!(url.to_string(), "redis://bob:***@h:1/2");
        let config = RedisLinkConfig::new(url.clone());
        for shown in [format!("{url:?}"), format!("{config:?}"), url.to_string()] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        let url = RedisUrl::parse("redis://:hunter2-secret@[::1]:1").unwrap();
        assert_eq!(url.to_string(), "redis://:***@[::1]:1");
        // A refused URL's message does not repeat it either.
        let error = RedisUrl::parse("redis://u:hunter2-secret@h:1?x").unwrap_err();
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let mut policy = Backoff::default().policy();
        if let ReconnectPolicy::Exponential { ref mut jitter, .. } = policy {
            *jitter = 0;
        }
        let delays: Vec<u64> = (0..9).map(|_| policy.next_delay().unwrap()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        // Forever.
        for _ in 0..10_000 {
            assert_eq!(policy.next_delay(), Some(5000));
        }
    }

    #[test]
    fn glob_matches_as_redis_does() {
        let cases: &[(&str, &str, bool)] = &[
            ("socket.io#/#*", "socket.io#/#", true),
            ("socket.io#/#*", "socket.io#/#room#", true),
            ("socket.io#/#*", "socket.io#/chat#", false),
            ("socket.io#/chat#*", "socket.io#/chat#", true),
            ("*", "", true),
            ("*", "anything", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("h[ae]llo", "hello", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("a[\\]]b", "a]b", true),
            ("abc\\", "abc\\", true),
            ("[abc", "b", true),
            ("", "", true),
            ("", "a", false),
            ("**a", "ba", true),
            ("*a*", "bbb", false),
        ];
        for &(pattern, text, expected) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                expected,
                "{pattern:?} ~ {text:?}"
            );
        }
    }

    #[test]
    fn num_sub_answers_are_read_or_refused() {
        let answer = Value::Array(vec![Value::from("ch"), Value::Integer(2)]);
        assert_eq!(num_sub_count(answer), Ok(2));
        for bad in [
            Value::Null,
            Value::Array(vec![Value::from("ch")]),
            Value::Array(vec![Value::from("ch"), Value::Integer(-1)]),
            Value::Array(vec![Value::from("ch"), Value::from("2")]),
        ] {
            assert!(matches!(num_sub_count(bad), Err(CommandError::Redis(_))));
        }
    }

    #[test]
    fn subscription_changes_coalesce() {
        let wanted = Mutex::new(Wanted::default());
        let edit = |f: &dyn Fn(&mut Wanted) -> bool| f(&mut lock(&wanted));
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut sync = SubscriptionSync::default();

        assert!(edit(
            &|w| w.add(Sub::Shard, names(&["room-a", "room-b", "room-c"]))
        ));
        assert!(
            !edit(&|w| w.add(Sub::Shard, names(&["room-a"]))),
            "no change"
        );
        assert!(edit(&|w| w.remove(Sub::Shard, names(&["room-b"]))));
        assert!(edit(&|w| w.add(Sub::Channel, names(&["main"]))));
        let plan = sync.plan(&wanted);
        // room-b came and went before the pass: Redis never hears of it.
        assert_eq!(plan.add[Sub::Shard as usize], names(&["room-a", "room-c"]));
        assert_eq!(plan.add[Sub::Channel as usize], names(&["main"]));
        assert!(plan.remove.iter().all(Vec::is_empty));
        // As if the commands went through.
        sync.issued
            .of_mut(Sub::Shard)
            .extend(names(&["room-a", "room-c"]));
        sync.issued.of_mut(Sub::Channel).extend(names(&["main"]));

        // Nothing changed: nothing to send.
        let plan = sync.plan(&wanted);
        assert!(plan.add.iter().chain(&plan.remove).all(Vec::is_empty));

        edit(&|w| w.remove(Sub::Shard, names(&["room-a"])));
        edit(&|w| w.add(Sub::Shard, names(&["room-d"])));
        edit(&|w| w.remove(Sub::Shard, names(&["room-d"])));
        edit(&|w| w.remove(Sub::Shard, names(&["room-c"])));
        edit(&|w| w.add(Sub::Shard, names(&["room-c"])));
        let plan = sync.plan(&wanted);
        assert_eq!(plan.remove[Sub::Shard as usize], names(&["room-a"]));
        assert!(plan.add[Sub::Shard as usize].is_empty());
        sync.issued.of_mut(Sub::Shard).remove("room-a");

        // After a reconnect everything wanted goes again, and only that.
        sync.reissue = true;
        let plan = sync.plan(&wanted);
        assert_eq!(plan.add[Sub::Shard as usize], names(&["room-c"]));
        assert_eq!(plan.add[Sub::Channel as usize], names(&["main"]));
        assert!(plan.remove.iter().all(Vec::is_empty));
    }

    #[test]
    fn shard_channels_are_grouped_by_slot_on_a_cluster() {
        let names: Vec<String> = (0..600).map(|i| format!("socket.io#/#room-{i}#")).collect();
        let groups = by_slot(&names, false);
        assert_eq!(
            groups.iter().map(Vec::len).collect::<Vec<_>>(),
            [256, 256, 88]
        );
        let groups = by_slot(&names, true);
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 600);
        for group in &groups {
            let slot = fred::util::redis_keyslot(group[0].as_bytes());
            assert!(group
                .iter()
                .all(|name| fred::util::redis_keyslot(name.as_bytes()) == slot));
        }
        // Redis's own answers (CLUSTER KEYSLOT).
        assert_eq!(fred::util::redis_keyslot(b"a"), 15495);
        assert_eq!(fred::util::redis_keyslot(b"b"), 3300);
    }

    #[test]
    fn a_link_is_shared_across_threads() {
        fn send_sync<T: Send + Sync + Clone>() {}
        send_sync::<RedisLink>();
        fn send<T: Send>() {}
        send::<ServerCount>();
        send::<CommandAnswer<bool>>();
    }

    #[test]
    fn exists_answers_are_read_or_refused() {
        assert_eq!(exists_answer(Value::Integer(1)), Ok(true));
        assert_eq!(exists_answer(Value::Integer(0)), Ok(false));
        assert!(matches!(
            exists_answer(Value::Null),
            Err(CommandError::Redis(_))
        ));
    }

    #[test]
    fn set_nx_and_get_answers_are_read_or_refused() {
        assert_eq!(set_nx_answer(Value::String("OK".into())), Ok(true));
        assert_eq!(
            set_nx_answer(Value::Bytes(Bytes::from_static(b"OK"))),
            Ok(true)
        );
        assert_eq!(set_nx_answer(Value::Null), Ok(false));
        assert!(matches!(
            set_nx_answer(Value::Integer(1)),
            Err(CommandError::Redis(_))
        ));
        assert_eq!(text_answer(Value::Null), Ok(None));
        assert_eq!(
            text_answer(Value::String("running ab".into())),
            Ok(Some("running ab".to_owned()))
        );
        assert!(matches!(
            text_answer(Value::Bytes(Bytes::from_static(b"\xff"))),
            Err(CommandError::Redis(_))
        ));
        assert!(matches!(
            text_answer(Value::Integer(3)),
            Err(CommandError::Redis(_))
        ));
    }

    #[test]
    fn scan_and_mget_answers_are_read_or_refused() {
        let text = |s: &str| Value::String(s.into());
        let page = Value::Array(vec![
            text("17"),
            Value::Array(vec![
                text("a"),
                Value::Bytes(Bytes::from_static(b"b")),
                // Not UTF-8: skipped, not an error.
                Value::Bytes(Bytes::from_static(&[0xff, 0xfe])),
            ]),
        ]);
        assert_eq!(
            scan_page(page),
            Ok(("17".to_owned(), vec!["a".to_owned(), "b".to_owned()]))
        );
        let done = Value::Array(vec![Value::Integer(0), Value::Array(vec![])]);
        assert_eq!(scan_page(done), Ok(("0".to_owned(), vec![])));
        for bad in [
            Value::Null,
            Value::Array(vec![text("0")]),
            Value::Array(vec![text("x1"), Value::Array(vec![])]),
            Value::Array(vec![Value::Integer(-1), Value::Array(vec![])]),
            Value::Array(vec![text("0"), text("a")]),
        ] {
            assert!(matches!(scan_page(bad), Err(CommandError::Redis(_))));
        }

        let values = Value::Array(vec![text("1"), Value::Null, text("2")]);
        assert_eq!(
            mget_values(values.clone(), 3),
            Ok(vec![Some("1".to_owned()), None, Some("2".to_owned())])
        );
        assert!(matches!(
            mget_values(values, 2),
            Err(CommandError::Redis(_))
        ));
        assert!(matches!(
            mget_values(Value::Null, 0),
            Err(CommandError::Redis(_))
        ));
    }
}
