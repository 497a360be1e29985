//! Secret files on disk: owner-only directories, atomic owner-only writes, zeroized reads.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Mode of directories holding secrets.
pub const DIR_MODE: u32 = 0o700;
/// Mode of secret files.
pub const FILE_MODE: u32 = 0o600;

/// A failed file operation, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {action}: {source}")]
pub struct FileError {
    /// The file or directory.
    pub path: PathBuf,
    /// What was being done.
    pub action: &'static str,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

impl FileError {
    fn new(path: &Path, action: &'static str, source: io::Error) -> Self {
        Self {
            path: path.to_owned(),
            action,
            source,
        }
    }
}

/// Creates `dir` and missing parents with mode 0700. An existing directory keeps its mode.
pub fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| FileError::new(dir, "creating directory", e))
}

/// Writes `contents` to `path` with mode 0600: to a temporary file in the same directory,
/// flushed to disk, then renamed into place, so a reader sees the whole file or none.
///
/// Refuses to replace an existing file (`AlreadyExists`), so two processes starting at once
/// cannot overwrite each other's freshly generated key.
pub fn write_private_atomic(path: &Path, contents: &[u8]) -> Result<(), FileError> {
    write_private(path, contents, false)
}

/// Like [`write_private_atomic`], but replaces an existing file (key rotation): readers see
/// the old contents or the new, never a mix.
pub fn replace_private_atomic(path: &Path, contents: &[u8]) -> Result<(), FileError> {
    write_private(path, contents, true)
}

fn write_private(path: &Path, contents: &[u8], replace: bool) -> Result<(), FileError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(fs::Permissions::from_mode(FILE_MODE))
        .tempfile_in(dir)
        .map_err(|e| FileError::new(path, "creating temporary file", e))?;
    temp.write_all(contents)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| FileError::new(path, "writing temporary file", e))?;
    let persisted = if replace {
        temp.persist(path).map(drop)
    } else {
        temp.persist_noclobber(path).map(drop)
    };
    persisted.map_err(|e| FileError::new(path, "renaming into place", e.error))?;
    // Make the rename durable too.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FileError::new(dir, "syncing directory", e))
}

/// Reads a secret file into a buffer that is zeroized on drop; `Ok(None)` if it does not exist.
pub fn read_secret(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, FileError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(Zeroizing::new(bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileError::new(path, "reading", e)),
    }
}

/// Whether group or others may access `path` (a secret file should be 0600).
pub fn is_group_or_world_accessible(path: &Path) -> Result<bool, FileError> {
    let mode = fs::metadata(path)
        .map_err(|e| FileError::new(path, "reading metadata", e))?
        .permissions()
        .mode();
    Ok(mode & 0o077 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_dir_and_atomic_write_use_owner_only_modes() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        let file = dir.join("secret");
        write_private_atomic(&file, b"hello").unwrap();
        assert_eq!(mode(&file), 0o600);
        assert!(!is_group_or_world_accessible(&file).unwrap());
        assert_eq!(read_secret(&file).unwrap().unwrap().as_slice(), b"hello");
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("secret")]);
    }

    #[test]
    fn atomic_write_never_replaces_an_existing_file() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("secret");
        write_private_atomic(&file, b"first").unwrap();
        let error = write_private_atomic(&file, b"second").unwrap_err();
        assert_eq!(error.source.kind(), io::ErrorKind::AlreadyExists);
        assert!(error.to_string().contains("secret"), "{error}");
        assert_eq!(fs::read(&file).unwrap(), b"first");
        replace_private_atomic(&file, b"second").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"second");
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn read_missing_is_none_and_loose_modes_are_detected() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("secret");
        assert!(read_secret(&file).unwrap().is_none());
        fs::write(&file, b"x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(is_group_or_world_accessible(&file).unwrap());
    }
}
