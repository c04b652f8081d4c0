//! Who is calling the HTTP API: `Authorization: Bearer <key>` (SHA-256 of the presented key
//! against SHA-256 of each configured key) or, for `kind = "hmac"` keys, `Ringcast-Key` plus a
//! timestamped `Ringcast-Signature` over the request. Every comparison goes through
//! [`digests_equal`], constant time over fixed-length digests, so neither a key's bytes nor
//! its length leak through timing. A key in the query string is refused outright.
//!
//! No secret, signature or header value ever reaches a log line or an error message from
//! here: errors say what was wrong, never what was sent. Must not depend on the engine, the
//! shard or the bus.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::config::{KeyKind, KeyMaterial, LoadedKey, Scopes};

/// How far a signature's timestamp may be from the server's clock, either way.
pub(crate) const SIGNATURE_WINDOW_S: u64 = 300;

/// Query parameters that would carry a key (they leak into access logs): never accepted.
const KEY_PARAMS: [&str; 4] = ["api_key", "key", "token", "access_token"];

/// The one comparison every credential check uses: two SHA-256-sized digests, compared in
/// constant time.
pub(crate) fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// The caller a request was authenticated as.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The key's name (what logs and idempotency name; never the key).
    pub(crate) name: Arc<str>,
    pub(crate) scopes: Scopes,
}

/// Why a request is not authenticated (answered 401; the message is safe to send back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// No credentials.
    Missing,
    /// A credential in the query string.
    InQuery,
    /// Not a key we know, or a bad signature.
    Invalid,
    /// A signature header that does not parse.
    MalformedSignature,
    /// A signature outside the time window.
    Expired,
}

impl AuthError {
    pub(crate) fn message(self) -> &'static str {
        match self {
            AuthError::Missing => "an API key is required (Authorization: Bearer <key>)",
            AuthError::InQuery => {
                "API keys are never accepted in the query string; use the Authorization header"
            }
            AuthError::Invalid => "invalid API key or signature",
            AuthError::MalformedSignature => {
                "malformed Ringcast-Signature (expected t=<unix seconds>,v1=<hex>)"
            }
            AuthError::Expired => "the signature's timestamp is outside the allowed window",
        }
    }
}

/// What a request presents, borrowed from it.
pub(crate) struct Presented<'r> {
    pub(crate) authorization: Option<&'r str>,
    pub(crate) key_name: Option<&'r str>,
    pub(crate) signature: Option<&'r str>,
    /// `GET`, `POST`...
    pub(crate) method: &'r str,
    /// The request target as sent: path, and `?query` when there is one.
    pub(crate) path_and_query: &'r str,
    pub(crate) query: &'r str,
    pub(crate) body: &'r [u8],
    /// Unix seconds now.
    pub(crate) now: u64,
}

/// Authenticates a request against `keys`. With no key configured the API is open (allowed
/// only on loopback, which the configuration checked) and the caller is `anonymous` with
/// every scope.
pub(crate) fn authenticate(
    keys: &[LoadedKey],
    presented: &Presented<'_>,
) -> Result<Caller, AuthError> {
    if key_in_query(presented.query) {
        return Err(AuthError::InQuery);
    }
    if keys.is_empty() {
        return Ok(Caller {
            name: "anonymous".into(),
            scopes: Scopes::everything(),
        });
    }
    if let Some(name) = presented.key_name {
        return hmac_caller(keys, name, presented);
    }
    let Some(authorization) = presented.authorization else {
        return Err(AuthError::Missing);
    };
    let Some(token) = bearer_token(authorization) else {
        return Err(AuthError::Invalid);
    };
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    // Every bearer key is compared, matched or not, so the time taken does not say which.
    let mut found = None;
    for key in keys {
        if let KeyMaterial::BearerDigest(expected) = &key.material {
            if digests_equal(&digest, expected) && found.is_none() {
                found = Some(key);
            }
        }
    }
    found.map(caller).ok_or(AuthError::Invalid)
}

fn caller(key: &LoadedKey) -> Caller {
    Caller {
        name: key.name.clone(),
        scopes: key.scopes.clone(),
    }
}

/// `Bearer <token>` (scheme in any case, one space or more).
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn key_in_query(query: &str) -> bool {
    query
        .split('&')
        .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
        .any(|name| KEY_PARAMS.iter().any(|k| name.eq_ignore_ascii_case(k)))
}

/// An HMAC key's caller: the signature names its time and covers the method, the target and
/// the body, so a captured request can't be replayed after the window or altered.
fn hmac_caller(
    keys: &[LoadedKey],
    name: &str,
    presented: &Presented<'_>,
) -> Result<Caller, AuthError> {
    let key = keys
        .iter()
        .find(|key| key.kind == KeyKind::Hmac && *key.name == *name);
    let signature = presented.signature.ok_or(AuthError::MalformedSignature)?;
    let (t, v1) = parse_signature(signature).ok_or(AuthError::MalformedSignature)?;
    let Some(KeyMaterial::HmacSecret(secret)) = key.map(|key| &key.material) else {
        return Err(AuthError::Invalid);
    };
    if presented.now.abs_diff(t) > SIGNATURE_WINDOW_S {
        return Err(AuthError::Expired);
    }
    let expected = sign(
        secret.expose(),
        t,
        presented.method,
        presented.path_and_query,
        presented.body,
    );
    if digests_equal(&expected, &v1) {
        key.map(caller).ok_or(AuthError::Invalid)
    } else {
        Err(AuthError::Invalid)
    }
}

/// HMAC-SHA256(secret, `t.METHOD.path_and_query.body`).
pub(crate) fn sign(
    secret: &[u8],
    t: u64,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> [u8; 32] {
    // HMAC takes keys of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return [0; 32];
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(method.as_bytes());
    mac.update(b".");
    mac.update(path_and_query.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// `t=<unix>,v1=<64 hex digits>` in either order, spaces allowed around the parts.
fn parse_signature(header: &str) -> Option<(u64, [u8; 32])> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        let (name, value) = part.trim().split_once('=')?;
        match name.trim() {
            "t" => t = Some(value.trim().parse::<u64>().ok()?),
            "v1" => v1 = Some(decode_hex32(value.trim())?),
            _ => {}
        }
    }
    Some((t?, v1?))
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let high = (pair[0] as char).to_digit(16)?;
        let low = (pair[1] as char).to_digit(16)?;
        out[i] = (high * 16 + low) as u8;
    }
    Some(out)
}

/// Lower-case hex of a digest (for tests and clients that sign).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::config::{ApiConfig, ApiKeys};

    fn keys() -> ApiKeys {
        let config: ApiConfig = toml::from_str(
            "[keys.backend]\nkey = \"bearer-secret\"\nscopes = [\"*\"]\n\
             [keys.reader]\nkey = \"reader-secret\"\nscopes = [\"read\"]\n\
             [keys.signer]\nkind = \"hmac\"\nsecret = \"hmac-secret\"\nscopes = [\"emit\"]",
        )
        .expect("parses");
        config.validate().expect("valid").1
    }

    fn presented<'a>(authorization: Option<&'a str>, query: &'a str) -> Presented<'a> {
        Presented {
            authorization,
            key_name: None,
            signature: None,
            method: "POST",
            path_and_query: "/v1/emit",
            query,
            body: b"{}",
            now: 1_800_000_000,
        }
    }

    #[test]
    fn the_comparison_is_over_whole_digests() {
        let a: [u8; 32] = Sha256::digest(b"a").into();
        let mut b = a;
        assert!(digests_equal(&a, &b));
        b[31] ^= 1;
        assert!(!digests_equal(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!digests_equal(&a, &b));
    }

    #[test]
    fn bearer_keys_by_digest() {
        let keys = keys().current();
        let ok = authenticate(&keys, &presented(Some("Bearer bearer-secret"), "")).expect("ok");
        assert_eq!(&*ok.name, "backend");
        let reader = authenticate(&keys, &presented(Some("bearer reader-secret"), "")).expect("ok");
        assert_eq!(&*reader.name, "reader");
        for wrong in [
            "Bearer bearer-secreT",
            "Bearer ",
            "Basic bearer-secret",
            "bearer-secret",
        ] {
            let outcome = authenticate(&keys, &presented(Some(wrong), ""));
            assert_eq!(
                outcome.map(|c| c.name).err(),
                Some(AuthError::Invalid),
                "{wrong}"
            );
        }
        assert_eq!(
            authenticate(&keys, &presented(None, "")).err(),
            Some(AuthError::Missing)
        );
        // An HMAC secret is no bearer key.
        assert!(authenticate(&keys, &presented(Some("Bearer hmac-secret"), "")).is_err());
    }

    #[test]
    fn keys_in_the_query_are_refused_even_when_valid() {
        let keys = keys().current();
        for query in ["api_key=bearer-secret", "a=1&key=x", "token=y", "TOKEN"] {
            let outcome = authenticate(&keys, &presented(Some("Bearer bearer-secret"), query));
            assert_eq!(outcome.err(), Some(AuthError::InQuery), "{query}");
        }
        assert!(authenticate(&keys, &presented(Some("Bearer bearer-secret"), "keys=1")).is_ok());
    }

    #[test]
    fn hmac_signatures_cover_time_method_target_and_body() {
        let keys = keys().current();
        let now = 1_800_000_000;
        let signed = |t: u64, body: &[u8]| {
            format!(
                "t={t},v1={}",
                hex(&sign(b"hmac-secret", t, "POST", "/v1/emit", body))
            )
        };
        let check = |signature: &str, body: &[u8]| {
            let mut p = presented(None, "");
            p.key_name = Some("signer");
            p.signature = Some(signature);
            p.body = body;
            p.now = now;
            authenticate(&keys, &p).map(|c| c.name.to_string())
        };
        assert_eq!(check(&signed(now, b"{}"), b"{}"), Ok("signer".to_owned()));
        assert_eq!(
            check(&signed(now - 299, b"{}"), b"{}"),
            Ok("signer".to_owned())
        );
        assert_eq!(
            check(&signed(now - 400, b"{}"), b"{}"),
            Err(AuthError::Expired)
        );
        assert_eq!(
            check(&signed(now + 400, b"{}"), b"{}"),
            Err(AuthError::Expired)
        );
        assert_eq!(check(&signed(now, b"{}"), b"{ }"), Err(AuthError::Invalid));
        assert_eq!(
            check("t=1,v1=zz", b"{}"),
            Err(AuthError::MalformedSignature)
        );
        assert_eq!(check("nonsense", b"{}"), Err(AuthError::MalformedSignature));
        // A bearer key's name is not an HMAC key.
        let mut p = presented(None, "");
        p.key_name = Some("backend");
        let signature = signed(now, b"{}");
        p.signature = Some(&signature);
        p.now = now;
        assert_eq!(authenticate(&keys, &p).err(), Some(AuthError::Invalid));
    }

    #[test]
    fn no_keys_means_an_open_loopback_api() {
        let caller = authenticate(&[], &presented(None, "")).expect("open");
        assert!(caller.scopes.allows(super::super::config::Scope::Users));
        assert_eq!(
            authenticate(&[], &presented(None, "api_key=x")).err(),
            Some(AuthError::InQuery)
        );
    }
}
