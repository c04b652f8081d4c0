//! The `ringcast` binary as an operator meets it: a taken port is refused, not shared, and the
//! defaults its flags show and use are the library's `Config::default()`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use ringcast::{AdminMode, Config, Parser, RedisMode, SlowConsumerPolicy, SubscriptionMode};

#[test]
fn a_port_another_server_listens_on_is_refused() {
    let first = common::Server::start(&["--cores", "2"]);
    let port = first.addr.port().to_string();
    let second = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(["--cores", "2", "--host", "127.0.0.1", "--port", &port])
        .output()
        .expect("run ringcast");
    assert!(
        !second.status.success(),
        "a second server shared port {port}"
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use"), "unexpected error: {stderr}");
}

/// The `[default: ...]` each flag shows in `--help`, by flag.
fn help_defaults() -> BTreeMap<String, String> {
    let help = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .arg("--help")
        .output()
        .expect("run ringcast --help");
    let help = String::from_utf8(help.stdout).expect("help is text");
    let mut defaults = BTreeMap::new();
    let mut flag = None;
    for line in help.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("--") {
            flag = name
                .split_whitespace()
                .next()
                .map(|name| format!("--{name}"));
        } else if let (Some(flag), Some((_, rest))) = (&flag, line.split_once("[default: ")) {
            let value = rest.split_once(']').map_or(rest, |(value, _)| value);
            defaults.insert(flag.clone(), value.to_owned());
        }
    }
    defaults
}

#[test]
fn the_flags_defaults_are_the_librarys() {
    let config = Config::default();
    let ms = |duration: Duration| duration.as_millis().to_string();
    let slow_consumer = match config.engine.slow_consumer {
        SlowConsumerPolicy::Disconnect => "disconnect",
        SlowConsumerPolicy::Drop => "drop",
    };
    let redis_mode = match config.cluster.mode {
        RedisMode::Classic => "classic",
        RedisMode::Sharded => "sharded",
    };
    let subscription_mode = match config.cluster.subscription_mode {
        SubscriptionMode::Static => "static",
        SubscriptionMode::Dynamic => "dynamic",
        SubscriptionMode::DynamicPrivate => "dynamic-private",
    };
    let parser = match config.socketio.parser {
        Parser::Default => "default",
        Parser::Msgpack => "msgpack",
    };
    let admin_mode = match config.admin.mode {
        AdminMode::Development => "development",
        AdminMode::Production => "production",
    };
    let expected: BTreeMap<String, String> = [
        ("--host", config.host.to_string()),
        ("--port", config.port.to_string()),
        ("--path", config.path.clone()),
        ("--redis-prefix", config.cluster.prefix.clone()),
        (
            "--redis-requests-timeout",
            ms(config.cluster.requests_timeout),
        ),
        ("--redis-mode", redis_mode.to_owned()),
        ("--redis-subscription-mode", subscription_mode.to_owned()),
        ("--ping-interval", ms(config.engine.ping_interval)),
        ("--ping-timeout", ms(config.engine.ping_timeout)),
        ("--max-payload", config.engine.max_payload.to_string()),
        ("--connect-timeout", ms(config.socketio.connect_timeout)),
        (
            "--max-outbound",
            config.engine.max_outbound_bytes.to_string(),
        ),
        ("--max-connections", config.engine.max_sessions.to_string()),
        (
            "--deflate-threshold",
            config.engine.deflate_threshold.to_string(),
        ),
        ("--deflate-level", config.engine.deflate_level.to_string()),
        (
            "--max-connections-per-ip",
            config.engine.max_sessions_per_ip.to_string(),
        ),
        (
            "--handshakes-per-ip",
            config.engine.handshakes_per_ip_per_second.to_string(),
        ),
        (
            "--max-rooms-per-socket",
            config.socketio.max_rooms_per_socket.to_string(),
        ),
        (
            "--max-namespaces-per-client",
            config.socketio.max_namespaces_per_client.to_string(),
        ),
        ("--slow-consumer", slow_consumer.to_owned()),
        ("--parser", parser.to_owned()),
        // Recovery is off by default (a window of 0); its other default is the library's.
        ("--recovery-window", "0".to_owned()),
        (
            "--recovery-skip-middleware",
            ringcast::RecoveryConfig::default()
                .skip_middleware
                .to_string(),
        ),
        ("--max-head", config.http.max_head_bytes.to_string()),
        ("--upgrade-timeout", ms(config.engine.upgrade_timeout)),
        ("--head-timeout", ms(config.http.head_timeout)),
        ("--admin-mode", admin_mode.to_owned()),
        ("--admin-namespace", config.admin.namespace.clone()),
        ("--admin-ui-path", config.admin.ui_path.clone()),
        // Not the library's: these are described, or are the binary's own.
        ("--cores", "every core".to_owned()),
        ("--namespace", "/".to_owned()),
        ("--cors-origin", "any".to_owned()),
        ("--shutdown-grace", "10000".to_owned()),
        ("--log-format", "text".to_owned()),
        ("--admin-server-id", "the hostname".to_owned()),
    ]
    .into_iter()
    .map(|(flag, value)| (flag.to_owned(), value))
    .collect();
    assert_eq!(help_defaults(), expected);
    // The flags without a value turn off (or on) what the library does by default, and those
    // that name something optional are off by default.
    assert!(config.engine.allow_eio3, "--no-eio3");
    assert!(!config.engine.per_message_deflate, "--per-message-deflate");
    assert!(config.pin_cores, "--no-pin");
    assert!(!config.force_epoll, "--epoll");
    assert!(!config.cors.credentials, "--cors-credentials");
    assert!(config.cors.origins.is_empty(), "--cors-origin: any");
    assert_eq!(config.stats_path, None, "--stats-path");
    assert_eq!(config.metrics_path, None, "--metrics-path");
    assert_eq!(config.metrics_addr, None, "--metrics-addr");
    assert_eq!(config.http.socket_send_buffer, None, "--send-buffer");
    assert!(!config.admin.enabled, "--admin");
    assert!(!config.admin.read_only, "--admin-read-only");
    assert_eq!(config.admin.username, None, "--admin-username");
    assert_eq!(config.admin.password_hash, None, "--admin-password-hash");
    assert_eq!(
        config.admin.server_id, None,
        "--admin-server-id: the hostname"
    );
    assert_eq!(config.admin.ui_dir, None, "--admin-ui-dir");
}

#[test]
fn a_server_started_without_flags_uses_the_librarys_heartbeat_and_payload() {
    let server = common::Server::start(&["--cores", "1"]);
    let answer = common::exchange(
        server.addr,
        &common::polling_request("GET", "EIO=4&transport=polling", ""),
        Duration::from_secs(5),
    );
    let (status, body) = common::status_and_body(&answer);
    assert_eq!(status, 200, "{body}");
    let open: serde_json::Value =
        serde_json::from_str(body.trim_start_matches('0')).expect("open packet");
    let engine = Config::default().engine;
    assert_eq!(
        open["pingInterval"],
        engine.ping_interval.as_millis() as u64
    );
    assert_eq!(open["pingTimeout"], engine.ping_timeout.as_millis() as u64);
    assert_eq!(open["maxPayload"], engine.max_payload as u64);
}
