//! Private state files. Written to a temp file in the same directory, fsynced, then renamed over the
//! target, so a crash leaves either the old file or the new one, never a torn one; mode 0600 from the
//! first byte.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Creates `dir` (and parents) with mode 0700 if it does not exist.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Atomically replaces `path` with `contents`, mode 0600.
pub fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    ensure_private_dir(dir)?;
    // tempfile creates its files with mode 0600 on Unix.
    let mut tmp = tempfile::Builder::new().prefix(TEMP_PREFIX).tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Make the rename itself durable.
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Prefix of the temp files [`write_private_file`] writes before renaming them into place.
const TEMP_PREFIX: &str = ".tmp";

/// Removes the temp files a crash in the middle of [`write_private_file`] left in `dir`. Call it at start,
/// before anything writes there. Returns how many were removed.
pub fn remove_torn_writes(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// A device's long-lived identity (its Ed25519 key), kept as a 0600 PEM file at `path`; created on first
/// use. Node apps on platforms with a keychain should keep the key there instead.
pub fn load_or_create_identity(path: &Path) -> io::Result<certs::Identity> {
    match fs::read_to_string(path) {
        Ok(pem) => certs::Identity::from_pkcs8_pem(&pem).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let identity = certs::Identity::generate();
            write_private_file(path, identity.to_pkcs8_pem().as_bytes())?;
            Ok(identity)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node/identity.pem");
        let first = load_or_create_identity(&path).unwrap();
        assert_eq!(load_or_create_identity(&path).unwrap().id(), first.id());
        fs::write(&path, "garbage").unwrap();
        assert_eq!(load_or_create_identity(&path).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn torn_writes_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".tmpAbC123"), b"half").unwrap();
        fs::write(dir.path().join("token"), b"keep").unwrap();
        assert_eq!(remove_torn_writes(dir.path()).unwrap(), 1);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn writes_replace_atomically_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        write_private_file(&path, b"one").unwrap();
        write_private_file(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        }
        let leftovers = fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1, "no temp files left behind");
    }
}
