//! JWT verification (spec `control-plane.md` §2.2): the `[auth.jwt]` and `[auth.claims]`
//! configuration, the key material it names (HMAC secrets, public-key PEM files, JWKS files),
//! reloaded on SIGHUP and when a JWKS file changes, and [`Verifier::verify`], which turns a token
//! into a [`Grant`] or an [`AuthError`].
//!
//! Pure: the only I/O is reading the configured key files; the clock is an argument; no key a
//! token names (`jku`, `x5u`, `jwk`, `x5c`) is ever fetched or used. Must not depend on the
//! engine, the shard, the bus, the network or an async runtime. Nothing here formats a secret
//! or a token: `Debug` shows key names and kinds only, errors carry fixed details.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};

use super::secret::{Secret, SecretSource};
use super::units;

/// Longest token accepted, in bytes (security rule 3).
pub const MAX_TOKEN: usize = 8 * 1024;
/// Largest `data` grant, serialized as JSON, in bytes.
pub const MAX_DATA: usize = 4 * 1024;
/// Most rooms a token may join at connect.
pub const MAX_ROOMS: usize = 100;
/// Longest user id, in bytes.
pub const MAX_USER: usize = 128;
/// Largest `leeway` the configuration may ask for (security rule 4).
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);
/// Shortest HMAC secret, in bytes: a short secret can be brute-forced from one token.
pub const MIN_HMAC_SECRET: usize = 32;

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// `[auth.jwt]`: where the token travels, what it must say, and the keys that sign it.
/// Serializes (for `--check-config`) with secrets as `***` and durations with a unit.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// The CONNECT `auth` payload's field holding the token.
    pub token_field: String,
    /// A handshake URL query parameter read when the CONNECT carries no payload (protocol v4
    /// clients); off by default because URLs end up in proxy logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_param: Option<String>,
    /// The `iss` every token must carry, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Audiences accepted (`aud` must name one of them), when set: a string or a list.
    #[serde(
        deserialize_with = "string_list_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub audience: Option<Vec<String>>,
    /// Clock skew allowed in every time check; at most [`MAX_LEEWAY`].
    #[serde(deserialize_with = "units::duration", serialize_with = "show_duration")]
    pub leeway: Duration,
    /// How long before `exp` the client is told to refresh.
    #[serde(deserialize_with = "units::duration", serialize_with = "show_duration")]
    pub refresh_before: Duration,
    /// Refuse tokens without `exp`.
    pub require_exp: bool,
    /// How often the caller runs [`Verifier::reload_changed`] (JWKS files' mtimes).
    #[serde(deserialize_with = "units::duration", serialize_with = "show_duration")]
    pub reload_interval: Duration,
    /// `[auth.jwt.keys.<name>]` in file order: without a `kid`, keys are tried in this order;
    /// a `kid` names an hmac or pem key by this name, or a JWK in a jwks key's file.
    #[serde(deserialize_with = "ordered_keys", serialize_with = "show_keys")]
    pub(crate) keys: Vec<(String, KeyConfig)>,
}

impl Default for JwtConfig {
    fn default() -> JwtConfig {
        JwtConfig {
            token_field: "token".to_owned(),
            query_param: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(5),
            refresh_before: Duration::from_secs(60),
            require_exp: true,
            reload_interval: Duration::from_secs(10),
            keys: Vec::new(),
        }
    }
}

/// What a key is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// A shared secret (`secret` or `secret_file`), HS* only.
    Hmac,
    /// One public key in a PEM file: RSA, EC or Ed25519.
    Pem,
    /// A JWKS file of public keys, picked by `kid`.
    Jwks,
}

/// `[auth.jwt.keys.<name>]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub(crate) kind: KeyKind,
    /// The `alg` values this key verifies: pinned, so neither `none` nor an HMAC token signed
    /// with a public key can pass.
    #[serde(deserialize_with = "units::string_list")]
    pub(crate) algorithms: Vec<String>,
    #[serde(
        default,
        deserialize_with = "secret_opt",
        serialize_with = "show_secret",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) secret_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) file: Option<PathBuf>,
}

/// `[auth.claims]`: RFC 6901 JSON Pointers from the claims to what the socket is granted.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimsConfig {
    /// The user id.
    pub user: String,
    /// Rooms joined at connect.
    pub rooms: String,
    /// Extra join patterns.
    pub allow_rooms: String,
    /// Namespace patterns the token is valid for.
    pub namespaces: String,
    /// The object that becomes `socket.data`.
    pub data: String,
    /// Extra `socket.data` fields: name to pointer.
    pub data_fields: BTreeMap<String, String>,
}

impl Default for ClaimsConfig {
    fn default() -> ClaimsConfig {
        ClaimsConfig {
            user: "/sub".to_owned(),
            rooms: "/rooms".to_owned(),
            allow_rooms: "/allow_rooms".to_owned(),
            namespaces: "/namespaces".to_owned(),
            data: "/data".to_owned(),
            data_fields: BTreeMap::new(),
        }
    }
}

impl JwtConfig {
    /// Checks everything that needs no file: leeway, intervals, every key's kind, algorithms
    /// and sources. The error names the key path.
    pub fn validate(&self) -> Result<(), String> {
        if self.leeway > MAX_LEEWAY {
            return Err("auth.jwt.leeway: at most 60s".to_owned());
        }
        if self.reload_interval.is_zero() {
            return Err("auth.jwt.reload_interval: must be more than 0".to_owned());
        }
        if self.token_field.is_empty() {
            return Err("auth.jwt.token_field: must not be empty".to_owned());
        }
        if self.query_param.as_deref() == Some("") {
            return Err("auth.jwt.query_param: must not be empty".to_owned());
        }
        if self.issuer.as_deref() == Some("") {
            return Err("auth.jwt.issuer: must not be empty".to_owned());
        }
        if let Some(audience) = &self.audience {
            if audience.is_empty() || audience.iter().any(String::is_empty) {
                return Err("auth.jwt.audience: name at least one non-empty audience".to_owned());
            }
        }
        for (name, key) in &self.keys {
            key_spec(name, key)?;
        }
        Ok(())
    }

    /// The key names, in file order.
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(name, _)| name.as_str())
    }
}

impl ClaimsConfig {
    /// Every pointer is a JSON Pointer (`/…`).
    pub fn validate(&self) -> Result<(), String> {
        let named = [
            ("user", &self.user),
            ("rooms", &self.rooms),
            ("allow_rooms", &self.allow_rooms),
            ("namespaces", &self.namespaces),
            ("data", &self.data),
        ];
        for (name, pointer) in named {
            check_pointer(&format!("auth.claims.{name}"), pointer)?;
        }
        for (name, pointer) in &self.data_fields {
            if name.is_empty() {
                return Err("auth.claims.data_fields: a field name is empty".to_owned());
            }
            check_pointer(&format!("auth.claims.data_fields.{name}"), pointer)?;
        }
        Ok(())
    }
}

fn check_pointer(path: &str, pointer: &str) -> Result<(), String> {
    if pointer.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "{path}: `{pointer}` is not a JSON Pointer (like \"/sub\")"
        ))
    }
}

/// `string_list` for an optional key.
fn string_list_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    units::string_list(d).map(Some)
}

/// An inline secret, wrapped at once so that it never sits in a plain `String`.
fn secret_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Some(Secret::new(String::deserialize(d)?.into_bytes())))
}

/// A duration with the largest unit that `units::parse_duration` reads back exactly.
fn show_duration<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    let ms = duration.as_millis();
    let text = match ms {
        0 => "0s".to_owned(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    };
    s.serialize_str(&text)
}

fn show_secret<S: Serializer>(_: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("***")
}

fn show_keys<S: Serializer>(keys: &[(String, KeyConfig)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(keys.iter().map(|(name, key)| (name, key)))
}

/// A table of named keys, kept in the order the deserializer yields them (file order: `toml`
/// is built with `preserve_order`).
fn ordered_keys<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, KeyConfig)>, D::Error> {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<(String, KeyConfig)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a table of named keys")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut keys: Vec<(String, KeyConfig)> = Vec::new();
            while let Some((name, key)) = map.next_entry::<String, KeyConfig>()? {
                if keys.iter().any(|(seen, _)| *seen == name) {
                    return Err(de::Error::custom(format!("key `{name}` given twice")));
                }
                keys.push((name, key));
            }
            Ok(keys)
        }
    }
    d.deserialize_map(Keys)
}

/// Key type behind an algorithm: a key only ever verifies algorithms of its own family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

/// The algorithm an `alg` names; `none` and anything unknown are `None`.
fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

fn family(alg: Algorithm) -> Family {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Hmac,
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => Family::Rsa,
        Algorithm::ES256 | Algorithm::ES384 => Family::Ec,
        Algorithm::EdDSA => Family::Ed,
    }
}

const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Where a key's material is read from.
enum Source {
    Secret(SecretSource),
    Pem(PathBuf),
    Jwks(PathBuf),
}

/// A key's configuration checked: its algorithms and its source.
fn key_spec(name: &str, key: &KeyConfig) -> Result<(Vec<Algorithm>, Source), String> {
    let path = format!("auth.jwt.keys.{name}");
    if key.algorithms.is_empty() {
        return Err(format!("{path}.algorithms: list at least one algorithm"));
    }
    let mut algorithms = Vec::with_capacity(key.algorithms.len());
    for alg in &key.algorithms {
        if alg.eq_ignore_ascii_case("none") {
            return Err(format!("{path}.algorithms: \"{alg}\" is never accepted"));
        }
        let Some(parsed) = algorithm(alg) else {
            return Err(format!("{path}.algorithms: unknown algorithm \"{alg}\""));
        };
        let fits = match key.kind {
            KeyKind::Hmac => family(parsed) == Family::Hmac,
            KeyKind::Pem | KeyKind::Jwks => family(parsed) != Family::Hmac,
        };
        if !fits {
            let kind = match key.kind {
                KeyKind::Hmac => "an hmac key takes only HS256, HS384, HS512",
                KeyKind::Pem | KeyKind::Jwks => "HS* needs an hmac key",
            };
            return Err(format!("{path}.algorithms: \"{alg}\" does not fit: {kind}"));
        }
        if !algorithms.contains(&parsed) {
            algorithms.push(parsed);
        }
    }
    // One PEM file is one key, of one type.
    if key.kind == KeyKind::Pem
        && algorithms
            .iter()
            .any(|a| family(*a) != family(algorithms[0]))
    {
        return Err(format!(
            "{path}.algorithms: a pem key is one key type: RS*/PS*, ES* or EdDSA, not a mix"
        ));
    }
    let source = match key.kind {
        KeyKind::Hmac => {
            if key.file.is_some() {
                return Err(format!("{path}.file: only pem and jwks keys read a file"));
            }
            match (&key.secret, &key.secret_file) {
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "{path}: set either `secret` or `secret_file`, not both"
                    ))
                }
                (Some(secret), None) => Source::Secret(SecretSource::Inline(secret.clone())),
                (None, Some(file)) => Source::Secret(SecretSource::File(file.clone())),
                (None, None) => {
                    return Err(format!(
                        "{path}: an hmac key needs `secret` or `secret_file`"
                    ))
                }
            }
        }
        KeyKind::Pem | KeyKind::Jwks => {
            if key.secret.is_some() || key.secret_file.is_some() {
                return Err(format!(
                    "{path}: `secret` and `secret_file` are for hmac keys only"
                ));
            }
            let Some(file) = key.file.clone() else {
                return Err(format!("{path}.file: required for a {:?} key", key.kind));
            };
            if key.kind == KeyKind::Pem {
                Source::Pem(file)
            } else {
                Source::Jwks(file)
            }
        }
    };
    // An inline secret is checked here so that `--check-config` reports it too.
    if let Source::Secret(SecretSource::Inline(secret)) = &source {
        check_secret(secret).map_err(|error| format!("{path}.secret: {error}"))?;
    }
    Ok((algorithms, source))
}

fn check_secret(secret: &Secret) -> Result<(), String> {
    if secret.expose().len() < MIN_HMAC_SECRET {
        Err(format!(
            "an HMAC secret needs at least {MIN_HMAC_SECRET} bytes"
        ))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Outcome
// ---------------------------------------------------------------------------------------------

/// What a verified token grants the socket.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// The user id (numbers converted to their decimal text).
    pub user: Option<String>,
    /// `exp`, seconds since the epoch.
    pub exp: Option<u64>,
    /// `iat`, seconds since the epoch.
    pub iat: Option<u64>,
    /// Rooms joined at connect.
    pub rooms: Vec<String>,
    /// Extra join patterns.
    pub allow_rooms: Vec<String>,
    /// Namespace patterns the token is valid for; `None`: any.
    pub namespaces: Option<Vec<String>>,
    /// `socket.data`: the data claim with `data_fields` merged in.
    pub data: Option<Value>,
}

/// Why a token was refused. The code and the message are what the client sees; the detail is
/// for debug logs and never holds the token or a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No token in the CONNECT (set by the caller).
    Missing,
    /// The token is past `exp` + leeway.
    Expired,
    /// Anything else: the reason, for logs.
    Invalid(Invalid),
}

/// The reasons behind `token_invalid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Over [`MAX_TOKEN`] bytes.
    TooLarge,
    /// Not three base64url parts, or a header or payload that is not a JSON object.
    Malformed,
    /// `alg` is `none` or unknown.
    Algorithm,
    /// The header has `crit`, which nothing here understands (RFC 7515 §4.1.11).
    Critical,
    /// No configured key takes this `alg` (and `kid`).
    NoKey,
    /// The signature does not verify with any candidate key.
    Signature,
    /// `iss` is not the configured issuer.
    Issuer,
    /// `aud` names none of the configured audiences.
    Audience,
    /// `exp` is missing and required.
    MissingExp,
    /// `exp`, `nbf` or `iat` is not a number of seconds.
    TimeClaim,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iat` is in the future.
    IssuedInFuture,
    /// The user claim is not a string or number of 1..=128 bytes.
    User,
    /// The rooms claim is not a list of strings.
    Rooms,
    /// Over [`MAX_ROOMS`] rooms.
    TooManyRooms,
    /// The allow_rooms claim is not a list of strings.
    AllowRooms,
    /// The namespaces claim is not a list of strings.
    Namespaces,
    /// `data_fields` are configured and the data claim is not an object.
    Data,
    /// The data grant serializes to over [`MAX_DATA`] bytes.
    DataTooLarge,
}

impl AuthError {
    /// The CONNECT_ERROR code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "token_missing",
            AuthError::Expired => "token_expired",
            AuthError::Invalid(_) => "token_invalid",
        }
    }

    /// The CONNECT_ERROR message: stable, since protocol v4 clients see only this.
    pub fn message(&self) -> &'static str {
        match self {
            AuthError::Missing => "token missing",
            AuthError::Expired => "token expired",
            AuthError::Invalid(Invalid::DataTooLarge) => "token data too large",
            AuthError::Invalid(_) => "invalid token",
        }
    }

    /// Why, for debug logs.
    pub fn detail(&self) -> &'static str {
        match self {
            AuthError::Missing => "no token in the CONNECT",
            AuthError::Expired => "exp is past",
            AuthError::Invalid(reason) => match reason {
                Invalid::TooLarge => "token over 8 KiB",
                Invalid::Malformed => "not a JWS compact token",
                Invalid::Algorithm => "alg is none or unknown",
                Invalid::Critical => "header has crit",
                Invalid::NoKey => "no key takes this alg and kid",
                Invalid::Signature => "signature does not verify",
                Invalid::Issuer => "wrong iss",
                Invalid::Audience => "wrong aud",
                Invalid::MissingExp => "exp missing",
                Invalid::TimeClaim => "exp, nbf or iat not a number",
                Invalid::NotYetValid => "nbf in the future",
                Invalid::IssuedInFuture => "iat in the future",
                Invalid::User => "user claim not a string or number of 1..=128 bytes",
                Invalid::Rooms => "rooms claim not a list of strings",
                Invalid::TooManyRooms => "over 100 rooms",
                Invalid::AllowRooms => "allow_rooms claim not a list of strings",
                Invalid::Namespaces => "namespaces claim not a list of strings",
                Invalid::Data => "data claim not an object while data_fields are set",
                Invalid::DataTooLarge => "data over 4 KiB",
            },
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for AuthError {}

// ---------------------------------------------------------------------------------------------
// Key material
// ---------------------------------------------------------------------------------------------

/// HMAC states keyed once at load, so a verify only clones one (no key schedule per token).
struct HmacKeys {
    hs256: Option<Hmac<Sha256>>,
    hs384: Option<Hmac<Sha384>>,
    hs512: Option<Hmac<Sha512>>,
}

impl HmacKeys {
    fn new(secret: &[u8], algorithms: &[Algorithm]) -> Result<HmacKeys, String> {
        let wants = |alg| algorithms.contains(&alg);
        let bad = |_| "the secret is not a valid HMAC key".to_owned();
        Ok(HmacKeys {
            hs256: match wants(Algorithm::HS256) {
                true => Some(<Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(bad)?),
                false => None,
            },
            hs384: match wants(Algorithm::HS384) {
                true => Some(<Hmac<Sha384> as Mac>::new_from_slice(secret).map_err(bad)?),
                false => None,
            },
            hs512: match wants(Algorithm::HS512) {
                true => Some(<Hmac<Sha512> as Mac>::new_from_slice(secret).map_err(bad)?),
                false => None,
            },
        })
    }

    /// Constant-time comparison (`verify_slice`), security rule 1.
    fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        match alg {
            Algorithm::HS256 => self.hs256.as_ref().is_some_and(|mac| {
                mac.clone()
                    .chain_update(message)
                    .verify_slice(signature)
                    .is_ok()
            }),
            Algorithm::HS384 => self.hs384.as_ref().is_some_and(|mac| {
                mac.clone()
                    .chain_update(message)
                    .verify_slice(signature)
                    .is_ok()
            }),
            Algorithm::HS512 => self.hs512.as_ref().is_some_and(|mac| {
                mac.clone()
                    .chain_update(message)
                    .verify_slice(signature)
                    .is_ok()
            }),
            _ => false,
        }
    }
}

/// One public key of a JWKS file.
struct Jwk {
    kid: Option<String>,
    /// The algorithms this JWK verifies: its key type's, narrowed by its `alg` and the
    /// configured key's `algorithms`.
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// A key's material as last loaded.
enum Material {
    /// Boxed: three keyed HMAC states are ~800 bytes.
    Hmac(Box<HmacKeys>),
    Pem(DecodingKey),
    Jwks(Vec<Jwk>),
}

/// What identifies one version of a file: the SHA-256 of its content. Metadata alone can miss a
/// change (a rename may reuse the freed inode, a same-length rewrite may land in the same coarse
/// mtime tick); a JWKS file is a few KiB, read once per reload interval.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp([u8; 32]);

fn stamp(path: &Path) -> io::Result<FileStamp> {
    use sha2::Digest;
    let content = std::fs::read(path)?;
    Ok(FileStamp(sha2::Sha256::digest(&content).into()))
}

struct Key {
    name: String,
    algorithms: Vec<Algorithm>,
    source: Source,
    /// Swapped whole on reload; read without a lock on the connect path.
    material: ArcSwap<Material>,
    /// JWKS only: the file version last read (or tried), for `reload_changed`.
    seen: Mutex<Option<FileStamp>>,
}

impl Key {
    fn load(&self) -> Result<(Material, Option<FileStamp>), String> {
        load(&self.source, &self.algorithms)
    }
}

/// Reads a key's material now, with the stamp of the JWKS file read.
fn load(
    source: &Source,
    algorithms: &[Algorithm],
) -> Result<(Material, Option<FileStamp>), String> {
    match source {
        Source::Secret(source) => {
            let secret = source.load()?;
            check_secret(&secret)?;
            Ok((
                Material::Hmac(Box::new(HmacKeys::new(secret.expose(), algorithms)?)),
                None,
            ))
        }
        Source::Pem(path) => Ok((Material::Pem(load_pem(path, algorithms)?), None)),
        Source::Jwks(path) => {
            // Stamped before reading: a write racing the read shows as a change next time.
            let stamp = stamp(path).ok();
            Ok((Material::Jwks(load_jwks(path, algorithms)?), stamp))
        }
    }
}

fn load_pem(path: &Path, algorithms: &[Algorithm]) -> Result<DecodingKey, String> {
    let bytes =
        std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    // jsonwebtoken would take an RSA private key as a public one and then fail every token.
    if bytes.windows(11).any(|w| w == b"PRIVATE KEY") {
        return Err(format!(
            "{} holds a private key; give the public key (openssl pkey -pubout)",
            path.display()
        ));
    }
    let (key, what) = match algorithms.first().map(|alg| family(*alg)) {
        Some(Family::Rsa) => (DecodingKey::from_rsa_pem(&bytes), "an RSA"),
        Some(Family::Ec) => (DecodingKey::from_ec_pem(&bytes), "an EC"),
        Some(Family::Ed) => (DecodingKey::from_ed_pem(&bytes), "an Ed25519"),
        Some(Family::Hmac) | None => return Err("no public-key algorithm".to_owned()),
    };
    key.map_err(|error| {
        format!(
            "{} is not {what} public key in PEM ({error})",
            path.display()
        )
    })
}

fn load_jwks(path: &Path, algorithms: &[Algorithm]) -> Result<Vec<Jwk>, String> {
    let bytes =
        std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let file = path.display();
    // serde_json's errors give a line and column, never the text around them.
    let set: Value =
        serde_json::from_slice(&bytes).map_err(|error| format!("{file}: not JSON ({error})"))?;
    let Some(keys) = set.get("keys").and_then(Value::as_array) else {
        return Err(format!("{file}: no `keys` list"));
    };
    let mut out = Vec::with_capacity(keys.len());
    for (index, key) in keys.iter().enumerate() {
        if let Some(jwk) =
            parse_jwk(key, algorithms).map_err(|error| format!("{file}: keys[{index}]: {error}"))?
        {
            out.push(jwk);
        }
    }
    // An empty set would refuse every token: more likely a truncated file than a rotation.
    if out.is_empty() {
        return Err(format!(
            "{file}: no signing key for the configured algorithms"
        ));
    }
    Ok(out)
}

/// One JWK: `Ok(None)` for a key this verifier never uses (encryption keys, symmetric keys,
/// other curves, other algorithms), an error for a signing key that is malformed.
fn parse_jwk(key: &Value, allowed: &[Algorithm]) -> Result<Option<Jwk>, String> {
    let Some(fields) = key.as_object() else {
        return Err("not an object".to_owned());
    };
    let text = |name: &str| -> Result<&str, String> {
        fields
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("`{name}` missing or not a string"))
    };
    if fields.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return Ok(None);
    }
    let kid = match fields.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("`kid` is not a string".to_owned()),
    };
    // Coordinates are checked for length here, so a bad file fails at load, not per token.
    let coordinate = |name: &str, len: usize| -> Result<(), String> {
        match URL_SAFE_NO_PAD.decode(text(name)?) {
            Ok(bytes) if bytes.len() == len => Ok(()),
            Ok(_) => Err(format!("`{name}` has the wrong length")),
            Err(_) => Err(format!("`{name}` is not base64url")),
        }
    };
    let bad = |error: jsonwebtoken::errors::Error| format!("unusable key ({error})");
    let (decoding, family_algorithms): (DecodingKey, &[Algorithm]) = match text("kty")? {
        "RSA" => {
            let (n, e) = (text("n")?, text("e")?);
            for (name, value) in [("n", n), ("e", e)] {
                if URL_SAFE_NO_PAD.decode(value).is_err() {
                    return Err(format!("`{name}` is not base64url"));
                }
            }
            (
                DecodingKey::from_rsa_components(n, e).map_err(bad)?,
                &RSA_ALGORITHMS,
            )
        }
        "EC" => {
            let (len, alg): (usize, &[Algorithm]) = match text("crv")? {
                "P-256" => (32, &[Algorithm::ES256]),
                "P-384" => (48, &[Algorithm::ES384]),
                _ => return Ok(None),
            };
            coordinate("x", len)?;
            coordinate("y", len)?;
            (
                DecodingKey::from_ec_components(text("x")?, text("y")?).map_err(bad)?,
                alg,
            )
        }
        "OKP" => {
            if text("crv")? != "Ed25519" {
                return Ok(None);
            }
            coordinate("x", 32)?;
            (
                DecodingKey::from_ed_components(text("x")?).map_err(bad)?,
                &[Algorithm::EdDSA],
            )
        }
        _ => return Ok(None),
    };
    let pinned = match fields.get("alg") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => match algorithm(name) {
            Some(alg) if family_algorithms.contains(&alg) => Some(alg),
            Some(_) => return Err("`alg` does not fit the key type".to_owned()),
            // An encryption algorithm (RSA-OAEP, …): not a signing key.
            None => return Ok(None),
        },
        Some(_) => return Err("`alg` is not a string".to_owned()),
    };
    let algorithms: Vec<Algorithm> = family_algorithms
        .iter()
        .copied()
        .filter(|alg| allowed.contains(alg) && pinned.is_none_or(|pinned| pinned == *alg))
        .collect();
    if algorithms.is_empty() {
        return Ok(None);
    }
    Ok(Some(Jwk {
        kid,
        algorithms,
        key: decoding,
    }))
}

// ---------------------------------------------------------------------------------------------
// Verifier
// ---------------------------------------------------------------------------------------------

/// Verifies tokens against the configured keys; shared by every shard (`verify` takes no lock).
pub struct Verifier {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<Vec<String>>,
    leeway: u64,
    require_exp: bool,
    claims: ClaimsConfig,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: the material is secret (HMAC) or noise (public keys).
        f.debug_struct("Verifier")
            .field(
                "keys",
                &self.keys.iter().map(|key| &key.name).collect::<Vec<_>>(),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("require_exp", &self.require_exp)
            .finish_non_exhaustive()
    }
}

/// A JOSE header: only what selects the key. `jku`, `x5u`, `jwk` and `x5c` are never read.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl Verifier {
    /// Validates both configurations and loads every key; the error names the key path.
    pub fn new(config: &JwtConfig, claims: &ClaimsConfig) -> Result<Verifier, String> {
        config.validate()?;
        claims.validate()?;
        if config.keys.is_empty() {
            return Err("auth.jwt.keys: configure at least one key".to_owned());
        }
        let mut keys = Vec::with_capacity(config.keys.len());
        for (name, key_config) in &config.keys {
            let (algorithms, source) = key_spec(name, key_config)?;
            let (material, stamp) = load(&source, &algorithms)
                .map_err(|error| format!("auth.jwt.keys.{name}: {error}"))?;
            if key_config.kind == KeyKind::Jwks && config.audience.is_none() {
                tracing::warn!(
                    key = %name,
                    "auth.jwt.keys.{name} is a jwks key and auth.jwt.audience is not set: tokens \
                     the identity provider issued for other applications are accepted too"
                );
            }
            keys.push(Key {
                name: name.clone(),
                algorithms,
                source,
                material: ArcSwap::from_pointee(material),
                seen: Mutex::new(stamp),
            });
        }
        Ok(Verifier {
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.leeway.as_secs(),
            require_exp: config.require_exp,
            claims: claims.clone(),
        })
    }

    /// SIGHUP: re-reads every secret file, PEM file and JWKS file. A key that fails keeps its
    /// previous material; the error lists those keys (by name, never a secret).
    pub fn reload(&self) -> Result<(), String> {
        let mut failures = Vec::new();
        for key in &self.keys {
            // Held across read and store, so a concurrent `reload_changed` cannot store an
            // older read of a JWKS file over a newer one.
            let mut seen = key.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let before = match &key.source {
                Source::Jwks(path) => stamp(path).ok(),
                _ => None,
            };
            match key.load() {
                Ok((material, stamp)) => {
                    key.material.store(Arc::new(material));
                    *seen = stamp;
                }
                Err(error) => {
                    // Seen, so the periodic check does not log the same failure again.
                    *seen = before;
                    failures.push(format!("auth.jwt.keys.{}: {error}", key.name));
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }

    /// Re-reads the JWKS files whose mtime (or inode, or size) changed since they were last
    /// read. A file that fails leaves the previous set in force and logs one error per change.
    pub fn reload_changed(&self) {
        for key in &self.keys {
            let Source::Jwks(path) = &key.source else {
                continue;
            };
            let mut seen = key.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let now = match stamp(path) {
                Ok(now) => now,
                Err(error) => {
                    // Logged once when the file goes away, again only after it came back.
                    if seen.take().is_some() {
                        tracing::error!(
                            key = %key.name,
                            file = %path.display(),
                            "JWKS file unreadable ({error}); keeping the previous keys"
                        );
                    }
                    continue;
                }
            };
            if *seen == Some(now) {
                continue;
            }
            *seen = Some(now);
            match load_jwks(path, &key.algorithms) {
                Ok(set) => {
                    tracing::info!(
                        key = %key.name,
                        file = %path.display(),
                        keys = set.len(),
                        "JWKS reloaded"
                    );
                    key.material.store(Arc::new(Material::Jwks(set)));
                }
                Err(error) => tracing::error!(
                    key = %key.name,
                    "JWKS reload failed, keeping the previous keys: {error}"
                ),
            }
        }
    }

    /// Checks a token at `now` (seconds since the epoch) and maps its claims.
    pub fn verify(&self, token: &str, now: u64) -> Result<Grant, AuthError> {
        let invalid = AuthError::Invalid;
        if token.len() > MAX_TOKEN {
            return Err(invalid(Invalid::TooLarge));
        }
        let (message, signature) = token.rsplit_once('.').ok_or(invalid(Invalid::Malformed))?;
        let (header, payload) = message.split_once('.').ok_or(invalid(Invalid::Malformed))?;
        if payload.contains('.') {
            return Err(invalid(Invalid::Malformed));
        }
        let header: Header = decode_part(header)?;
        if header.crit.is_some() {
            return Err(invalid(Invalid::Critical));
        }
        // `none`, `None`, `HS999`: never a key for them.
        let alg = algorithm(&header.alg).ok_or(invalid(Invalid::Algorithm))?;
        self.check_signature(alg, header.kid.as_deref(), message.as_bytes(), signature)?;
        let claims: Value = decode_part(payload)?;
        if !claims.is_object() {
            return Err(invalid(Invalid::Malformed));
        }
        self.check_claims(&claims, now)
    }

    /// The key candidates, in file order: with a `kid`, the hmac/pem key of that name and the
    /// JWKs with that kid; without, every key taking `alg`. The first that verifies wins.
    fn check_signature(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        message: &[u8],
        signature: &str,
    ) -> Result<(), AuthError> {
        let mut candidates = 0usize;
        // HMAC compares raw bytes; decoded once, only when an HMAC key is a candidate.
        let mut raw_signature: Option<Vec<u8>> = None;
        for key in &self.keys {
            if !key.algorithms.contains(&alg) {
                continue;
            }
            let material = key.material.load();
            match &**material {
                Material::Hmac(macs) => {
                    if kid.is_some_and(|kid| kid != key.name) {
                        continue;
                    }
                    candidates += 1;
                    let raw = match &raw_signature {
                        Some(raw) => raw,
                        None => raw_signature.insert(
                            URL_SAFE_NO_PAD
                                .decode(signature)
                                .map_err(|_| AuthError::Invalid(Invalid::Malformed))?,
                        ),
                    };
                    if macs.verify(alg, message, raw) {
                        return Ok(());
                    }
                }
                Material::Pem(public) => {
                    if kid.is_some_and(|kid| kid != key.name) {
                        continue;
                    }
                    candidates += 1;
                    if verify_public(signature, message, public, alg) {
                        return Ok(());
                    }
                }
                Material::Jwks(set) => {
                    for jwk in set.iter() {
                        if kid.is_some_and(|kid| jwk.kid.as_deref() != Some(kid))
                            || !jwk.algorithms.contains(&alg)
                        {
                            continue;
                        }
                        candidates += 1;
                        if verify_public(signature, message, &jwk.key, alg) {
                            return Ok(());
                        }
                    }
                }
            }
        }
        Err(AuthError::Invalid(if candidates == 0 {
            Invalid::NoKey
        } else {
            Invalid::Signature
        }))
    }

    fn check_claims(&self, claims: &Value, now: u64) -> Result<Grant, AuthError> {
        let invalid = AuthError::Invalid;
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(invalid(Invalid::Issuer));
            }
        }
        if let Some(audience) = &self.audience {
            let accepted = |aud: &Value| {
                aud.as_str()
                    .is_some_and(|aud| audience.iter().any(|a| a == aud))
            };
            let ok = match claims.get("aud") {
                Some(Value::Array(list)) => list.iter().any(accepted),
                Some(aud) => accepted(aud),
                None => false,
            };
            if !ok {
                return Err(invalid(Invalid::Audience));
            }
        }
        let exp = numeric_date(claims, "exp")?;
        let nbf = numeric_date(claims, "nbf")?;
        let iat = numeric_date(claims, "iat")?;
        let leeway = self.leeway;
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(invalid(Invalid::NotYetValid));
        }
        if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(invalid(Invalid::IssuedInFuture));
        }
        match exp {
            None if self.require_exp => return Err(invalid(Invalid::MissingExp)),
            Some(exp) if now > exp.saturating_add(leeway) => return Err(AuthError::Expired),
            _ => {}
        }
        let pointer = |path: &str| claims.pointer(path).filter(|value| !value.is_null());
        let user = match pointer(&self.claims.user) {
            None => None,
            Some(Value::String(user)) if !user.is_empty() && user.len() <= MAX_USER => {
                Some(user.clone())
            }
            Some(Value::Number(number)) => Some(number.to_string()),
            Some(_) => return Err(invalid(Invalid::User)),
        };
        let rooms = match pointer(&self.claims.rooms) {
            Some(Value::Array(list)) if list.len() > MAX_ROOMS => {
                return Err(invalid(Invalid::TooManyRooms))
            }
            value => string_list(value).ok_or(invalid(Invalid::Rooms))?,
        };
        let allow_rooms =
            string_list(pointer(&self.claims.allow_rooms)).ok_or(invalid(Invalid::AllowRooms))?;
        let namespaces = match pointer(&self.claims.namespaces) {
            None => None,
            value => Some(string_list(value).ok_or(invalid(Invalid::Namespaces))?),
        };
        let mut data = pointer(&self.claims.data).cloned();
        if !self.claims.data_fields.is_empty() {
            let mut fields = match data.take() {
                None => Map::new(),
                Some(Value::Object(fields)) => fields,
                Some(_) => return Err(invalid(Invalid::Data)),
            };
            for (name, path) in &self.claims.data_fields {
                if let Some(value) = pointer(path) {
                    fields.insert(name.clone(), value.clone());
                }
            }
            if !fields.is_empty() {
                data = Some(Value::Object(fields));
            }
        }
        if let Some(data) = &data {
            let mut size = ByteCount(0);
            // Writing to a counter cannot fail; an error would mean "too large" anyway.
            if serde_json::to_writer(&mut size, data).is_err() || size.0 > MAX_DATA {
                return Err(invalid(Invalid::DataTooLarge));
            }
        }
        Ok(Grant {
            user,
            exp,
            iat,
            rooms,
            allow_rooms,
            namespaces,
            data,
        })
    }
}

/// Counts serialized bytes without keeping them; stops counting past the limit.
struct ByteCount(usize);

impl io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        if self.0 > MAX_DATA {
            return Err(io::Error::other("too large"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A base64url JSON part of the token.
fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::Invalid(Invalid::Malformed))?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Invalid(Invalid::Malformed))
}

/// An RS*/PS*/ES*/EdDSA signature. The key's family always matches `alg` here (keys only
/// list algorithms of their type), which jsonwebtoken needs: it panics on a mismatch.
fn verify_public(signature: &str, message: &[u8], key: &DecodingKey, alg: Algorithm) -> bool {
    jsonwebtoken::crypto::verify(signature, message, key, alg).unwrap_or(false)
}

/// A NumericDate claim: absent, or non-negative seconds (a fraction is dropped).
fn numeric_date(claims: &Value, name: &str) -> Result<Option<u64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => match number.as_u64() {
            Some(seconds) => Ok(Some(seconds)),
            None => match number.as_f64() {
                // `as` saturates; years past 2^64 s are as good as never.
                Some(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(Some(seconds as u64)),
                _ => Err(AuthError::Invalid(Invalid::TimeClaim)),
            },
        },
        Some(_) => Err(AuthError::Invalid(Invalid::TimeClaim)),
    }
}

/// A list of strings; absent is empty; `None` for any other shape.
fn string_list(value: Option<&Value>) -> Option<Vec<String>> {
    match value {
        None => Some(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect(),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use jsonwebtoken::EncodingKey;
    use serde_json::json;

    use super::*;

    /// The fixed clock of every test.
    const NOW: u64 = 1_800_000_000;
    /// 32 bytes: the shortest secret accepted.
    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    /// A directory under the system's temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "ringcast-jwt-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }

        /// Writes `name` atomically (a temp file renamed over it), as a JWKS writer must.
        fn replace(&self, name: &str, content: &[u8]) -> PathBuf {
            let staged = self.path(&format!(".{name}.new"));
            std::fs::write(&staged, content).unwrap();
            let path = self.path(name);
            std::fs::rename(&staged, &path).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Runs openssl quietly (RSA generation prints progress), showing its stderr on failure.
    fn openssl(args: &[&str]) {
        let output = Command::new("openssl").args(args).output().unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    const RSA: &[&str] = &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
    const EC: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
    const ED: &[&str] = &["-algorithm", "ED25519"];

    /// A fresh key pair: the private PEM's bytes and the public PEM's path.
    fn keypair(dir: &TempDir, name: &str, algorithm: &[&str]) -> (Vec<u8>, PathBuf) {
        let private = dir.path(&format!("{name}.key"));
        let public = dir.path(&format!("{name}.pub.pem"));
        let mut args = vec!["genpkey"];
        args.extend_from_slice(algorithm);
        args.extend_from_slice(&["-out", private.to_str().unwrap()]);
        openssl(&args);
        openssl(&[
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        (std::fs::read(&private).unwrap(), public)
    }

    /// The JWK of a P-256 public key: its SubjectPublicKeyInfo DER (91 bytes) ends with the
    /// uncompressed point 04 || x || y.
    fn ec_jwk(dir: &TempDir, public: &Path, kid: &str) -> Value {
        let der = dir.path(&format!("{kid}.der"));
        openssl(&[
            "pkey",
            "-pubin",
            "-in",
            public.to_str().unwrap(),
            "-outform",
            "DER",
            "-out",
            der.to_str().unwrap(),
        ]);
        let der = std::fs::read(der).unwrap();
        assert_eq!((der.len(), der[26]), (91, 4));
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&der[27..59]),
            "y": URL_SAFE_NO_PAD.encode(&der[59..]),
        })
    }

    fn jwks(keys: &[&Value]) -> Vec<u8> {
        serde_json::to_vec(&json!({ "keys": keys })).unwrap()
    }

    fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn hs256(claims: &Value) -> String {
        sign(
            Algorithm::HS256,
            None,
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
    }

    fn claims() -> Value {
        json!({ "sub": "alice", "exp": NOW + 600, "iat": NOW })
    }

    fn with(mut claims: Value, key: &str, value: Value) -> Value {
        claims[key] = value;
        claims
    }

    fn without(mut claims: Value, key: &str) -> Value {
        claims.as_object_mut().unwrap().remove(key);
        claims
    }

    fn verifier(config: &str) -> Verifier {
        let config: JwtConfig = toml::from_str(config).unwrap();
        Verifier::new(&config, &ClaimsConfig::default()).unwrap()
    }

    fn new_error(config: &str) -> String {
        let config: JwtConfig = toml::from_str(config).unwrap();
        Verifier::new(&config, &ClaimsConfig::default()).unwrap_err()
    }

    /// One hmac key "app" (HS256, [`SECRET`]), after the top-level settings in `settings`.
    fn hmac_verifier(settings: &str) -> Verifier {
        verifier(&format!(
            "{settings}\n[keys.app]\nkind = \"hmac\"\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\n"
        ))
    }

    fn invalid(reason: Invalid) -> Result<Grant, AuthError> {
        Err(AuthError::Invalid(reason))
    }

    #[test]
    fn hs256_token_maps_its_claims() {
        let verifier = hmac_verifier("");
        let full = json!({
            "sub": "alice", "exp": NOW + 600, "iat": NOW,
            "rooms": ["public:lobby"], "allow_rooms": ["dm:alice:*"], "namespaces": ["/chat"],
            "data": { "plan": "pro" },
        });
        let grant = verifier.verify(&hs256(&full), NOW).unwrap();
        assert_eq!(
            grant,
            Grant {
                user: Some("alice".to_owned()),
                exp: Some(NOW + 600),
                iat: Some(NOW),
                rooms: vec!["public:lobby".to_owned()],
                allow_rooms: vec!["dm:alice:*".to_owned()],
                namespaces: Some(vec!["/chat".to_owned()]),
                data: Some(json!({ "plan": "pro" })),
            }
        );
        // Absent claims: no user, no rooms, any namespace, no data.
        let grant = verifier
            .verify(&hs256(&json!({ "exp": NOW + 1 })), NOW)
            .unwrap();
        assert_eq!(
            (grant.user, grant.namespaces, grant.data),
            (None, None, None)
        );
        // A numeric user id becomes its decimal text; anything else is refused.
        let grant = verifier
            .verify(&hs256(&with(claims(), "sub", json!(42))), NOW)
            .unwrap();
        assert_eq!(grant.user.as_deref(), Some("42"));
        for sub in [json!(true), json!({}), json!(""), json!("u".repeat(129))] {
            let token = hs256(&with(claims(), "sub", sub));
            assert_eq!(verifier.verify(&token, NOW), invalid(Invalid::User));
        }
        let token = hs256(&with(claims(), "rooms", json!(["a", 1])));
        assert_eq!(verifier.verify(&token, NOW), invalid(Invalid::Rooms));
    }

    #[test]
    fn pointers_and_data_fields() {
        let config: JwtConfig = toml::from_str(&format!(
            "[keys.app]\nkind = \"hmac\"\nalgorithms = \"HS256\"\nsecret = \"{SECRET}\"\n"
        ))
        .unwrap();
        let claims_config: ClaimsConfig = toml::from_str(
            "user = \"/https:~1~1x.com~1uid\"\ndata = \"/profile\"\n\
             [data_fields]\nroles = \"/https:~1~1x.com~1roles\"\nmissing = \"/nope\"\n",
        )
        .unwrap();
        let verifier = Verifier::new(&config, &claims_config).unwrap();
        let claims = json!({
            "exp": NOW + 60, "https://x.com/uid": "u1", "https://x.com/roles": ["admin"],
            "profile": { "name": "Al" },
        });
        let grant = verifier.verify(&hs256(&claims), NOW).unwrap();
        assert_eq!(grant.user.as_deref(), Some("u1"));
        assert_eq!(
            grant.data,
            Some(json!({ "name": "Al", "roles": ["admin"] }))
        );
        // data_fields need an object to merge into.
        let token = hs256(&with(claims, "profile", json!("text")));
        assert_eq!(verifier.verify(&token, NOW), invalid(Invalid::Data));
    }

    #[test]
    fn bad_signature_is_refused() {
        let verifier = hmac_verifier("");
        let other = EncodingKey::from_secret(b"another secret of at least 32 bytes.....");
        let token = sign(Algorithm::HS256, None, &claims(), &other);
        assert_eq!(verifier.verify(&token, NOW), invalid(Invalid::Signature));
        // A valid signature over other claims.
        let good = hs256(&claims());
        let forged = hs256(&with(claims(), "sub", json!("mallory")));
        let mut parts: Vec<&str> = forged.split('.').collect();
        parts[2] = good.rsplit('.').next().unwrap();
        assert_eq!(
            verifier.verify(&parts.join("."), NOW),
            invalid(Invalid::Signature)
        );
        assert_eq!(
            verifier.verify("not a token", NOW),
            invalid(Invalid::Malformed)
        );
        assert_eq!(
            verifier.verify(&format!("{good}.x"), NOW),
            invalid(Invalid::Malformed)
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let verifier = hmac_verifier("");
        let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
        for alg in ["none", "None", "NONE"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            for signature in ["", "c2lnbmF0dXJl"] {
                let token = format!("{header}.{payload}.{signature}");
                let refused = verifier.verify(&token, NOW).unwrap_err();
                assert_eq!(refused, AuthError::Invalid(Invalid::Algorithm));
                assert_eq!(refused.code(), "token_invalid");
            }
        }
    }

    #[test]
    fn hmac_signed_with_the_public_key_is_refused() {
        let dir = TempDir::new();
        let (_, public) = keypair(&dir, "rsa", RSA);
        let verifier = verifier(&format!(
            "[keys.rsa]\nkind = \"pem\"\nalgorithms = [\"RS256\"]\nfile = \"{}\"\n",
            public.display()
        ));
        let public_bytes = std::fs::read(&public).unwrap();
        let confused = EncodingKey::from_secret(&public_bytes);
        for kid in [None, Some("rsa")] {
            let token = sign(Algorithm::HS256, kid, &claims(), &confused);
            let refused = verifier.verify(&token, NOW).unwrap_err();
            assert_eq!(refused, AuthError::Invalid(Invalid::NoKey));
            assert_eq!(refused.code(), "token_invalid");
        }
    }

    #[test]
    fn audience_and_issuer_when_configured() {
        let verifier =
            hmac_verifier("issuer = \"https://auth\"\naudience = [\"ringcast\", \"other\"]");
        let good = with(
            with(claims(), "iss", json!("https://auth")),
            "aud",
            json!("ringcast"),
        );
        assert!(verifier.verify(&hs256(&good), NOW).is_ok());
        let listed = with(good.clone(), "aud", json!(["x", "other"]));
        assert!(verifier.verify(&hs256(&listed), NOW).is_ok());
        for aud in [json!("x"), json!(["x", "y"]), json!(7)] {
            let token = hs256(&with(good.clone(), "aud", aud));
            assert_eq!(verifier.verify(&token, NOW), invalid(Invalid::Audience));
        }
        let token = hs256(&without(good.clone(), "aud"));
        assert_eq!(verifier.verify(&token, NOW), invalid(Invalid::Audience));
        for iss in [json!("https://evil"), json!(1)] {
            let token = hs256(&with(good.clone(), "iss", iss));
            assert_eq!(verifier.verify(&token, NOW), invalid(Invalid::Issuer));
        }
        let token = hs256(&without(good, "iss"));
        assert_eq!(verifier.verify(&token, NOW), invalid(Invalid::Issuer));
        // Unconfigured: not checked.
        let open = hmac_verifier("");
        let token = hs256(&with(claims(), "aud", json!("anyone")));
        assert!(open.verify(&token, NOW).is_ok());
    }

    #[test]
    fn exp_is_required_unless_configured_otherwise() {
        let token = hs256(&without(claims(), "exp"));
        assert_eq!(
            hmac_verifier("").verify(&token, NOW),
            invalid(Invalid::MissingExp)
        );
        let grant = hmac_verifier("require_exp = false").verify(&token, NOW);
        assert_eq!(grant.map(|grant| grant.exp), Ok(None));
        let token = hs256(&with(claims(), "exp", json!("soon")));
        assert_eq!(
            hmac_verifier("").verify(&token, NOW),
            invalid(Invalid::TimeClaim)
        );
    }

    #[test]
    fn expired_within_and_beyond_leeway() {
        let verifier = hmac_verifier("leeway = \"5s\"");
        let token = hs256(&with(claims(), "exp", json!(NOW - 5)));
        assert!(verifier.verify(&token, NOW).is_ok());
        let token = hs256(&with(claims(), "exp", json!(NOW - 6)));
        let refused = verifier.verify(&token, NOW).unwrap_err();
        assert_eq!(refused, AuthError::Expired);
        assert_eq!(
            (refused.code(), refused.message()),
            ("token_expired", "token expired")
        );
        // The same token, earlier.
        assert!(verifier.verify(&token, NOW - 1).is_ok());
    }

    #[test]
    fn nbf_and_iat_in_the_future() {
        let verifier = hmac_verifier("");
        let token = hs256(&with(claims(), "nbf", json!(NOW + 60)));
        assert_eq!(verifier.verify(&token, NOW), invalid(Invalid::NotYetValid));
        let token = hs256(&with(claims(), "nbf", json!(NOW + 5)));
        assert!(verifier.verify(&token, NOW).is_ok());
        let token = hs256(&with(claims(), "iat", json!(NOW + 60)));
        assert_eq!(
            verifier.verify(&token, NOW),
            invalid(Invalid::IssuedInFuture)
        );
    }

    #[test]
    fn size_limits() {
        let verifier = hmac_verifier("");
        let token = hs256(&with(claims(), "pad", json!("x".repeat(9 * 1024))));
        assert!(token.len() > MAX_TOKEN);
        assert_eq!(verifier.verify(&token, NOW), invalid(Invalid::TooLarge));

        let token = hs256(&with(
            claims(),
            "data",
            json!({ "blob": "x".repeat(5 * 1024) }),
        ));
        assert!(token.len() <= MAX_TOKEN);
        let refused = verifier.verify(&token, NOW).unwrap_err();
        assert_eq!(refused, AuthError::Invalid(Invalid::DataTooLarge));
        assert_eq!(refused.code(), "token_invalid");
        assert!(refused.message().contains("data too large"));

        let rooms = |n: usize| json!((0..n).map(|i| format!("r{i}")).collect::<Vec<_>>());
        let token = hs256(&with(claims(), "rooms", rooms(101)));
        assert_eq!(verifier.verify(&token, NOW), invalid(Invalid::TooManyRooms));
        let token = hs256(&with(claims(), "rooms", rooms(100)));
        assert_eq!(verifier.verify(&token, NOW).map(|g| g.rooms.len()), Ok(100));
    }

    #[test]
    fn kid_selects_the_key() {
        let verifier = verifier(&format!(
            "[keys.a]\nkind = \"hmac\"\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\n\
             [keys.b]\nkind = \"hmac\"\nalgorithms = [\"HS256\", \"HS512\"]\n\
             secret = \"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"\n"
        ));
        let b = EncodingKey::from_secret(b"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
        assert!(verifier
            .verify(&sign(Algorithm::HS256, Some("b"), &claims(), &b), NOW)
            .is_ok());
        // Without a kid both keys are tried, in file order.
        assert!(verifier
            .verify(&sign(Algorithm::HS256, None, &claims(), &b), NOW)
            .is_ok());
        assert!(verifier
            .verify(&sign(Algorithm::HS512, None, &claims(), &b), NOW)
            .is_ok());
        // The kid pins the key: "a" does not verify b's signature.
        assert_eq!(
            verifier.verify(&sign(Algorithm::HS256, Some("a"), &claims(), &b), NOW),
            invalid(Invalid::Signature)
        );
        // "a" does not take HS512; an unknown kid matches nothing.
        let a = EncodingKey::from_secret(SECRET.as_bytes());
        assert_eq!(
            verifier.verify(&sign(Algorithm::HS512, Some("a"), &claims(), &a), NOW),
            invalid(Invalid::NoKey)
        );
        assert_eq!(
            verifier.verify(&sign(Algorithm::HS256, Some("zz"), &claims(), &a), NOW),
            invalid(Invalid::NoKey)
        );
    }

    #[test]
    fn header_key_urls_are_ignored() {
        let verifier = hmac_verifier("");
        let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
        let header = URL_SAFE_NO_PAD.encode(
            r#"{"alg":"HS256","jku":"http://evil/jwks","x5u":"http://evil/x5u","x5c":["AA"],"jwk":{"kty":"oct","k":"AA"}}"#,
        );
        let message = format!("{header}.{payload}");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(message.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        let token = format!("{message}.{signature}");
        assert!(verifier.verify(&token, NOW).is_ok());
        // `crit` asks for an extension nothing here implements.
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","crit":["exp"]}"#);
        let token = format!("{header}.{payload}.{signature}");
        assert_eq!(verifier.verify(&token, NOW), invalid(Invalid::Critical));
    }

    #[test]
    fn rs256_and_eddsa_from_pem() {
        let dir = TempDir::new();
        let (rsa_private, rsa_public) = keypair(&dir, "rsa", RSA);
        let (ed_private, ed_public) = keypair(&dir, "ed", ED);
        let verifier = verifier(&format!(
            "[keys.rsa]\nkind = \"pem\"\nalgorithms = [\"RS256\", \"PS256\"]\nfile = \"{}\"\n\
             [keys.ed]\nkind = \"pem\"\nalgorithms = [\"EdDSA\"]\nfile = \"{}\"\n",
            rsa_public.display(),
            ed_public.display()
        ));
        let rsa = EncodingKey::from_rsa_pem(&rsa_private).unwrap();
        let ed = EncodingKey::from_ed_pem(&ed_private).unwrap();
        for (alg, key) in [
            (Algorithm::RS256, &rsa),
            (Algorithm::PS256, &rsa),
            (Algorithm::EdDSA, &ed),
        ] {
            let grant = verifier.verify(&sign(alg, None, &claims(), key), NOW);
            assert_eq!(
                grant.map(|g| g.user),
                Ok(Some("alice".to_owned())),
                "{alg:?}"
            );
        }
        // Not an algorithm of the key; another key's signature.
        assert_eq!(
            verifier.verify(&sign(Algorithm::RS384, None, &claims(), &rsa), NOW),
            invalid(Invalid::NoKey)
        );
        let (other_private, _) = keypair(&dir, "other", ED);
        let other = EncodingKey::from_ed_pem(&other_private).unwrap();
        assert_eq!(
            verifier.verify(&sign(Algorithm::EdDSA, None, &claims(), &other), NOW),
            invalid(Invalid::Signature)
        );
    }

    #[test]
    fn es256_from_jwks_and_rotation() {
        let dir = TempDir::new();
        let (one_private, one_public) = keypair(&dir, "one", EC);
        let (two_private, two_public) = keypair(&dir, "two", EC);
        let (one_jwk, two_jwk) = (
            ec_jwk(&dir, &one_public, "k1"),
            ec_jwk(&dir, &two_public, "k2"),
        );
        let file = dir.replace("jwks.json", &jwks(&[&one_jwk]));
        let verifier = verifier(&format!(
            "audience = \"ringcast\"\n\
             [keys.idp]\nkind = \"jwks\"\nalgorithms = [\"RS256\", \"ES256\"]\nfile = \"{}\"\n",
            file.display()
        ));
        let one = EncodingKey::from_ec_pem(&one_private).unwrap();
        let two = EncodingKey::from_ec_pem(&two_private).unwrap();
        let claims = with(claims(), "aud", json!("ringcast"));
        let by_one = sign(Algorithm::ES256, Some("k1"), &claims, &one);
        let by_two = sign(Algorithm::ES256, Some("k2"), &claims, &two);
        assert!(verifier.verify(&by_one, NOW).is_ok());
        assert!(verifier
            .verify(&sign(Algorithm::ES256, None, &claims, &one), NOW)
            .is_ok());
        assert_eq!(verifier.verify(&by_two, NOW), invalid(Invalid::NoKey));
        // k1 under another kid's name.
        let misnamed = sign(Algorithm::ES256, Some("k1"), &claims, &two);
        assert_eq!(verifier.verify(&misnamed, NOW), invalid(Invalid::Signature));

        // Unchanged file: nothing to do.
        verifier.reload_changed();
        // Add k2.
        dir.replace("jwks.json", &jwks(&[&one_jwk, &two_jwk]));
        verifier.reload_changed();
        assert!(verifier.verify(&by_two, NOW).is_ok());
        assert!(verifier.verify(&by_one, NOW).is_ok());
        // Retire k1.
        dir.replace("jwks.json", &jwks(&[&two_jwk]));
        verifier.reload_changed();
        assert_eq!(verifier.verify(&by_one, NOW), invalid(Invalid::NoKey));
        assert!(verifier.verify(&by_two, NOW).is_ok());
        // Garbage, then a set with no usable key: the previous set stays.
        for bad in [&b"{\"keys\": [ garbage"[..], br#"{"keys": []}"#] {
            dir.replace("jwks.json", bad);
            verifier.reload_changed();
            assert!(verifier.verify(&by_two, NOW).is_ok());
            let error = verifier.reload().unwrap_err();
            assert!(error.starts_with("auth.jwt.keys.idp: "), "{error}");
            assert!(!error.contains("garbage"), "{error}");
            assert!(verifier.verify(&by_two, NOW).is_ok());
        }
        // Fixed again: picked up.
        dir.replace("jwks.json", &jwks(&[&one_jwk]));
        verifier.reload_changed();
        assert!(verifier.verify(&by_one, NOW).is_ok());
        assert_eq!(verifier.verify(&by_two, NOW), invalid(Invalid::NoKey));
    }

    /// Log lines written while `f` runs on this thread.
    fn logs(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_failed_jwks_reload_logs_one_error() {
        let dir = TempDir::new();
        let (_, public) = keypair(&dir, "ec", EC);
        let jwk = ec_jwk(&dir, &public, "k1");
        let file = dir.replace("jwks.json", &jwks(&[&jwk]));
        let config = format!(
            "[keys.idp]\nkind = \"jwks\"\nalgorithms = [\"ES256\"]\nfile = \"{}\"\n",
            file.display()
        );
        // No audience: one warning at start.
        let mut made = None;
        let started = logs(|| made = Some(verifier(&config)));
        assert_eq!(started.matches(" WARN ").count(), 1, "{started}");
        let verifier = made.unwrap();
        dir.replace("jwks.json", b"{\"keys\": [\"sekrit-garbage\"");
        let failed = logs(|| {
            for _ in 0..3 {
                verifier.reload_changed();
            }
        });
        assert_eq!(failed.matches(" ERROR ").count(), 1, "{failed}");
        assert!(
            failed.contains("idp") && failed.contains("jwks.json"),
            "{failed}"
        );
        assert!(!failed.contains("sekrit"), "{failed}");
        let fixed = logs(|| {
            dir.replace("jwks.json", &jwks(&[&jwk]));
            verifier.reload_changed();
            verifier.reload_changed();
        });
        assert_eq!(fixed.matches(" INFO ").count(), 1, "{fixed}");
        assert_eq!(fixed.matches(" ERROR ").count(), 0, "{fixed}");
    }

    #[test]
    fn jwks_keys_that_are_not_for_signing_are_skipped() {
        let dir = TempDir::new();
        let (private, public) = keypair(&dir, "ec", EC);
        let jwk = ec_jwk(&dir, &public, "k1");
        let encryption = with(jwk.clone(), "use", json!("enc"));
        let symmetric = json!({ "kty": "oct", "k": "c2VjcmV0", "kid": "k1" });
        let oaep = json!({ "kty": "RSA", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB" });
        let file = dir.replace("jwks.json", &jwks(&[&encryption, &symmetric, &oaep, &jwk]));
        let verifier = verifier(&format!(
            "[keys.idp]\nkind = \"jwks\"\nalgorithms = [\"ES256\"]\nfile = \"{}\"\n",
            file.display()
        ));
        let key = EncodingKey::from_ec_pem(&private).unwrap();
        assert!(verifier
            .verify(&sign(Algorithm::ES256, Some("k1"), &claims(), &key), NOW)
            .is_ok());
        // A signing key that is malformed fails the file.
        let short = with(jwk, "x", json!("AAAA"));
        dir.replace("jwks.json", &jwks(&[&short]));
        let error = verifier.reload().unwrap_err();
        assert!(
            error.contains("keys[0]: `x` has the wrong length"),
            "{error}"
        );
    }

    #[test]
    fn sighup_rereads_secret_files() {
        let dir = TempDir::new();
        let file = dir.replace("secret", format!("{SECRET}\n").as_bytes());
        let verifier = verifier(&format!(
            "[keys.app]\nkind = \"hmac\"\nalgorithms = [\"HS256\"]\nsecret_file = \"{}\"\n",
            file.display()
        ));
        let old = hs256(&claims());
        assert!(verifier.verify(&old, NOW).is_ok());
        let next = "ffffffffffffffffffffffffffffffffffff";
        dir.replace("secret", next.as_bytes());
        verifier.reload().unwrap();
        assert_eq!(verifier.verify(&old, NOW), invalid(Invalid::Signature));
        let new = sign(
            Algorithm::HS256,
            None,
            &claims(),
            &EncodingKey::from_secret(next.as_bytes()),
        );
        assert!(verifier.verify(&new, NOW).is_ok());
        // Too short: refused, the previous secret stays, the error names the key only.
        dir.replace("secret", b"short-secret-value");
        let error = verifier.reload().unwrap_err();
        assert!(error.starts_with("auth.jwt.keys.app: "), "{error}");
        assert!(!error.contains("short-secret-value"), "{error}");
        assert!(verifier.verify(&new, NOW).is_ok());
    }

    #[test]
    fn configuration_errors_name_the_key() {
        let hmac = |algorithms: &str, secret: &str| {
            format!("[keys.app]\nkind = \"hmac\"\nalgorithms = {algorithms}\n{secret}\n")
        };
        let secret = format!("secret = \"{SECRET}\"");
        assert_eq!(
            new_error(&hmac("[\"HS999\"]", &secret)),
            "auth.jwt.keys.app.algorithms: unknown algorithm \"HS999\""
        );
        assert!(new_error(&hmac("[\"none\"]", &secret))
            .starts_with("auth.jwt.keys.app.algorithms: \"none\""));
        assert!(new_error(&hmac("[]", &secret)).starts_with("auth.jwt.keys.app.algorithms:"));
        assert!(new_error(&hmac("[\"RS256\"]", &secret))
            .starts_with("auth.jwt.keys.app.algorithms: \"RS256\" does not fit"));
        let short = new_error(&hmac("[\"HS256\"]", "secret = \"too-short\""));
        assert_eq!(
            short,
            "auth.jwt.keys.app.secret: an HMAC secret needs at least 32 bytes"
        );
        assert_eq!(
            new_error(&hmac(
                "[\"HS256\"]",
                &format!("{secret}\nsecret_file = \"/nonexistent\"")
            )),
            "auth.jwt.keys.app: set either `secret` or `secret_file`, not both"
        );
        assert!(
            new_error(&hmac("[\"HS256\"]", "secret_file = \"/nonexistent/s\""))
                .starts_with("auth.jwt.keys.app: cannot read /nonexistent/s")
        );
        assert!(new_error(
            "[keys.pub]\nkind = \"pem\"\nalgorithms = [\"HS256\"]\nfile = \"/k.pem\"\n"
        )
        .starts_with("auth.jwt.keys.pub.algorithms: \"HS256\" does not fit"));
        assert!(new_error(
            "[keys.pub]\nkind = \"pem\"\nalgorithms = [\"RS256\", \"ES256\"]\nfile = \"/k.pem\"\n"
        )
        .starts_with("auth.jwt.keys.pub.algorithms: a pem key is one key type"));
        assert_eq!(
            new_error(&format!(
                "leeway = \"61s\"\n{}",
                hmac("[\"HS256\"]", &secret)
            )),
            "auth.jwt.leeway: at most 60s"
        );
        assert_eq!(new_error(""), "auth.jwt.keys: configure at least one key");
        // A private key where a public one belongs.
        let dir = TempDir::new();
        keypair(&dir, "ec", EC);
        let error = new_error(&format!(
            "[keys.pub]\nkind = \"pem\"\nalgorithms = [\"ES256\"]\nfile = \"{}\"\n",
            dir.path("ec.key").display()
        ));
        assert!(error.contains("holds a private key"), "{error}");
        // Unknown keys and types are serde errors (the loader adds the line).
        assert!(toml::from_str::<JwtConfig>("levay = \"5s\"").is_err());
        assert!(toml::from_str::<JwtConfig>("[keys.a]\nkind = \"x509\"\nalgorithms = []").is_err());
        assert!(toml::from_str::<ClaimsConfig>("user = \"sub\"")
            .unwrap()
            .validate()
            .unwrap_err()
            .starts_with("auth.claims.user:"));
    }

    #[test]
    fn serializes_redacted_and_reads_back() {
        let text = format!(
            "audience = \"ringcast\"\nleeway = 1500\nrefresh_before = \"2m\"\n\
             [keys.app]\nkind = \"hmac\"\nalgorithms = \"HS256\"\nsecret = \"{SECRET}\"\n\
             [keys.idp]\nkind = \"jwks\"\nalgorithms = [\"ES256\"]\nfile = \"/etc/jwks.json\"\n"
        );
        let config: JwtConfig = toml::from_str(&text).unwrap();
        let shown = toml::to_string(&config).unwrap();
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("secret = \"***\""), "{shown}");
        let back: JwtConfig = toml::from_str(&shown).unwrap();
        assert_eq!(back.leeway, Duration::from_millis(1500));
        assert_eq!(back.refresh_before, Duration::from_secs(120));
        assert_eq!(back.reload_interval, Duration::from_secs(10));
        assert_eq!(back.key_names().collect::<Vec<_>>(), ["app", "idp"]);
        assert_eq!(back.audience, config.audience);
        let claims = toml::to_string(&ClaimsConfig::default()).unwrap();
        let claims: ClaimsConfig = toml::from_str(&claims).unwrap();
        assert_eq!(claims.user, "/sub");
    }

    #[test]
    fn defaults_order_and_no_secret_in_debug() {
        let config: JwtConfig = toml::from_str(&format!(
            "audience = \"a, b\"\n\
             [keys.zeta]\nkind = \"hmac\"\nalgorithms = \"HS256\"\nsecret = \"{SECRET}\"\n\
             [keys.alpha]\nkind = \"hmac\"\nalgorithms = \"HS256\"\nsecret = \"{SECRET}\"\n"
        ))
        .unwrap();
        assert_eq!(config.key_names().collect::<Vec<_>>(), ["zeta", "alpha"]);
        assert_eq!(config.token_field, "token");
        assert_eq!(config.query_param, None);
        assert_eq!(config.leeway, Duration::from_secs(5));
        assert_eq!(config.refresh_before, Duration::from_secs(60));
        assert_eq!(config.reload_interval, Duration::from_secs(10));
        assert!(config.require_exp);
        assert_eq!(config.audience, Some(vec!["a".to_owned(), "b".to_owned()]));
        let verifier = Verifier::new(&config, &ClaimsConfig::default()).unwrap();
        let token = hs256(&claims());
        for debug in [format!("{config:?}"), format!("{verifier:?}")] {
            assert!(!debug.contains(SECRET), "{debug}");
        }
        let error = verifier.verify(&token, NOW).unwrap_err();
        let shown = format!("{error:?} {error} {}", error.detail());
        assert!(!shown.contains(&token) && !shown.contains(SECRET));
        assert_eq!(AuthError::Missing.code(), "token_missing");
        assert_eq!(AuthError::Missing.message(), "token missing");
    }
}
