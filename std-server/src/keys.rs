//! Key files: how the `herald` commands and the client library get an environment's
//! keys ([`herald_core::auth`]) without ever taking a key on the command line.
//!
//! A key file is a small text file of `name = value` lines:
//!
//! ```text
//! # herald key for environment "prod"
//! id = 1
//! key = 5f1c0a7e9b3d2c4a8e6f0b1d3c5a7e9f5f1c0a7e9b3d2c4a8e6f0b1d3c5a7e9f
//! ```
//!
//! * `id`: 0 to 255, the number that names the key in frames (so receivers know which
//!   key to check with during a rotation).
//! * `key`: 16 to 64 bytes, as hex (32 to 128 hex digits), or as standard base64 after
//!   `base64:` (`key = base64:XxwKfps9LEqObwsdPFp+n18cCn6bPSxKjm8LHTxafp8=`).
//! * Blank lines and lines starting with `#` are ignored; any other line is an error.
//!
//! The file must be a regular file of at most [`MAX_KEY_FILE`] bytes, and must not be
//! accessible to every user (mode `o+r`, `o+w` or `o+x`): such a file is refused, as ssh
//! refuses a private key anyone can read. A file the owner's group may read is accepted
//! with a warning (a `herald` group is a common way to share a key with a service user).
//! `herald keygen` writes a new key file.

use herald_core::auth::{Key, KeyError, Keys, MAX_KEY_LEN, MIN_KEY_LEN};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest key file read, in bytes.
pub const MAX_KEY_FILE: u64 = 4096;

/// Why a key file could not be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be opened or read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a regular file, or too large to be a key file.
    #[error("key file {path} is not a key file: {reason}")]
    NotAKeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Every user may access the file.
    #[error(
        "key file {path} is accessible to every user (mode {mode:04o}): make it readable \
         by its owner only (chmod 600 {path})"
    )]
    WorldAccessible {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The contents are not a key file.
    #[error("key file {path}: {problem}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        problem: Problem,
    },
    /// The accepted key has the signing key's id.
    #[error(
        "key files {signing} and {accepted} both have key id {id}: a rotation needs \
         two different ids"
    )]
    SameId {
        /// The signing key's file.
        signing: PathBuf,
        /// The accepted key's file.
        accepted: PathBuf,
        /// The id both use.
        id: u8,
    },
    /// An accepted key without a signing key.
    #[error(
        "an accepted key ({accepted}) needs a signing key: set --key-file \
         (HERALD_KEY_FILE, key_file) too"
    )]
    AcceptedWithoutSigning {
        /// The accepted key's file.
        accepted: PathBuf,
    },
}

/// What is wrong inside a key file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A line is not `name = value`, a comment or blank.
    #[error("line {line}: expected `id = N`, `key = HEX` or `key = base64:…`")]
    Syntax {
        /// 1-based line number.
        line: usize,
    },
    /// A name other than `id` and `key`.
    #[error("line {line}: unknown setting {name:?} (only `id` and `key`)")]
    Unknown {
        /// 1-based line number.
        line: usize,
        /// The name found.
        name: String,
    },
    /// The same name twice.
    #[error("line {line}: `{name}` is set twice")]
    Duplicate {
        /// 1-based line number.
        line: usize,
        /// The name.
        name: &'static str,
    },
    /// `id` is not 0 to 255.
    #[error("line {line}: id must be a number from 0 to 255")]
    BadId {
        /// 1-based line number.
        line: usize,
    },
    /// `key` is neither hex nor `base64:` followed by base64.
    #[error("line {line}: key is not {encoding}")]
    BadEncoding {
        /// 1-based line number.
        line: usize,
        /// What it should have been.
        encoding: &'static str,
    },
    /// The key has the wrong length.
    #[error("key is {len} bytes: {reason}")]
    BadLength {
        /// Its length.
        len: usize,
        /// What the core said.
        reason: KeyError,
    },
    /// `id` or `key` is missing.
    #[error("no `{0}` line")]
    Missing(&'static str),
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

fn base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Parses the text of a key file.
pub fn parse(text: &str) -> Result<Key, Problem> {
    let mut id = None;
    let mut secret = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (name, value) = trimmed.split_once('=').ok_or(Problem::Syntax { line })?;
        let (name, value) = (name.trim(), value.trim());
        match name {
            "id" => {
                if id.is_some() {
                    return Err(Problem::Duplicate { line, name: "id" });
                }
                id = Some(value.parse::<u8>().map_err(|_| Problem::BadId { line })?);
            }
            "key" => {
                if secret.is_some() {
                    return Err(Problem::Duplicate { line, name: "key" });
                }
                let bytes = match value.strip_prefix("base64:") {
                    Some(b64) => base64(b64.trim()).ok_or(Problem::BadEncoding {
                        line,
                        encoding: "valid base64 after `base64:`",
                    })?,
                    None => hex(value).ok_or(Problem::BadEncoding {
                        line,
                        encoding: "an even number of hex digits (or `base64:` and base64)",
                    })?,
                };
                secret = Some(bytes);
            }
            _ => {
                return Err(Problem::Unknown {
                    line,
                    name: name.to_owned(),
                })
            }
        }
    }
    let id = id.ok_or(Problem::Missing("id"))?;
    let secret = secret.ok_or(Problem::Missing("key"))?;
    Key::new(id, &secret).map_err(|reason| Problem::BadLength {
        len: secret.len(),
        reason,
    })
}

/// The text of a key file holding `secret` (16 to 64 bytes) as hex, named `id`.
pub fn format(id: u8, secret: &[u8]) -> Result<String, KeyError> {
    Key::new(id, secret)?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "# herald key file: keep it readable by its owner only (chmod 600)\n\
         id = {id}\nkey = {hex}\n"
    ))
}

/// Reads at most [`MAX_KEY_FILE`] bytes of a regular file, refusing one every user may
/// access and warning about one its group may read.
fn read(path: &Path) -> Result<String, KeyFileError> {
    let read_error = |source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    };
    let not_a_key_file = |reason: &str| KeyFileError::NotAKeyFile {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    // Look before opening: opening a FIFO blocks until someone writes to it.
    if !std::fs::metadata(path).map_err(read_error)?.is_file() {
        return Err(not_a_key_file("not a regular file"));
    }
    let file = std::fs::File::open(path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(not_a_key_file("not a regular file"));
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(not_a_key_file("larger than 4096 bytes"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o007 != 0 {
            return Err(KeyFileError::WorldAccessible {
                path: path.to_owned(),
                mode,
            });
        }
        if mode & 0o070 != 0 {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{mode:04o}"),
                "key file is accessible to its group: make sure only trusted users are in it"
            );
        }
    }
    let mut text = String::new();
    file.take(MAX_KEY_FILE)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    Ok(text)
}

/// Loads one key file.
pub fn load(path: &Path) -> Result<Key, KeyFileError> {
    parse(&read(path)?).map_err(|problem| KeyFileError::Malformed {
        path: path.to_owned(),
        problem,
    })
}

/// The keys to use: sign with the key in `signing` and also accept the one in
/// `also_accepted` (a rotation in progress). No files: no keys (an unauthenticated
/// environment).
pub fn load_keys(
    signing: Option<&Path>,
    also_accepted: Option<&Path>,
) -> Result<Option<Keys>, KeyFileError> {
    let Some(signing) = signing else {
        return match also_accepted {
            Some(accepted) => Err(KeyFileError::AcceptedWithoutSigning {
                accepted: accepted.to_owned(),
            }),
            None => Ok(None),
        };
    };
    let keys = Keys::new(load(signing)?);
    let Some(accepted) = also_accepted else {
        return Ok(Some(keys));
    };
    let other = load(accepted)?;
    let id = other.id();
    keys.also_accepting(other)
        .map(Some)
        .map_err(|_| KeyFileError::SameId {
            signing: signing.to_owned(),
            accepted: accepted.to_owned(),
            id,
        })
}

/// A new random key of 32 bytes from the operating system (`/dev/urandom`), as the text
/// of a key file named `id`.
pub fn generate(id: u8) -> std::io::Result<String> {
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
    format(id, &secret).map_err(std::io::Error::other)
}

const _: () = assert!(MIN_KEY_LEN <= 32 && 32 <= MAX_KEY_LEN);

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn hex_and_base64_give_the_same_key() {
        let bytes: Vec<u8> = (0..32).collect();
        let from_hex = parse(&format!("# comment\n\n id = 7 \nkey = {HEX}\n")).unwrap();
        let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let from_b64 = parse(&format!("key=base64:{b64}\nid=7")).unwrap();
        assert_eq!(from_hex, from_b64);
        assert_eq!(from_hex, Key::new(7, &bytes).unwrap());
        assert_eq!(parse(&format(7, &bytes).unwrap()).unwrap(), from_hex);
    }

    #[test]
    fn every_problem_is_named() {
        let cases: [(&str, Problem); 9] = [
            ("id = 1", Problem::Missing("key")),
            (&format!("key = {HEX}"), Problem::Missing("id")),
            ("id = 1\nkey", Problem::Syntax { line: 2 }),
            ("id = 256", Problem::BadId { line: 1 }),
            (
                "id = 1\nsecret = 00",
                Problem::Unknown {
                    line: 2,
                    name: "secret".into(),
                },
            ),
            (
                "id = 1\nid = 2",
                Problem::Duplicate {
                    line: 2,
                    name: "id",
                },
            ),
            (
                "id = 1\nkey = 0g",
                Problem::BadEncoding {
                    line: 2,
                    encoding: "an even number of hex digits (or `base64:` and base64)",
                },
            ),
            (
                "id = 1\nkey = 0011223344556677",
                Problem::BadLength {
                    len: 8,
                    reason: KeyError::TooShort,
                },
            ),
            (
                &format!("id = 1\nkey = {HEX}{HEX}{HEX}"),
                Problem::BadLength {
                    len: 96,
                    reason: KeyError::TooLong,
                },
            ),
        ];
        for (text, problem) in cases {
            assert_eq!(parse(text), Err(problem), "{text}");
        }
        assert!(matches!(
            parse("id = 1\nkey = base64:!!"),
            Err(Problem::BadEncoding { line: 2, .. })
        ));
    }

    #[test]
    fn files_are_checked_and_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = format!("id = 1\nkey = {HEX}\n");
        let ok = key_file(dir.path(), "ok.key", &good, 0o600);
        let group = key_file(dir.path(), "group.key", &good, 0o640);
        let world = key_file(dir.path(), "world.key", &good, 0o644);
        let short = key_file(dir.path(), "short.key", "id = 1\nkey = 00\n", 0o600);
        assert!(load(&ok).is_ok());
        assert!(load(&group).is_ok(), "group-readable is only a warning");
        let err = load(&world).unwrap_err().to_string();
        assert!(
            err.contains("world.key") && err.contains("chmod 600"),
            "{err}"
        );
        let err = load(&short).unwrap_err().to_string();
        assert!(
            err.contains("short.key") && err.contains("16 bytes"),
            "{err}"
        );
        let err = load(&dir.path().join("absent.key"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("absent.key"), "{err}");
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn rotation_needs_two_ids_and_a_signing_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = key_file(dir.path(), "a.key", &format!("id=1\nkey={HEX}"), 0o600);
        let b = key_file(dir.path(), "b.key", &format(2, &[9; 20]).unwrap(), 0o600);
        let c = key_file(dir.path(), "c.key", &format(1, &[8; 20]).unwrap(), 0o600);
        assert_eq!(load_keys(None, None).unwrap(), None);
        let keys = load_keys(Some(&a), Some(&b)).unwrap().unwrap();
        assert_eq!(keys.signing().id(), 1);
        let err = load_keys(Some(&a), Some(&c)).unwrap_err().to_string();
        assert!(err.contains("both have key id 1"), "{err}");
        let err = load_keys(None, Some(&b)).unwrap_err().to_string();
        assert!(err.contains("b.key") && err.contains("--key-file"), "{err}");
    }

    #[test]
    fn generated_keys_differ_and_parse() {
        let (a, b) = (generate(3).unwrap(), generate(3).unwrap());
        assert_ne!(a, b);
        assert_eq!(parse(&a).unwrap().id(), 3);
    }
}
