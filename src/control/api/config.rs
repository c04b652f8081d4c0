//! The `[api]` table of the configuration file: where the HTTP API listens, its body limit,
//! how long idempotent answers are kept, and the API keys (bearer or HMAC) with their scopes;
//! validated into [`ApiKeys`], the key material the handlers check against, reloadable behind
//! an `ArcSwap` (a request reads it without a lock; SIGHUP swaps it).
//!
//! Plain data and checks: no I/O but reading `*_file` secrets. Must not depend on the engine,
//! the shard or the bus.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::control::secret::{Secret, SecretSource};
use crate::control::units;

/// The default body limit (`max_body`).
pub(crate) const DEFAULT_MAX_BODY: usize = 1 << 20;
/// The default lifetime of a kept idempotent answer (`idempotency_ttl`).
pub(crate) const DEFAULT_IDEMPOTENCY_TTL: Duration = Duration::from_secs(300);

/// The `[api]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiConfig {
    /// Where the API listens; off when unset.
    #[serde(default)]
    pub(crate) listen: Option<SocketAddr>,
    /// The largest request body.
    #[serde(default = "default_max_body", deserialize_with = "units::size")]
    pub(crate) max_body: usize,
    /// How long the first answer to an `Idempotency-Key` is kept.
    #[serde(
        default = "default_idempotency_ttl",
        deserialize_with = "units::duration"
    )]
    pub(crate) idempotency_ttl: Duration,
    /// API keys by name (the name is what logs and idempotency use, never the key).
    #[serde(default)]
    pub(crate) keys: BTreeMap<String, KeyConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: None,
            max_body: DEFAULT_MAX_BODY,
            idempotency_ttl: DEFAULT_IDEMPOTENCY_TTL,
            keys: BTreeMap::new(),
        }
    }
}

fn default_max_body() -> usize {
    DEFAULT_MAX_BODY
}

fn default_idempotency_ttl() -> Duration {
    DEFAULT_IDEMPOTENCY_TTL
}

/// How a key authenticates a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum KeyKind {
    /// `Authorization: Bearer <key>`.
    #[default]
    Bearer,
    /// `Ringcast-Key` + `Ringcast-Signature` (HMAC-SHA256 of the request, timestamped).
    Hmac,
}

/// One `[api.keys.<name>]` table as written. Its `Debug` never shows a secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyConfig {
    #[serde(default)]
    pub(crate) kind: KeyKind,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secret_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "units::string_list")]
    pub(crate) scopes: Vec<String>,
}

impl fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyConfig")
            .field("kind", &self.kind)
            .field("key", &self.key.as_ref().map(|_| "***"))
            .field("key_file", &self.key_file)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("secret_file", &self.secret_file)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// What a key may do (spec 2.5's table says which route needs which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Scope {
    Emit,
    Rooms,
    Disconnect,
    Read,
    Users,
}

impl Scope {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scope::Emit => "emit",
            Scope::Rooms => "rooms",
            Scope::Disconnect => "disconnect",
            Scope::Read => "read",
            Scope::Users => "users",
        }
    }

    const ALL: [Scope; 5] = [
        Scope::Emit,
        Scope::Rooms,
        Scope::Disconnect,
        Scope::Read,
        Scope::Users,
    ];
}

/// A key's scopes: `*` or a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scopes {
    all: bool,
    granted: Vec<Scope>,
}

impl Scopes {
    pub(crate) fn allows(&self, scope: Scope) -> bool {
        self.all || self.granted.contains(&scope)
    }

    /// Every scope (for tests and the open loopback API).
    pub(crate) fn everything() -> Scopes {
        Scopes {
            all: true,
            granted: Vec::new(),
        }
    }
}

/// Why the `[api]` table cannot be used: the binary prints it and exits 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiConfigError {
    /// A non-loopback `listen` with no key would open the API to the network.
    OpenToNetwork(SocketAddr),
    /// A scope no route knows, at `api.keys.<name>.scopes`.
    UnknownScope { key: String, scope: String },
    /// A key's secret is missing, doubly given, or unreadable (`path` names the field).
    Secret { path: String, reason: String },
    /// `max_body` of zero.
    ZeroMaxBody,
}

impl fmt::Display for ApiConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiConfigError::OpenToNetwork(addr) => write!(
                f,
                "api.listen = \"{addr}\" is not a loopback address and api.keys is empty: \
                 refusing to serve the API open to the network"
            ),
            ApiConfigError::UnknownScope { key, scope } => write!(
                f,
                "api.keys.{key}.scopes: unknown scope `{scope}` (emit, rooms, disconnect, \
                 read, users or *)"
            ),
            ApiConfigError::Secret { path, reason } => write!(f, "{path}: {reason}"),
            ApiConfigError::ZeroMaxBody => f.write_str("api.max_body must be at least 1 byte"),
        }
    }
}

impl std::error::Error for ApiConfigError {}

/// One key, ready to check requests against.
#[derive(Clone)]
pub(crate) struct LoadedKey {
    pub(crate) name: Arc<str>,
    pub(crate) kind: KeyKind,
    /// Bearer: SHA-256 of the key (what presented keys are compared with, in constant time,
    /// so neither the key nor its length leaks). HMAC: the secret.
    pub(crate) material: KeyMaterial,
    pub(crate) scopes: Scopes,
}

/// A key's material, by kind.
#[derive(Clone)]
pub(crate) enum KeyMaterial {
    BearerDigest([u8; 32]),
    HmacSecret(Secret),
}

impl fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedKey")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// A key's validated shape: its name, kind, scopes and where its secret comes from.
#[derive(Debug, Clone)]
struct KeySpec {
    name: Arc<str>,
    kind: KeyKind,
    source: SecretSource,
    scopes: Scopes,
}

/// The validated `[api]` table.
#[derive(Debug, Clone)]
pub(crate) struct ApiSettings {
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) max_body: usize,
    pub(crate) idempotency_ttl: Duration,
    specs: Vec<KeySpec>,
}

impl ApiConfig {
    /// Checks the table and reads every key's secret once.
    pub(crate) fn validate(&self) -> Result<(ApiSettings, ApiKeys), ApiConfigError> {
        if self.max_body == 0 {
            return Err(ApiConfigError::ZeroMaxBody);
        }
        if let Some(addr) = self.listen {
            if !addr.ip().is_loopback() && self.keys.is_empty() {
                return Err(ApiConfigError::OpenToNetwork(addr));
            }
        }
        let mut specs = Vec::with_capacity(self.keys.len());
        for (name, key) in &self.keys {
            specs.push(key.spec(name)?);
        }
        let settings = ApiSettings {
            listen: self.listen,
            max_body: self.max_body,
            idempotency_ttl: self.idempotency_ttl,
            specs,
        };
        let loaded = settings.load()?;
        Ok((settings, ApiKeys::new(loaded)))
    }
}

impl KeyConfig {
    fn spec(&self, name: &str) -> Result<KeySpec, ApiConfigError> {
        let mut scopes = Scopes {
            all: false,
            granted: Vec::new(),
        };
        for scope in &self.scopes {
            if scope == "*" {
                scopes.all = true;
                continue;
            }
            let known = Scope::ALL.into_iter().find(|s| s.as_str() == scope);
            match known {
                Some(known) => scopes.granted.push(known),
                None => {
                    return Err(ApiConfigError::UnknownScope {
                        key: name.to_owned(),
                        scope: scope.clone(),
                    })
                }
            }
        }
        let (field, inline, file, other) = match self.kind {
            KeyKind::Bearer => (
                "key",
                &self.key,
                &self.key_file,
                self.secret.is_some() || self.secret_file.is_some(),
            ),
            KeyKind::Hmac => (
                "secret",
                &self.secret,
                &self.secret_file,
                self.key.is_some() || self.key_file.is_some(),
            ),
        };
        let path = format!("api.keys.{name}.{field}");
        if other {
            let wrong = if field == "key" { "secret" } else { "key" };
            return Err(ApiConfigError::Secret {
                path,
                reason: format!("`{wrong}` does not apply to this kind of key"),
            });
        }
        let source = SecretSource::from_pair(field, inline.clone(), file.clone())
            .map_err(|reason| ApiConfigError::Secret {
                path: path.clone(),
                reason,
            })?
            .ok_or_else(|| ApiConfigError::Secret {
                path: path.clone(),
                reason: format!("set `{field}` or `{field}_file`"),
            })?;
        Ok(KeySpec {
            name: name.into(),
            kind: self.kind,
            source,
            scopes,
        })
    }
}

impl ApiSettings {
    /// Reads every key's secret now.
    fn load(&self) -> Result<Vec<LoadedKey>, ApiConfigError> {
        self.specs
            .iter()
            .map(|spec| {
                let field = match spec.kind {
                    KeyKind::Bearer => "key",
                    KeyKind::Hmac => "secret",
                };
                let secret = spec
                    .source
                    .load()
                    .map_err(|reason| ApiConfigError::Secret {
                        path: format!("api.keys.{}.{field}", spec.name),
                        reason,
                    })?;
                if secret.expose().is_empty() {
                    return Err(ApiConfigError::Secret {
                        path: format!("api.keys.{}.{field}", spec.name),
                        reason: "empty".to_owned(),
                    });
                }
                let material = match spec.kind {
                    KeyKind::Bearer => {
                        KeyMaterial::BearerDigest(Sha256::digest(secret.expose()).into())
                    }
                    KeyKind::Hmac => KeyMaterial::HmacSecret(secret),
                };
                Ok(LoadedKey {
                    name: spec.name.clone(),
                    kind: spec.kind,
                    material,
                    scopes: spec.scopes.clone(),
                })
            })
            .collect()
    }
}

/// The key material in force, shared by every shard's router; swapped whole by
/// [`ApiKeys::reload`].
#[derive(Debug, Clone)]
pub(crate) struct ApiKeys {
    keys: Arc<ArcSwap<Vec<LoadedKey>>>,
}

impl ApiKeys {
    pub(crate) fn new(keys: Vec<LoadedKey>) -> ApiKeys {
        ApiKeys {
            keys: Arc::new(ArcSwap::from_pointee(keys)),
        }
    }

    /// The keys now.
    pub(crate) fn current(&self) -> Arc<Vec<LoadedKey>> {
        self.keys.load_full()
    }

    /// Whether no key is configured (a loopback API is then open to its host).
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.load().is_empty()
    }

    /// Re-reads every `*_file` secret; on any failure the keys in force stay, and the error
    /// (which names the field, never a secret) is returned for the caller to log.
    pub(crate) fn reload(&self, settings: &ApiSettings) -> Result<(), ApiConfigError> {
        let loaded = settings.load()?;
        self.keys.store(Arc::new(loaded));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ApiConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn defaults_and_units() {
        let config = parse("").expect("empty table");
        assert_eq!(config.listen, None);
        assert_eq!(config.max_body, 1 << 20);
        assert_eq!(config.idempotency_ttl, Duration::from_secs(300));
        let config =
            parse("listen = \"127.0.0.1:3001\"\nmax_body = \"64KiB\"\nidempotency_ttl = \"1m\"")
                .expect("valid");
        assert_eq!(config.max_body, 65_536);
        assert_eq!(config.idempotency_ttl, Duration::from_secs(60));
        assert!(parse("lissten = \"127.0.0.1:1\"").is_err());
        assert!(parse("[keys.a]\nkey = \"k\"\nscope = [\"*\"]").is_err());
    }

    #[test]
    fn open_network_and_unknown_scopes_are_refused() {
        let open = parse("listen = \"0.0.0.0:3001\"").expect("parses");
        assert_eq!(
            open.validate().map(|_| ()),
            Err(ApiConfigError::OpenToNetwork(
                "0.0.0.0:3001".parse().expect("addr")
            ))
        );
        let loopback = parse("listen = \"127.0.0.1:3001\"").expect("parses");
        assert!(loopback.validate().is_ok());
        let scoped =
            parse("[keys.backend]\nkey = \"k\"\nscopes = [\"emit\", \"fly\"]").expect("parses");
        let error = scoped.validate().map(|_| ()).expect_err("unknown scope");
        assert!(
            error.to_string().contains("api.keys.backend.scopes"),
            "{error}"
        );
        let both = parse("[keys.a]\nkey = \"k\"\nkey_file = \"/x\"").expect("parses");
        assert!(both.validate().is_err());
        let none = parse("[keys.a]\nkind = \"hmac\"\nkey = \"k\"").expect("parses");
        assert!(none.validate().is_err());
    }

    #[test]
    fn secrets_never_print() {
        let config = parse("[keys.a]\nkey = \"hunter2\"\nscopes = \"emit,read\"").expect("parses");
        let (settings, keys) = config.validate().expect("valid");
        let printed = format!("{config:?} {settings:?} {keys:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        let key = &keys.current()[0];
        assert!(key.scopes.allows(Scope::Read) && !key.scopes.allows(Scope::Users));
    }

    #[test]
    fn reload_keeps_the_old_keys_on_failure() {
        let dir = std::env::temp_dir().join(format!("ringcast-api-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("key");
        std::fs::write(&file, "first\n").expect("write");
        let text = format!(
            "[keys.a]\nkey_file = {:?}\nscopes = [\"*\"]",
            file.display().to_string()
        );
        let (settings, keys) = parse(&text).expect("parses").validate().expect("valid");
        let digest = |keys: &ApiKeys| match &keys.current()[0].material {
            KeyMaterial::BearerDigest(digest) => *digest,
            KeyMaterial::HmacSecret(_) => unreachable!("a bearer key"),
        };
        let first = digest(&keys);
        assert_eq!(first, <[u8; 32]>::from(Sha256::digest(b"first")));
        std::fs::write(&file, "second").expect("write");
        keys.reload(&settings).expect("reloads");
        assert_eq!(digest(&keys), <[u8; 32]>::from(Sha256::digest(b"second")));
        std::fs::remove_file(&file).expect("remove");
        assert!(keys.reload(&settings).is_err());
        assert_eq!(digest(&keys), <[u8; 32]>::from(Sha256::digest(b"second")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
