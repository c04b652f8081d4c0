//! Keeps the layers of ARCHITECTURE.md honest: a module may not name what is above it. And
//! keeps the public API fenced: the crate root and `apps` are the paved path, everything else
//! is private and reached by the fuzz targets, benches and tests through `internals` only.

use std::fs;
use std::path::Path;

/// (module directory or file under src/, names it must never use)
const RULES: &[(&str, &[&str])] = &[
    (
        "codec",
        &[
            "monoio",
            "crate::engine",
            "crate::socketio",
            "crate::net",
            "crate::shard",
            "crate::bus",
            "crate::rooms",
            "crate::server",
            "crate::stats",
        ],
    ),
    (
        "engine",
        &[
            "monoio",
            "crate::socketio",
            "crate::net",
            "crate::shard",
            "crate::bus",
            "crate::server",
            "crate::stats",
            "Instant::now",
        ],
    ),
    ("rooms.rs", &["monoio", "crate::"]),
    ("directory.rs", &["monoio", "crate::"]),
    // Pure data structures: instants come in as arguments, nothing of the crate goes in.
    ("deadline.rs", &["monoio", "crate::", "Instant::now"]),
    ("gather.rs", &["monoio", "crate::", "Instant::now"]),
    // The cluster node is sans-IO: the Redis link carries its bytes, the shards deliver.
    (
        "cluster",
        &[
            "monoio",
            "tokio",
            "fred",
            "crate::net",
            "crate::shard",
            "crate::bus",
            "crate::socketio",
            "Instant::now",
        ],
    ),
    ("key.rs", &["monoio", "crate::", "Instant::now"]),
    ("bus.rs", &["crate::"]),
    (
        "socketio",
        &[
            "monoio",
            "crate::net",
            "crate::shard",
            "crate::bus",
            "crate::server",
            "crate::stats",
            "Instant::now",
            "libc",
        ],
    ),
    (
        "net",
        &[
            "crate::socketio",
            "crate::rooms",
            "crate::shard",
            "crate::bus",
            "crate::server",
            "crate::apps",
            "crate::stats",
        ],
    ),
    // Routes are plain data and a table: the connection code runs them.
    ("net/route.rs", &["monoio"]),
    // The link to Redis is a pipe on a thread of its own: it names nothing of the crate.
    ("net/redis.rs", &["monoio", "crate::"]),
    // Plain data every layer reads: it names none of them (the codec's CORS type aside).
    (
        "config.rs",
        &[
            "monoio",
            "clap",
            "crate::engine",
            "crate::socketio",
            "crate::net",
            "crate::shard",
            "crate::bus",
        ],
    ),
    // The Admin UI's server side is built on the public seams (namespace, observer,
    // operators, the server handle): nothing below them.
    (
        "admin",
        &[
            "monoio",
            "crate::engine",
            "crate::net",
            "crate::shard",
            "crate::bus",
            "crate::cluster",
            "crate::codec",
            "crate::stats",
        ],
    ),
    // The control plane is an application of the library's seams: `net`'s route types, the
    // public Socket.IO types and the shard's `ApiShard` (named through `server`), never the
    // engine, the shard or the bus themselves.
    (
        "control",
        &["monoio", "crate::engine", "crate::shard", "crate::bus"],
    ),
    // The outbound HTTP client names nothing of the crate (as the Redis link).
    ("net/client.rs", &["crate::"]),
    // The counts and their JSON: the shard gathers them and serves them through a route.
    (
        "stats.rs",
        &["monoio", "crate::net", "crate::shard", "crate::bus", "libc"],
    ),
    // The Prometheus exposition: plain snapshots in, text out; the shard gathers and routes.
    (
        "metrics.rs",
        &[
            "monoio",
            "crate::net",
            "crate::shard",
            "crate::bus",
            "crate::server",
            "libc",
            "Instant::now",
        ],
    ),
    // A shard's histogram is plain data every layer may record into: durations come in.
    ("histogram.rs", &["monoio", "crate::", "Instant::now"]),
    // Times as text: pure.
    ("datetime.rs", &["monoio", "crate::", "Instant::now"]),
];

#[test]
fn layers_only_import_downward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (module, forbidden) in RULES {
        for file in rust_files(&src.join(module)) {
            if file.ends_with("tests.rs") {
                continue;
            }
            let text = fs::read_to_string(&file).expect("read source");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for name in *forbidden {
                if code.contains(name) {
                    violations.push(format!("{} uses {name}", file.display()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

/// (crate, the one file under src/ that may name it): the Redis client and its runtime stay on
/// the link's own thread, so no shard can call into them, nor wait on them.
const CONFINED: &[(&str, &str)] = &[("fred", "net/redis.rs"), ("tokio", "net/redis.rs")];

#[test]
fn the_redis_client_and_tokio_live_in_one_file() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for file in rust_files(&src) {
        let text = fs::read_to_string(&file).expect("read source");
        for (krate, home) in CONFINED {
            if file.ends_with(home) {
                continue;
            }
            let named = [format!("{krate}::"), format!("use {krate}")];
            if named.iter().any(|name| text.contains(name.as_str())) {
                violations.push(format!(
                    "{} names {krate} (only src/{home} may)",
                    file.display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "confined crates named elsewhere:\n{}",
        violations.join("\n")
    );
}

/// Where the library is used as its users use it: these name no `internals`.
const PAVED: &[&str] = &[
    "src/main.rs",
    "examples",
    "tests/public_api.rs",
    "tests/library.rs",
    "tests/library",
    "tests/operations.rs",
];

#[test]
fn the_public_api_is_the_root_apps_and_a_hidden_internals() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = fs::read_to_string(root.join("src/lib.rs")).expect("read src/lib.rs");
    // Top-level only: the modules nested inside `internals` are indented.
    let public_modules: Vec<&str> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("pub mod "))
        .map(|rest| rest.trim_end_matches([';', '{', ' ']))
        .collect();
    assert_eq!(
        public_modules,
        ["apps", "internals"],
        "src/lib.rs: every other module is private (re-export what fuzz, benches and tests need \
         from `internals`)"
    );
    assert!(
        lib.contains("#[doc(hidden)]\npub mod internals"),
        "src/lib.rs: `internals` is not public API, so it stays out of the docs"
    );
    let mut violations = Vec::new();
    for path in PAVED {
        for file in rust_files(&root.join(path)) {
            let text = fs::read_to_string(&file).expect("read source");
            if text.contains("internals") {
                violations.push(file.display().to_string());
            }
        }
    }
    assert!(
        violations.is_empty(),
        "these use ringcast as its users do, through the root only:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let missing: Vec<_> = rust_files(&src)
        .into_iter()
        .filter(|file| {
            let text = fs::read_to_string(file).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! header:\n{}",
        missing.join("\n")
    );
}

fn rust_files(path: &Path) -> Vec<std::path::PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).expect("list source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}
