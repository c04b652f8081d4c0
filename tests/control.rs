//! The standalone tier's configuration and auth (spec `control-plane.md` §2.1, §2.2, Part 3
//! tests 1-3, 5-14, 28, 49): the real binary with a config file, tokens minted with PyJWT from
//! keys `openssl` generates per run, and socket.io-client 4.x / 2.x and python-socketio as
//! clients. Every server and script is bounded and killed by its own handle.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::script::{self, Runtime};
use common::standalone::{s, Server, TempDir};

const SCRIPT_DEADLINE: Duration = Duration::from_secs(40);

/// The run's key material: an HMAC secret, an RSA key pair (PEM) and two P-256 keys (for a
/// JWKS file), all made here.
struct Keys {
    dir: TempDir,
}

const HMAC_SECRET: &str = "control-test-hmac-secret-of-40-bytes-ok!";
const ISSUER: &str = "https://auth.example.test";
const AUDIENCE: &str = "ringcast";

impl Keys {
    fn generate(name: &str) -> Keys {
        let dir = TempDir::new(name);
        std::fs::write(dir.path("hs.key"), format!("{HMAC_SECRET}\n")).expect("secret");
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .stderr(Stdio::null())
                .status()
                .expect("run openssl (is it installed?)");
            assert!(status.success(), "openssl {args:?}");
        };
        let rsa = dir.path("rsa.pem");
        let rsa_pub = dir.path("rsa.pub.pem");
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            s(&rsa),
        ]);
        openssl(&["pkey", "-in", s(&rsa), "-pubout", "-out", s(&rsa_pub)]);
        for ec in ["ec1.pem", "ec2.pem"] {
            let path = dir.path(ec);
            openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                s(&path),
            ]);
        }
        let keys = Keys { dir };
        keys.write_jwks(&[("k1", "ec1.pem")]);
        keys
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path(name)
    }

    /// Writes jwks.json (atomically) with the public halves of these (kid, key file) pairs.
    fn write_jwks(&self, keys: &[(&str, &str)]) {
        let mut args = vec![
            "py/jwt_mint.py".to_owned(),
            "jwks".to_owned(),
            s(&self.path("jwks.json")).to_owned(),
        ];
        args.extend(
            keys.iter()
                .map(|(kid, file)| format!("{kid}={}", s(&self.path(file)))),
        );
        let status = Command::new(script::python())
            .args(&args)
            .current_dir(script::clients_dir())
            .status()
            .expect("write the JWKS");
        assert!(status.success(), "jwt_mint.py jwks");
    }

    /// A token signed with `alg` by `key_file` (relative to the keys' dir) over `claims`
    /// (with the configured issuer and audience unless they name their own); `"+N"` for
    /// iat/exp/nbf means now + N s.
    fn mint(&self, alg: &str, key_file: &str, claims: &str, kid: Option<&str>) -> String {
        let key = self.path(key_file);
        let mut claims: serde_json::Value = serde_json::from_str(claims).expect("claims JSON");
        for (name, value) in [("iss", ISSUER), ("aud", AUDIENCE)] {
            if claims.get(name).is_none() {
                claims[name] = value.into();
            }
        }
        let claims = claims.to_string();
        let mut args = vec!["py/jwt_mint.py", alg, s(&key), &claims];
        args.extend(kid);
        let output = Command::new(script::python())
            .args(&args)
            .current_dir(script::clients_dir())
            .output()
            .expect("mint a token");
        assert!(
            output.status.success(),
            "jwt_mint.py {alg} {claims}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("a token is text")
            .trim()
            .to_owned()
    }

    fn hs256(&self, claims: &str) -> String {
        self.mint("HS256", "hs.key", claims, None)
    }
}

/// The configuration most tests use: `/` open, `/chat` and `/other` on JWT, `/limited` open
/// with an event rate.
fn config(keys: &Keys, jwt_extra: &str) -> String {
    format!(
        r#"[server]
cores = 2

[auth.jwt]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
leeway = "1s"
refresh_before = "2s"
reload_interval = "200ms"
{jwt_extra}

[auth.jwt.keys.app]
kind = "hmac"
algorithms = ["HS256"]
secret_file = "{hs}"

[auth.jwt.keys.rsa]
kind = "pem"
algorithms = ["RS256"]
file = "{rsa}"

[auth.jwt.keys.idp]
kind = "jwks"
algorithms = ["ES256"]
file = "{jwks}"

[namespaces."/"]
auth = "none"

[namespaces."/chat"]
auth = "jwt"
join = ["public:*", "dm:{{user}}:*"]
publish = ["team:*", "public:*"]

[namespaces."/other"]
auth = "jwt"

[namespaces."/limited"]
event_rate = "10/s"
event_burst = 20
"#,
        hs = s(&keys.path("hs.key")),
        rsa = s(&keys.path("rsa.pub.pem")),
        jwks = s(&keys.path("jwks.json")),
    )
}

impl Server {
    fn node(&self, scenario: &str, tokens: &serde_json::Value, env: &[(&str, String)]) {
        let mut all = vec![("RINGCAST_TOKENS", tokens.to_string())];
        all.extend(env.iter().cloned());
        script::run(
            Runtime::Node,
            "js/control.mjs",
            &["websocket", scenario],
            &self.url,
            &all,
            SCRIPT_DEADLINE,
        )
        .expect_ok();
    }

    fn python(&self, scenario: &str, tokens: &serde_json::Value, env: &[(&str, String)]) {
        let mut all = vec![("RINGCAST_TOKENS", tokens.to_string())];
        all.extend(env.iter().cloned());
        script::run(
            Runtime::Python,
            "py/control.py",
            &[scenario],
            &self.url,
            &all,
            SCRIPT_DEADLINE,
        )
        .expect_ok();
    }
}

/// `ringcast --check-config` with `args`: (exit code, stdout, stderr).
fn check_config(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringcast"));
    command.arg("--check-config").args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("run ringcast --check-config");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_config_prints_the_effective_configuration_with_secrets_hidden() {
    let keys = Keys::generate("check");
    let text = format!(
        "{}\n[redis]\nurl = \"redis://ops:redis-password-1@127.0.0.1:1\"\n\n[admin]\nusername = \"ops\"\npassword_hash = \"$2b$10$abcdefghijklmnopqrstuuXyZ\"\n",
        config(&keys, "")
    )
    .replace(
        "secret_file = ",
        "# the inline form, to see it hidden\nsecret = \"inline-secret-that-is-long-enough-0123456789\"\n# ",
    );
    let path = keys.path("check.toml");
    std::fs::write(&path, &text).expect("write");
    let (code, stdout, stderr) = check_config(&["--config", s(&path)], &[]);
    assert_eq!(code, 0, "{stderr}");
    for secret in [
        "inline-secret-that-is-long-enough-0123456789",
        "redis-password-1",
        "$2b$10$abcdefghijklmnopqrstuuXyZ",
    ] {
        assert!(!stdout.contains(secret), "a secret printed:\n{stdout}");
    }
    assert!(stdout.contains("secret = \"***\""), "{stdout}");
    assert!(stdout.contains("[namespaces.\"/chat\"]"), "{stdout}");
    assert!(
        stdout.contains("ping_interval = \"25s\""),
        "defaults printed:\n{stdout}"
    );

    // An unknown key, and a wrong type: exit 2, naming the key and the line.
    std::fs::write(
        &path,
        "[server]\nport = 3000\n[engine]\nping_intervall = \"5s\"\n",
    )
    .expect("write");
    let (code, _, stderr) = check_config(&["--config", s(&path)], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("ping_intervall") && stderr.contains("line 4"),
        "{stderr}"
    );
    std::fs::write(&path, "[server]\nport = \"three thousand\"\n").expect("write");
    let (code, _, stderr) = check_config(&["--config", s(&path)], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    // A bad environment variable names itself.
    let (code, _, stderr) = check_config(&[], &[("RINGCAST_ENGINE__PING_INTERVAL", "soon")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("RINGCAST_ENGINE__PING_INTERVAL"),
        "{stderr}"
    );
    // An API open to the network with no keys never starts.
    std::fs::write(&path, "[api]\nlisten = \"0.0.0.0:3901\"\n").expect("write");
    let (code, _, stderr) = check_config(&["--config", s(&path)], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("api"), "{stderr}");
    // A JWT namespace without keys, and an HMAC secret too short for HS256.
    std::fs::write(&path, "[namespaces.\"/chat\"]\nauth = \"jwt\"\n").expect("write");
    let (code, _, stderr) = check_config(&["--config", s(&path)], &[]);
    assert_eq!(code, 2, "{stderr}");
    std::fs::write(
        &path,
        "[auth.jwt.keys.app]\nkind = \"hmac\"\nalgorithms = [\"HS256\"]\nsecret = \"short\"\n",
    )
    .expect("write");
    let (code, _, stderr) = check_config(&["--config", s(&path)], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("auth.jwt.keys.app"), "{stderr}");
    assert!(
        !stderr.contains("short\""),
        "the secret itself is not named: {stderr}"
    );
}

#[test]
fn the_file_the_environment_and_the_flags_override_in_that_order() {
    let dir = TempDir::new("precedence");
    let (file_port, env_port, flag_port) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let path = dir.path("ringcast.toml");
    std::fs::write(
        &path,
        format!("[server]\nhost = \"127.0.0.1\"\nport = {file_port}\ncores = 1\n"),
    )
    .expect("write");
    let port_of = |args: &[&str], env: &[(&str, &str)]| {
        let (code, stdout, stderr) = check_config(&[&["--config", s(&path)], args].concat(), env);
        assert_eq!(code, 0, "{stderr}");
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("port = "))
            .and_then(|port| port.parse::<u16>().ok())
            .expect("a port line")
    };
    let env_value = env_port.to_string();
    let flag_value = flag_port.to_string();
    assert_eq!(port_of(&[], &[]), file_port);
    assert_eq!(
        port_of(&[], &[("RINGCAST_SERVER__PORT", &env_value)]),
        env_port
    );
    assert_eq!(
        port_of(
            &["--port", &flag_value],
            &[("RINGCAST_SERVER__PORT", &env_value)]
        ),
        flag_port
    );
    // And the server really listens where the winner says.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(["--config", s(&path), "--port", &flag_value])
        .env("RINGCAST_SERVER__PORT", &env_value)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    let connected = loop {
        if TcpStream::connect(("127.0.0.1", flag_port)).is_ok() {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let on_env_port = TcpStream::connect(("127.0.0.1", env_port)).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    assert!(connected, "not listening on the flag's port");
    assert!(!on_env_port, "listening on the environment's port too");
}

/// The tokens most scenarios use.
fn tokens(keys: &Keys) -> serde_json::Value {
    serde_json::json!({
        "user42": keys.hs256(r#"{"sub":"42","iat":"+0","exp":"+300","rooms":["team:7"],"allow_rooms":["team:7:*"],"data":{"name":"Ann"}}"#),
        "user13": keys.hs256(r#"{"sub":13,"exp":"+300","rooms":["team:7","ringcast:user:42"]}"#),
    })
}

#[test]
fn a_token_decides_who_connects_and_which_rooms_they_may_use() {
    let keys = Keys::generate("auth");
    let server = Server::start(&config(&keys, ""), &keys.dir, &[]);
    let mut all = tokens(&keys);
    let bad = [
        (
            "badSignature",
            {
                let token = keys.hs256(r#"{"sub":"42","exp":"+300"}"#);
                let (head, _) = token.rsplit_once('.').expect("three parts");
                format!("{head}.c2lnbmF0dXJlLXRoYXQtZG9lcy1ub3QtdmVyaWZ5")
            },
            "token_invalid",
        ),
        (
            "algNone",
            keys.mint("none", "hs.key", r#"{"sub":"42","exp":"+300"}"#, None),
            "token_invalid",
        ),
        (
            "hsWithRsaPublicKey",
            keys.mint(
                "HS256-raw",
                "rsa.pub.pem",
                r#"{"sub":"42","exp":"+300"}"#,
                None,
            ),
            "token_invalid",
        ),
        (
            "wrongAudience",
            keys.hs256(r#"{"sub":"42","exp":"+300","aud":"someone-else"}"#),
            "token_invalid",
        ),
        (
            "wrongIssuer",
            keys.hs256(r#"{"sub":"42","exp":"+300","iss":"https://evil.example"}"#),
            "token_invalid",
        ),
        (
            "expired",
            keys.hs256(r#"{"sub":"42","exp":"-30"}"#),
            "token_expired",
        ),
        (
            "notYet",
            keys.hs256(r#"{"sub":"42","exp":"+300","nbf":"+120"}"#),
            "token_invalid",
        ),
        (
            "huge",
            keys.hs256(&format!(
                r#"{{"sub":"42","exp":"+300","pad":"{}"}}"#,
                "x".repeat(9 * 1024)
            )),
            "token_invalid",
        ),
        (
            "bigData",
            keys.hs256(&format!(
                r#"{{"sub":"42","exp":"+300","data":{{"blob":"{}"}}}}"#,
                "y".repeat(5 * 1024)
            )),
            "token_invalid",
        ),
        (
            "rsa",
            keys.mint("RS256", "rsa.pem", r#"{"sub":"7","exp":"+300"}"#, None),
            "ok",
        ),
        (
            "es",
            keys.mint(
                "ES256",
                "ec1.pem",
                r#"{"sub":"8","exp":"+300"}"#,
                Some("k1"),
            ),
            "ok",
        ),
    ];
    let mut cases = vec![serde_json::json!(["none", "token_missing"])];
    for (name, token, code) in &bad {
        all[*name] = serde_json::json!(token);
        cases.push(serde_json::json!([name, code]));
    }
    let cases = ("RINGCAST_CASES", serde_json::Value::from(cases).to_string());
    server.node("auth", &all, &[]);
    server.node("verdicts", &all, std::slice::from_ref(&cases));
    server.python("auth", &all, &[]);
    server.python("verdicts", &all, &[cases]);
    let chat_only = keys.hs256(r#"{"sub":"42","exp":"+300","namespaces":["/chat"]}"#);
    server.node(
        "namespaces",
        &serde_json::json!({ "chatOnly": chat_only }),
        &[],
    );
    server.node("rate", &all, &[]);
}

#[test]
fn tokens_expire_on_live_sockets_unless_refreshed() {
    let keys = Keys::generate("expiry");
    let server = Server::start(&config(&keys, ""), &keys.dir, &[]);
    // Tokens live 4 s from their minting, just before each script starts: warned 2 s before
    // their expiry (refresh_before), expired 1 s after it (leeway).
    let fresh = || {
        let mut all = tokens(&keys);
        all["short"] = keys.hs256(r#"{"sub":"42","iat":"+0","exp":"+4"}"#).into();
        all["long"] = keys.hs256(r#"{"sub":"42","iat":"+0","exp":"+300"}"#).into();
        all
    };
    // Each script mints its short tokens itself when it starts (RINGCAST_JWT), so that its
    // start-up does not eat into their life.
    let signing = serde_json::json!({
        "key": s(&keys.path("hs.key")), "iss": ISSUER, "aud": AUDIENCE,
    })
    .to_string();
    // The three run at once: each waits on the clock, not on the others.
    let scenarios: Vec<_> = ["refresh", "expire", "refresh-errors"]
        .into_iter()
        .map(|scenario| {
            let (url, tokens) = (server.url.clone(), fresh().to_string());
            let signing = signing.clone();
            std::thread::spawn(move || {
                script::run(
                    Runtime::Node,
                    "js/control.mjs",
                    &["websocket", scenario],
                    &url,
                    &[("RINGCAST_TOKENS", tokens), ("RINGCAST_JWT", signing)],
                    SCRIPT_DEADLINE,
                )
            })
        })
        .collect();
    server.python("refresh", &fresh(), &[("RINGCAST_JWT", signing)]);
    for outcome in scenarios {
        outcome.join().expect("scenario thread").expect_ok();
    }
}

#[test]
fn socket_io_client_2_reads_the_token_from_the_query_only_when_told() {
    let keys = Keys::generate("v2");
    let mut all = tokens(&keys);
    all["expired"] = keys.hs256(r#"{"sub":"42","exp":"-30"}"#).into();
    {
        let server = Server::start(&config(&keys, ""), &keys.dir, &[]);
        server.node("v2-refused", &all, &[]);
    }
    let server = Server::start(&config(&keys, "query_param = \"token\""), &keys.dir, &[]);
    server.node("v2-query", &all, &[]);
}

#[test]
fn key_files_are_watched_and_sighup_rotates_secrets() {
    let keys = Keys::generate("rotate");
    let server = Server::start(&config(&keys, ""), &keys.dir, &[]);
    let es_k2 = keys.mint(
        "ES256",
        "ec2.pem",
        r#"{"sub":"9","exp":"+300"}"#,
        Some("k2"),
    );
    let es_k1 = keys.mint(
        "ES256",
        "ec1.pem",
        r#"{"sub":"8","exp":"+300"}"#,
        Some("k1"),
    );
    let verdicts = |pairs: &[(&str, &str, &str)]| {
        let tokens: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(name, token, _)| (name.to_string(), serde_json::json!(token)))
            .collect();
        let cases: Vec<_> = pairs
            .iter()
            .map(|(name, _, code)| serde_json::json!([name, code]))
            .collect();
        server.node(
            "verdicts",
            &serde_json::Value::Object(tokens),
            &[("RINGCAST_CASES", serde_json::Value::from(cases).to_string())],
        );
    };
    verdicts(&[("k1", &es_k1, "ok"), ("k2", &es_k2, "token_invalid")]);
    // A new kid in the file is taken within the reload interval (200 ms here).
    keys.write_jwks(&[("k1", "ec1.pem"), ("k2", "ec2.pem")]);
    std::thread::sleep(Duration::from_millis(700));
    verdicts(&[("k1", &es_k1, "ok"), ("k2", &es_k2, "ok")]);
    // The old kid removed: refused.
    keys.write_jwks(&[("k2", "ec2.pem")]);
    std::thread::sleep(Duration::from_millis(700));
    verdicts(&[("k1", &es_k1, "token_invalid"), ("k2", &es_k2, "ok")]);
    // Garbage keeps the last good set, and says so once.
    std::fs::write(keys.path("jwks.json"), "{ not json").expect("garbage");
    std::thread::sleep(Duration::from_millis(700));
    verdicts(&[("k2", &es_k2, "ok")]);
    let log = server.log_text();
    assert_eq!(
        log.lines()
            .filter(|line| line.contains("jwks.json") && line.contains("ERROR"))
            .count(),
        1,
        "one error for the bad file:\n{log}"
    );
    keys.write_jwks(&[("k2", "ec2.pem")]);

    // SIGHUP: a new HMAC secret in its file replaces the old; a connected socket stays.
    let old = keys.hs256(r#"{"sub":"42","exp":"+300"}"#);
    let ready = keys.path("stay.ready");
    let stay = {
        let (url, tokens) = (
            server.url.clone(),
            serde_json::json!({ "user42": old }).to_string(),
        );
        let ready = s(&ready).to_owned();
        std::thread::spawn(move || {
            script::run(
                Runtime::Node,
                "js/control.mjs",
                &["websocket", "stay"],
                &url,
                &[
                    ("RINGCAST_TOKENS", tokens),
                    ("RINGCAST_STAY", "3".to_owned()),
                    ("RINGCAST_READY_FILE", ready),
                ],
                SCRIPT_DEADLINE,
            )
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists() {
        assert!(
            Instant::now() < deadline,
            "the staying client never connected"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(
        keys.path("hs.key"),
        "a-brand-new-hmac-secret-of-40-bytes-long\n",
    )
    .expect("rotate");
    server.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    let new = keys.hs256(r#"{"sub":"42","exp":"+300"}"#);
    verdicts(&[("old", &old, "token_invalid"), ("new", &new, "ok")]);
    stay.join().expect("stay thread").expect_ok();
    assert!(
        server.log_text().contains("key material reloaded"),
        "{}",
        server.log_text()
    );
}

#[test]
fn no_secret_reaches_a_log() {
    let keys = Keys::generate("secrets");
    let server = Server::start(&config(&keys, ""), &keys.dir, &[("RUST_LOG", "trace")]);
    let all = tokens(&keys);
    let bad = keys.hs256(r#"{"sub":"42","exp":"-30"}"#);
    let mut with_bad = all.clone();
    with_bad["expired"] = serde_json::json!(bad);
    let sids: Vec<String> = script::run(
        Runtime::Node,
        "js/control.mjs",
        &["websocket", "auth"],
        &server.url,
        &[("RINGCAST_TOKENS", all.to_string())],
        SCRIPT_DEADLINE,
    )
    .expect_ok()
    .stdout
    .lines()
    .filter_map(|line| line.strip_prefix("sids "))
    .flat_map(|sids| sids.split(' ').map(str::to_owned).collect::<Vec<_>>())
    .collect();
    assert_eq!(sids.len(), 2, "the scenario printed its sids");
    server.node(
        "verdicts",
        &with_bad,
        &[(
            "RINGCAST_CASES",
            r#"[["expired","token_expired"]]"#.to_owned(),
        )],
    );
    server.python("auth", &all, &[]);
    let log = server.log_text();
    assert!(
        log.contains("token refused"),
        "the refusal was logged at debug:\n{log}"
    );
    let mut secrets: Vec<String> = vec![HMAC_SECRET.to_owned(), bad];
    secrets.extend(sids);
    for token in all.as_object().expect("tokens").values() {
        let token = token.as_str().expect("a token").to_owned();
        // The signature part alone must not show either.
        secrets.push(token.rsplit('.').next().expect("a signature").to_owned());
        secrets.push(token);
    }
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a secret reached the log: {secret}"
        );
    }
}

const API_KEY: &str = "control-test-api-key-0123456789";

/// `[api]` on a free loopback port with one all-scopes key read from `key_file`.
fn api_config(key_file: &Path) -> (String, u16) {
    let port = common::free_port();
    (
        format!(
            "\n[api]\nlisten = \"127.0.0.1:{port}\"\n\n[api.keys.backend]\nkey_file = \"{}\"\nscopes = [\"*\"]\n",
            s(key_file)
        ),
        port,
    )
}

/// One API call with `curl` (key `key`): (status, JSON body).
fn api_call(
    port: u16,
    key: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let output = Command::new("curl")
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "10",
            "-X",
            method,
        ])
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args(["-H", "Content-Type: application/json"])
        .args(["--data", body])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("curl's status line");
    let status = status.trim().parse().expect("an HTTP status");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// Polls `check` every 50 ms for up to 5 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_api_sees_users_and_their_data_and_revokes_them() {
    let keys = Keys::generate("api");
    let key_file = keys.path("api.key");
    std::fs::write(&key_file, format!("{API_KEY}\n")).expect("key");
    let (api, port) = api_config(&key_file);
    let server = Server::start(
        &format!(
            "{}{api}\n[metrics]\npath = \"/metrics\"\n",
            config(&keys, "")
        ),
        &keys.dir,
        &[("RUST_LOG", "debug")],
    );
    let all = tokens(&keys);
    let token42 = all["user42"].as_str().expect("token").to_owned();
    // A client of user 42 holds on until it is revoked.
    let held = {
        let (url, tokens) = (server.url.clone(), all.to_string());
        std::thread::spawn(move || {
            script::run(
                Runtime::Node,
                "js/control.mjs",
                &["websocket", "revoked"],
                &url,
                &[("RINGCAST_TOKENS", tokens)],
                SCRIPT_DEADLINE,
            )
        })
    };
    let query = r#"{"namespace":"/chat","to":{"users":["42"]}}"#;
    let mut listed = serde_json::Value::Null;
    eventually("user 42's socket in the API", || {
        let (status, body) = api_call(port, API_KEY, "POST", "/v1/sockets/query", query);
        assert_eq!(status, 200, "{body}");
        listed = body;
        listed["sockets"].as_array().is_some_and(|s| s.len() == 1)
    });
    let socket = &listed["sockets"][0];
    assert_eq!(socket["user"], "42", "{listed}");
    assert_eq!(
        socket["data"],
        serde_json::json!({ "name": "Ann" }),
        "{listed}"
    );
    let rooms: Vec<&str> = socket["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert!(
        rooms.contains(&"ringcast:user:42") && rooms.contains(&"team:7"),
        "{listed}"
    );
    assert!(
        !listed.to_string().contains(&token42),
        "a token in the API's answer"
    );

    // Revoked: the socket is told and disconnected; its token is refused from then on, a
    // token issued later is not; lifting the revocation lets the old one in again.
    let (status, body) = api_call(port, API_KEY, "POST", "/v1/users/42/revoke", "{}");
    assert_eq!(status, 200, "{body}");
    assert!(body["revoked_before"].is_u64(), "{body}");
    held.join().expect("held client").expect_ok();
    let later = keys.hs256(r#"{"sub":"42","iat":"+1","exp":"+300"}"#);
    std::thread::sleep(Duration::from_millis(1100));
    let verdicts = |cases: &str, tokens: serde_json::Value| {
        server.node("verdicts", &tokens, &[("RINGCAST_CASES", cases.to_owned())]);
    };
    verdicts(
        r#"[["old","revoked"],["later","ok"]]"#,
        serde_json::json!({ "old": token42, "later": later }),
    );
    let (status, body) = api_call(port, API_KEY, "DELETE", "/v1/users/42/revoke", "");
    assert_eq!(
        (status, &body["lifted"]),
        (200, &serde_json::json!(true)),
        "{body}"
    );
    verdicts(r#"[["old","ok"]]"#, serde_json::json!({ "old": token42 }));

    // SIGHUP rotates the API key from its file: the old one is refused, the new one taken.
    let new_key = "control-test-api-key-rotated-987654";
    std::fs::write(&key_file, format!("{new_key}\n")).expect("rotate");
    server.signal(libc::SIGHUP);
    eventually("the rotated key", || {
        api_call(port, new_key, "POST", "/v1/sockets/query", query).0 == 200
    });
    assert_eq!(
        api_call(port, API_KEY, "POST", "/v1/sockets/query", query).0,
        401
    );
    // The metrics count both.
    let scrape = Command::new("curl")
        .args(["-s", "--max-time", "10", &format!("{}/metrics", server.url)])
        .output()
        .expect("curl the metrics");
    let scrape = String::from_utf8_lossy(&scrape.stdout);
    for line in [
        "ringcast_api_requests_total{route=\"/v1/sockets/query\",status=\"401\"} 1",
        "ringcast_api_requests_total{route=\"/v1/users/{user}/revoke\",status=\"200\"} 2",
        "ringcast_auth_failures_total{code=\"revoked\"} 1",
    ] {
        assert!(scrape.contains(line), "no `{line}` in\n{scrape}");
    }
    let log = server.log_text();
    for secret in [API_KEY, new_key, token42.as_str(), HMAC_SECRET] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
}

#[test]
fn users_revocations_and_single_sessions_hold_across_a_cluster_with_node() {
    let keys = Keys::generate("cluster");
    let redis = common::redis::RedisServer::start();
    let key_file = keys.path("api.key");
    std::fs::write(&key_file, API_KEY).expect("key");
    let (api, port) = api_config(&key_file);
    let base = config(&keys, "")
        .replace("leeway = \"1s\"", "leeway = \"10s\"")
        .replace(
            "[namespaces.\"/\"]\nauth = \"none\"",
            "[namespaces.\"/\"]\nauth = \"jwt\"\njoin = [\"public:*\"]",
        )
        .replace(
            "[namespaces.\"/chat\"]\nauth = \"jwt\"",
            "[namespaces.\"/chat\"]\nauth = \"jwt\"\nsingle_session = true",
        );
    let redis_section = format!("\n[redis]\nurl = \"{}\"\n", redis.url());
    let dir_b = TempDir::new("cluster-b");
    let a = Server::start(&format!("{base}{redis_section}{api}"), &keys.dir, &[]);
    let b = Server::start(&format!("{base}{redis_section}"), &dir_b, &[]);
    let mut all = tokens(&keys);
    all["user7"] = keys.hs256(r#"{"sub":"7","exp":"+300"}"#).into();
    // Issued (by its iat) after the revocation this test makes a few seconds from now.
    let fresh = keys.hs256(r#"{"sub":"13","iat":"+8","exp":"+300"}"#);
    script::run(
        Runtime::Node,
        "../cluster/control.mjs",
        &[],
        &a.url,
        &[
            ("NODE_A_URL", a.url.clone()),
            ("NODE_B_URL", b.url.clone()),
            ("API_A", format!("http://127.0.0.1:{port}")),
            ("API_KEY", API_KEY.to_owned()),
            ("REDIS_URL", redis.url()),
            ("TOKENS", all.to_string()),
            ("FRESH_13", fresh),
        ],
        SCRIPT_DEADLINE,
    )
    .expect_ok();
    // A node started after the revocation loads it from Redis and refuses the old token.
    let dir_c = TempDir::new("cluster-c");
    let c = Server::start(&format!("{base}{redis_section}"), &dir_c, &[]);
    eventually("node C loading the revocations", || {
        c.log_text()
            .contains("revocations loaded from Redis loaded=1")
            || c.log_text().contains("revocations loaded")
    });
    c.node(
        "verdicts",
        &serde_json::json!({ "old13": all["user13"] }),
        &[("RINGCAST_CASES", r#"[["old13","revoked"]]"#.to_owned())],
    );
}
