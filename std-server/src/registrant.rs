//! The registrant id `herald register` and `herald unregister` use when none is given:
//! a random secret per service name, kept in the client's state directory, so that a
//! registrant restarted on the same host (by the same user) takes its name back, and
//! nobody else can compute it.
//!
//! Each name's id is a file `registrants/<hex of the name>` under the state directory
//! (`$XDG_STATE_HOME/herald`, else `~/.local/state/herald`), created `0600` in a `0700`
//! directory, holding 16 hex digits. The first command for a name creates it
//! (atomically: concurrent commands agree on one id); a file others may read is refused.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Longest registrant file read.
const MAX_FILE: u64 = 64;

/// Where the registrant secrets are kept: `registrants` in the user's state directory
/// (`$XDG_STATE_HOME/herald`, else `$HOME/.local/state/herald`); `None` when neither
/// variable is set (a secret is never kept in the working directory).
pub fn default_dir() -> Option<PathBuf> {
    let set = |v: &str| std::env::var_os(v).is_some_and(|s| !s.is_empty());
    (set("XDG_STATE_HOME") || set("HOME"))
        .then(|| crate::config::default_data_dir().join("registrants"))
}

/// The registrant id for `service`, kept in `dir`: read, or created at random on first
/// use.
pub fn kept(dir: &Path, service: &str) -> io::Result<u64> {
    let path = dir.join(file_name(service));
    match read(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let id = random_id()?;
    let temporary = dir.join(format!(".{}.{}", file_name(service), std::process::id()));
    let written = write_new(&temporary, id).and_then(|()| std::fs::hard_link(&temporary, &path));
    let _ = std::fs::remove_file(&temporary);
    match written {
        Ok(()) => Ok(id),
        // Another command made it first: use its id.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read(&path),
        Err(e) => Err(e),
    }
}

fn file_name(service: &str) -> String {
    service.bytes().map(|b| format!("{b:02x}")).collect()
}

fn random_id() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    loop {
        File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        let id = u64::from_le_bytes(bytes);
        if id != 0 {
            return Ok(id);
        }
    }
}

fn write_new(path: &Path, id: u64) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{id:016x}")?;
    file.sync_all()
}

fn read(path: &Path) -> io::Result<u64> {
    let invalid = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("registrant file {}: {what}", path.display()),
        )
    };
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(invalid("not a regular file"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(invalid(
            "others may read it (the id is a secret): chmod 600 it, or delete it for a new id",
        ));
    }
    let mut text = String::new();
    File::open(path)?.take(MAX_FILE).read_to_string(&mut text)?;
    let hex = text.trim();
    if hex.len() != 16 {
        return Err(invalid("not 16 hex digits"));
    }
    u64::from_str_radix(hex, 16).map_err(|_| invalid("not 16 hex digits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_random_kept_private_and_taken_back() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("registrants");
        let a = kept(&dir, "billing").unwrap();
        assert_eq!(kept(&dir, "billing").unwrap(), a, "taken back");
        let b = kept(&dir, "billing/eu ünï").unwrap();
        assert_ne!(a, b);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            kept(other.path(), "billing").unwrap(),
            a,
            "random, not derived"
        );
        let file = dir.join(file_name("billing"));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = kept(&dir, "billing").unwrap_err();
        assert!(err.to_string().contains("others may read it"), "{err}");
    }
}
