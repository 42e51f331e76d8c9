//! A run folder owned by one trainer at a time: an OS lock on `<run>/.lock`, the artefacts
//! that make a folder a run, and the temporary files a dead process left behind.
//!
//! The lock is an advisory `flock` on a file inside the run folder, so the operating system
//! releases it when its holder exits for any reason (a crash or `kill -9` included) and a
//! stale lock file never blocks a later run. The holder writes its process id into the file
//! so that a refused trainer can say who holds the folder.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use crate::train::error::io;
use crate::train::TrainError;

/// The lock file of a run folder.
pub const LOCK_FILE: &str = ".lock";

/// The files and folders whose presence makes a folder a run. A new run there is refused
/// unless it resumes or overwrites.
pub const ARTEFACTS: [&str; 5] = [
    "metrics.jsonl",
    "model.json",
    "summary.json",
    "checkpoints",
    crate::train::tensorboard::EVENTS_FILE,
];

/// The exclusive ownership of a run folder; the lock is released when this is dropped or
/// the process ends.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Creates `run` when missing and locks it for this process, or says which process
    /// holds it.
    pub fn acquire(run: &Path) -> Result<RunLock, TrainError> {
        if run.exists() && !run.is_dir() {
            return Err(TrainError::RunIsAFile {
                run: run.to_path_buf(),
            });
        }
        let foreign = foreign_entries(run);
        if !foreign.is_empty() {
            return Err(TrainError::RunFolderNotEmpty {
                run: run.to_path_buf(),
                examples: foreign.join(", "),
            });
        }
        std::fs::create_dir_all(run).map_err(io(format!("cannot create {}", run.display())))?;
        let path = run.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(format!("cannot open {}", path.display())))?;
        let locked = file
            .try_lock_exclusive()
            .map_err(io(format!("cannot lock {}", path.display())))?;
        if !locked {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(TrainError::RunBusy {
                run: run.to_path_buf(),
                holder: text.trim().parse().ok(),
            });
        }
        // Only the holder writes, so the id is never mixed with another's.
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.flush());
        written.map_err(io(format!("cannot write {}", path.display())))?;
        Ok(RunLock { _file: file })
    }
}

/// The artefacts of [`ARTEFACTS`] present in `run`, in that order.
pub fn artefacts(run: &Path) -> Vec<&'static str> {
    ARTEFACTS
        .into_iter()
        .filter(|name| run.join(name).symlink_metadata().is_ok())
        .collect()
}

/// The entries of `run` that no run writes (at most three, sorted): a run goes into a new
/// folder, an empty one or an earlier run's, never into a folder of other files (`--out .`
/// in a project, `--out /`), which `--overwrite` would then share with a run.
pub fn foreign_entries(run: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(run) else {
        return Vec::new();
    };
    let mut foreign: Vec<String> = entries
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            !ARTEFACTS.contains(&name.as_str())
                && name != LOCK_FILE
                && temporary_owner(name).is_none()
        })
        .collect();
    foreign.sort();
    foreign.truncate(3);
    foreign
}

/// Removes every artefact of an earlier run in `run` (`--overwrite`).
pub fn remove_artefacts(run: &Path) -> Result<(), TrainError> {
    for name in artefacts(run) {
        let path = run.join(name);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io(format!("cannot remove {}", path.display())))?;
    }
    Ok(())
}

/// The process id in the name of a temporary file fa writes (`.<name>.<pid>.tmp`, see
/// [`fa_base::fsio::write_file_atomically`]), `None` for any other name.
fn temporary_owner(file_name: &str) -> Option<u32> {
    let inner = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (_, pid) = inner.rsplit_once('.')?;
    pid.parse().ok()
}

/// Removes the temporary files that another process left in `run` and its checkpoint
/// folder. Called while holding the run's lock, so no live trainer is writing them; returns
/// the files removed.
pub fn remove_stale_temporaries(run: &Path) -> Vec<PathBuf> {
    let own = std::process::id();
    let mut removed = Vec::new();
    for folder in [run.to_path_buf(), run.join("checkpoints")] {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(owner) = name.to_str().and_then(temporary_owner) else {
                continue;
            };
            let is_file = entry.file_type().is_ok_and(|kind| kind.is_file());
            if owner != own && is_file && std::fs::remove_file(entry.path()).is_ok() {
                removed.push(entry.path());
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_give_their_owner_and_nothing_else_does() {
        assert_eq!(temporary_owner(".model.json.123.tmp"), Some(123));
        assert_eq!(
            temporary_owner(".step-000000004.safetensors.77.tmp"),
            Some(77)
        );
        assert_eq!(temporary_owner("model.json"), None);
        assert_eq!(temporary_owner(".lock"), None);
        assert_eq!(temporary_owner(".notes.tmp"), None);
    }

    #[test]
    fn a_second_lock_on_the_same_folder_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let error = RunLock::acquire(dir.path()).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains(&std::process::id().to_string()),
            "the message names the holder: {text}"
        );
        drop(first);
        RunLock::acquire(dir.path()).expect("released with its holder");
    }

    #[test]
    fn stale_temporaries_of_other_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = dir.path().join("checkpoints");
        std::fs::create_dir_all(&checkpoints).unwrap();
        let stale = checkpoints.join(".step-000000002.safetensors.999999999.tmp");
        let other = dir.path().join(".model.json.999999998.tmp");
        let kept = dir.path().join("notes.tmp");
        for path in [&stale, &other, &kept] {
            std::fs::write(path, b"x").unwrap();
        }
        let removed = remove_stale_temporaries(dir.path());
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(!stale.exists() && !other.exists() && kept.exists());
    }
}
