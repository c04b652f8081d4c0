//! What a hook request is made of (spec §2.4): the CloudEvents 1.0 JSON envelope (`id`
//! `<boot_id>-<shard>-<counter>`, `source` `ringcast://<node>/<boot_id>`, `subject`, `time` in
//! RFC 3339),
//! the `Ringcast-Signature` header (`t=<unix>,v1=<hex HMAC-SHA256(secret, t.body)>`, one `v1`
//! per secret) and the delivery id (a UUID, stable across retries of one request).
//!
//! Pure: must not depend on sockets, the runtime or `net`.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::control::secret::Secret;

/// Who sends the events: this node under this boot.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    /// `ringcast://<node>/<boot_id>`.
    pub(crate) source: String,
    pub(crate) boot_id: String,
    pub(crate) node: String,
}

impl Origin {
    /// A new boot of `node`: a random boot id.
    pub(crate) fn new(node: &str) -> Origin {
        let mut bytes = [0u8; 8];
        // No randomness at all would be a broken OS; the clock still tells boots apart.
        if getrandom::getrandom(&mut bytes).is_err() {
            bytes = unix_millis().to_le_bytes();
        }
        let boot_id = hex(&bytes);
        Origin {
            source: format!("ringcast://{node}/{boot_id}"),
            boot_id,
            node: node.to_owned(),
        }
    }

    /// An event id: unique across boots, shards and events.
    pub(crate) fn event_id(&self, shard: usize, counter: u64) -> String {
        format!("{}-{shard}-{counter:06}", self.boot_id)
    }
}

/// One CloudEvent: its type, id, subject (a socket id) and data.
pub(crate) struct CloudEvent {
    pub(crate) kind: &'static str,
    pub(crate) id: String,
    pub(crate) subject: Option<String>,
    pub(crate) data: Map<String, Value>,
}

/// The envelope as written: borrowed, so the data is not copied to be serialized.
#[derive(serde::Serialize)]
struct Envelope<'a> {
    specversion: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    source: &'a str,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    datacontenttype: &'static str,
    data: &'a Map<String, Value>,
}

impl CloudEvent {
    /// The event as JSON, `time` now.
    pub(crate) fn to_json(&self, origin: &Origin) -> Vec<u8> {
        let envelope = Envelope {
            specversion: "1.0",
            kind: self.kind,
            id: &self.id,
            source: &origin.source,
            time: crate::datetime::iso_millis(unix_millis()),
            subject: self.subject.as_deref(),
            datacontenttype: "application/json",
            data: &self.data,
        };
        // Strings and numbers only: serializing cannot fail.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }
}

/// `t=<t>,v1=<hex>` with one `v1` per secret (the current one first).
pub(crate) fn signature(secrets: &[Secret], t: u64, body: &[u8]) -> String {
    let mut header = format!("t={t}");
    for secret in secrets {
        // HMAC takes a key of any length.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose()) else {
            continue;
        };
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        header.push_str(",v1=");
        header.push_str(&hex(&mac.finalize().into_bytes()));
    }
    header
}

/// A random (version 4) UUID.
pub(crate) fn delivery_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&unix_millis().to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let text = hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &text[..8],
        &text[8..12],
        &text[12..16],
        &text[16..20],
        &text[20..]
    )
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

/// Milliseconds since the epoch, now.
pub(crate) fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_has_one_v1_per_secret() {
        let secrets = [Secret::new(b"a".to_vec()), Secret::new(b"b".to_vec())];
        let header = signature(&secrets, 1_700_000_000, b"{}");
        let parts: Vec<&str> = header.split(',').collect();
        assert_eq!(parts[0], "t=1700000000");
        assert_eq!(parts.len(), 3);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"a").expect("key");
        mac.update(b"1700000000.{}");
        assert_eq!(
            parts[1],
            format!("v1={}", hex(&mac.finalize().into_bytes()))
        );
    }

    #[test]
    fn ids_are_unique_and_shaped() {
        let origin = Origin::new("edge-1");
        assert!(origin.source.starts_with("ringcast://edge-1/"));
        assert_eq!(
            origin.event_id(1, 42),
            format!("{}-1-000042", origin.boot_id)
        );
        let (a, b) = (delivery_id(), delivery_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
