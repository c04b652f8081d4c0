//! The Admin UI's static files (`@socket.io/admin-ui`'s `ui/dist`, a single-page app with
//! relative asset paths and hash routing) read once into memory, each with the URL path it is
//! served at and its content type.
//!
//! Safe by construction: requests are never mapped onto the filesystem. The folder is listed
//! at startup and only the regular files found under it (no symbolic links, no name outside
//! `[A-Za-z0-9._-]`, so no `..` or encoded separators) become routes; a request for anything
//! else is a plain 404. Depends on nothing in the crate.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;

/// Folders below the UI's root that are listed (`ui/dist` has two levels).
const MAX_DEPTH: usize = 8;
/// Files served at most; past it the folder is refused (it is not the UI's).
const MAX_FILES: usize = 4096;
/// Bytes held at most (the UI is about 4.6 MB with its source maps).
const MAX_BYTES: u64 = 64 << 20;

/// One file to serve.
#[derive(Debug, Clone)]
pub struct UiFile {
    /// The URL path (the prefix, then the file's path under the folder).
    pub path: String,
    pub content_type: &'static str,
    pub body: Bytes,
}

type Loaded = Arc<[UiFile]>;

/// The files of `dir` served under `prefix` (`/name/`), `index.html` also at `prefix` itself.
/// Read once per process for each (folder, prefix): every shard registers the same bytes.
pub fn load(dir: &Path, prefix: &str) -> io::Result<Loaded> {
    static CACHE: OnceLock<Mutex<HashMap<(PathBuf, String), Loaded>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let key = (dir.to_path_buf(), prefix.to_owned());
    if let Some(files) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Ok(files.clone());
    }
    let mut files = Vec::new();
    let mut total = 0;
    walk(dir, prefix, 0, &mut files, &mut total)?;
    let index_path = format!("{prefix}index.html");
    let Some(index) = files.iter().find(|f| f.path == index_path).cloned() else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} has no index.html", dir.display()),
        ));
    };
    files.push(UiFile {
        path: prefix.to_owned(),
        ..index
    });
    let files: Loaded = files.into();
    cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, files.clone());
    Ok(files)
}

fn walk(
    dir: &Path,
    prefix: &str,
    depth: usize,
    files: &mut Vec<UiFile>,
    total: &mut u64,
) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|name| servable_name(name)) else {
            continue;
        };
        // Not following links: what is served stays inside the folder.
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(
                &entry.path(),
                &format!("{prefix}{name}/"),
                depth + 1,
                files,
                total,
            )?;
        } else if kind.is_file() {
            let body = std::fs::read(entry.path())?;
            *total += body.len() as u64;
            if files.len() >= MAX_FILES || *total > MAX_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the Admin UI folder holds too much (is it ui/dist?)",
                ));
            }
            files.push(UiFile {
                path: format!("{prefix}{name}"),
                content_type: content_type(name),
                body: body.into(),
            });
        }
    }
    Ok(())
}

/// A name a URL can carry as it is and that names nothing but itself (not `.`, `..`, hidden
/// files).
fn servable_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The content type of a file, by its extension.
pub fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map_or("", |(_, ext)| ext);
    match extension.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "eot" => "application/vnd.ms-fontobject",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_and_regular_files_are_served() {
        let root = std::env::temp_dir().join(format!("ringcast-ui-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("dist/js")).expect("mkdir");
        std::fs::write(root.join("dist/index.html"), "<html>").expect("write");
        std::fs::write(root.join("dist/js/app.1.js"), "x()").expect("write");
        std::fs::write(root.join("dist/.hidden"), "no").expect("write");
        std::fs::write(root.join("dist/we ird.txt"), "no").expect("write");
        std::fs::write(root.join("secret.txt"), "outside").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.join("secret.txt"), root.join("dist/link.txt"))
            .expect("symlink");
        let files = load(&root.join("dist"), "/ui/").expect("load");
        let mut paths: Vec<(&str, &str)> = files
            .iter()
            .map(|f| (f.path.as_str(), f.content_type))
            .collect();
        paths.sort_unstable();
        assert_eq!(
            paths,
            [
                ("/ui/", "text/html; charset=utf-8"),
                ("/ui/index.html", "text/html; charset=utf-8"),
                ("/ui/js/app.1.js", "text/javascript; charset=utf-8"),
            ]
        );
        assert!(load(&root, "/other/").is_err(), "no index.html at the root");
        let _ = std::fs::remove_dir_all(&root);
    }
}
