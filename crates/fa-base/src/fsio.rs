//! Files written whole or not at all: a temporary file, fsync, rename, fsync of the folder.

use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename,
/// fsync of the folder. Creates the folder when missing. On failure the temporary file is
/// removed and `path` is untouched. Every file fa writes into a run folder (checkpoints,
/// `model.json`, `summary.json`, exports) and every file `fa fmt` rewrites goes through here.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically(path, bytes, None)
}

/// The largest source file fa reads: far above any model description (the paper's whole set
/// of tables is a few kilobytes), and small enough that `/dev/zero` or a mistaken dataset
/// path fails at once instead of filling the memory.
pub const MAX_SOURCE_BYTES: u64 = 64 << 20;

/// Reads a source file of at most [`MAX_SOURCE_BYTES`]; a larger one (or an endless device)
/// is an `InvalidData` error saying so.
pub fn read_source(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_SOURCE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SOURCE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} is larger than {} MiB; a .fa file is a short text",
                path.display(),
                MAX_SOURCE_BYTES >> 20
            ),
        ));
    }
    Ok(bytes)
}

/// Rewrites the existing file `path` atomically, as an editor that saves safely would: a
/// symbolic link is followed and its target rewritten (the link stays a link), and the file
/// keeps its permission bits. A file with several hard links is replaced under this name
/// only (a rename makes a new inode); its other names keep the old contents.
pub fn rewrite_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let target = std::fs::canonicalize(path)?;
    let permissions = std::fs::metadata(&target)?.permissions();
    write_atomically(&target, bytes, Some(permissions))
}

/// Whether a write may put a file at `path`: nothing is there, or a regular file. A rename
/// replaces whatever has the name, so a device (`/dev/null`), a pipe, a folder or a link
/// is refused rather than replaced by a regular file.
pub fn is_replaceable(path: &Path) -> bool {
    std::fs::symlink_metadata(path).map_or(true, |metadata| metadata.is_file())
}

/// The temporary file a write to `path` goes through: `.<name>.<pid>.tmp` beside it. The
/// leading dot and the `.tmp` suffix keep `latest` from ever picking a partial file, and the
/// process id lets the next trainer remove what a dead process left.
pub fn temporary_path(path: &Path) -> PathBuf {
    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("file");
    path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()))
}

/// Renames the complete, synced file `temporary` to `path` and syncs the folder, so that the
/// rename itself is durable. On failure the temporary file is removed.
pub fn rename_durably(temporary: &Path, path: &Path) -> std::io::Result<()> {
    if let Err(error) = std::fs::rename(temporary, path) {
        let _ = std::fs::remove_file(temporary);
        return Err(error);
    }
    // Some file systems refuse to open or sync a directory; the data is already safe then,
    // so that is not an error.
    if let Ok(directory) = std::fs::File::open(folder_of(path)) {
        let _ = directory.sync_all();
    }
    Ok(())
}

fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn write_atomically(
    path: &Path,
    bytes: &[u8],
    permissions: Option<std::fs::Permissions>,
) -> std::io::Result<()> {
    use std::io::Write;

    if !is_replaceable(path) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} exists and is not a regular file; fa only replaces regular files",
                path.display()
            ),
        ));
    }
    std::fs::create_dir_all(folder_of(path))?;
    let temporary = temporary_path(path);
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        if let Some(permissions) = permissions {
            file.set_permissions(permissions)?;
        }
        file.sync_all()
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    rename_durably(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_is_not_a_regular_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("folder");
        std::fs::create_dir(&folder).unwrap();
        let error = write_file_atomically(&folder, b"x").unwrap_err();
        assert!(
            error.to_string().contains("is not a regular file"),
            "{error}"
        );
        assert!(folder.is_dir());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&folder, &link).unwrap();
        assert!(write_file_atomically(&link, b"x").is_err());
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        let file = dir.path().join("file");
        write_file_atomically(&file, b"one").unwrap();
        write_file_atomically(&file, b"two").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 3, "no temporary file is left");
    }
}
