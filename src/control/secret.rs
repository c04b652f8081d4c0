//! Secrets from the configuration: a key `x` is given inline or as `x_file` (trailing newline
//! trimmed, re-read on SIGHUP), never both. A secret prints as `***` wherever it is formatted,
//! so no log line, `--check-config` output or panic message can carry one.

use std::fmt;
use std::path::PathBuf;

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum SecretSource {
    /// Written in the file or the environment.
    Inline(Secret),
    /// Read from this file at start and on every SIGHUP.
    File(PathBuf),
}

impl SecretSource {
    /// The source that the pair `name` / `name_file` names: none, one, or an error when both
    /// are set.
    pub(crate) fn from_pair(
        name: &str,
        inline: Option<String>,
        file: Option<PathBuf>,
    ) -> Result<Option<SecretSource>, String> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(format!("set either `{name}` or `{name}_file`, not both")),
            (Some(value), None) => Ok(Some(SecretSource::Inline(Secret::new(value.into_bytes())))),
            (None, Some(path)) => Ok(Some(SecretSource::File(path))),
            (None, None) => Ok(None),
        }
    }

    /// The secret now: the inline value, or the file's content without its trailing newline.
    pub(crate) fn load(&self) -> Result<Secret, String> {
        match self {
            SecretSource::Inline(secret) => Ok(secret.clone()),
            SecretSource::File(path) => {
                let mut bytes = std::fs::read(path)
                    .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                Ok(Secret::new(bytes))
            }
        }
    }
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("***"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// Secret bytes: formatted as `***`, compared only in constant time.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(Box<[u8]>);

impl Secret {
    pub(crate) fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes.into_boxed_slice())
    }

    /// The bytes, for the code that signs or verifies with them.
    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
