//! JWT verification (`ringcast::internals::control::jwt`): the whole `Verifier::verify` of a
//! connect token (size check, header, key pick, signature, time claims, iss/aud, claims mapping
//! into a `Grant`) for HS256, RS256 (2048-bit), ES256 (P-256) and EdDSA (Ed25519) keys from PEM
//! files, and ES256 from a JWKS file picked by `kid`.
//!
//! Keys are generated with `openssl` at start into a temp dir (removed at the end); tokens are
//! signed once, before timing, with a realistic claim set (user, iss, aud, three rooms, an
//! allow pattern, a small data object). One verifier per key, so each figure is one key's cost.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ringcast::internals::control::jwt::{ClaimsConfig, JwtConfig, Verifier};
use serde_json::json;

/// The fixed clock.
const NOW: u64 = 1_800_000_000;
/// A 64-byte HMAC secret.
const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A temp dir removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("ringcast-jwt-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs openssl quietly (RSA generation prints progress), showing its stderr on failure.
fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh key pair: the private PEM's bytes and the public PEM's path.
fn keypair(dir: &TempDir, name: &str, algorithm: &[&str]) -> (Vec<u8>, PathBuf) {
    let private = dir.path(&format!("{name}.key"));
    let public = dir.path(&format!("{name}.pub.pem"));
    let mut args = vec!["genpkey"];
    args.extend_from_slice(algorithm);
    args.extend_from_slice(&["-out", private.to_str().expect("utf-8 path")]);
    openssl(&args);
    openssl(&[
        "pkey",
        "-in",
        private.to_str().expect("utf-8 path"),
        "-pubout",
        "-out",
        public.to_str().expect("utf-8 path"),
    ]);
    (std::fs::read(&private).expect("private key"), public)
}

/// A JWKS file holding the P-256 key `public` as kid `k1` (its SubjectPublicKeyInfo DER ends
/// with the point 04 || x || y).
fn ec_jwks(dir: &TempDir, public: &Path) -> PathBuf {
    let der = dir.path("ec.der");
    openssl(&[
        "pkey",
        "-pubin",
        "-in",
        public.to_str().expect("utf-8 path"),
        "-outform",
        "DER",
        "-out",
        der.to_str().expect("utf-8 path"),
    ]);
    let der = std::fs::read(der).expect("DER");
    assert_eq!((der.len(), der[26]), (91, 4), "a P-256 public key");
    let set = json!({ "keys": [{
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "k1",
        "x": URL_SAFE_NO_PAD.encode(&der[27..59]),
        "y": URL_SAFE_NO_PAD.encode(&der[59..]),
    }]});
    let path = dir.path("jwks.json");
    std::fs::write(&path, set.to_string()).expect("JWKS file");
    path
}

fn verifier(key: &str) -> Verifier {
    let config: JwtConfig = toml::from_str(&format!(
        "issuer = \"https://auth.example.com\"\naudience = \"ringcast\"\n[keys.k]\n{key}"
    ))
    .expect("config");
    Verifier::new(&config, &ClaimsConfig::default()).expect("verifier")
}

fn token(alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
    let claims = json!({
        "sub": "user-1234", "iss": "https://auth.example.com", "aud": "ringcast",
        "iat": NOW - 10, "exp": NOW + 3600,
        "rooms": ["public:lobby", "team:42", "user:1234:inbox"],
        "allow_rooms": ["dm:user-1234:*"],
        "data": { "name": "Alice", "plan": "pro" },
    });
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, key).expect("token")
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(2000))
        .sample_size(30)
        .without_plots()
}

fn verify(c: &mut Criterion) {
    let dir = TempDir::new();
    let rsa = keypair(
        &dir,
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let ec = keypair(
        &dir,
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let ed = keypair(&dir, "ed", &["-algorithm", "ED25519"]);
    let jwks = ec_jwks(&dir, &ec.1);
    let pem = |alg: &str, path: &Path| {
        format!(
            "kind = \"pem\"\nalgorithms = [\"{alg}\"]\nfile = \"{}\"\n",
            path.display()
        )
    };
    let cases = [
        (
            "HS256",
            verifier(&format!(
                "kind = \"hmac\"\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\n"
            )),
            token(
                Algorithm::HS256,
                None,
                &EncodingKey::from_secret(SECRET.as_bytes()),
            ),
        ),
        (
            "RS256",
            verifier(&pem("RS256", &rsa.1)),
            token(
                Algorithm::RS256,
                None,
                &EncodingKey::from_rsa_pem(&rsa.0).expect("RSA key"),
            ),
        ),
        (
            "ES256",
            verifier(&pem("ES256", &ec.1)),
            token(
                Algorithm::ES256,
                None,
                &EncodingKey::from_ec_pem(&ec.0).expect("EC key"),
            ),
        ),
        (
            "EdDSA",
            verifier(&pem("EdDSA", &ed.1)),
            token(
                Algorithm::EdDSA,
                None,
                &EncodingKey::from_ed_pem(&ed.0).expect("Ed25519 key"),
            ),
        ),
        (
            "ES256_jwks_kid",
            verifier(&format!(
                "kind = \"jwks\"\nalgorithms = [\"ES256\"]\nfile = \"{}\"\n",
                jwks.display()
            )),
            token(
                Algorithm::ES256,
                Some("k1"),
                &EncodingKey::from_ec_pem(&ec.0).expect("EC key"),
            ),
        ),
    ];
    let mut group = c.benchmark_group("jwt_verify");
    group.throughput(Throughput::Elements(1));
    for (name, verifier, token) in &cases {
        verifier
            .verify(token, NOW)
            .expect("the bench token verifies");
        group.bench_function(*name, |b| {
            b.iter(|| verifier.verify(black_box(token), black_box(NOW)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = verify
}
criterion_main!(benches);
