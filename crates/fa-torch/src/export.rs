//! `fa export --backbone`: a run's encoder weights under torchvision's parameter names.

use fa_base::random::Purpose;
use std::path::Path;

use tch::{Device, Tensor};

use crate::train::checkpoint;
use crate::train::error::io;
use crate::train::trainer::build_network;
use crate::train::TrainError;
use fa_lang::valid::ValidModel;

/// Writes the backbone's tensors of the latest checkpoint of `run` under torchvision's names
/// (the module prefix stripped); returns how many tensors were written.
pub fn export_backbone(valid: &ValidModel, run: &Path, out: &Path) -> Result<usize, TrainError> {
    check_destination(run, out)?;
    let path = if run.is_file() {
        run.to_path_buf()
    } else {
        checkpoint::latest(run).ok_or_else(|| TrainError::NoCheckpoint {
            run: run.to_path_buf(),
        })?
    };
    let ckpt = checkpoint::load(&path, Device::Cpu)?;
    let (vs, network) = build_network(valid, Device::Cpu, 0, Purpose::Init)?;
    // A checkpoint of another model (another width, another channel count) is refused with
    // every difference, as resuming refuses it, instead of exporting weights that do not fit.
    let expected: Vec<(String, Vec<i64>)> = vs
        .variables()
        .into_iter()
        .map(|(name, tensor)| (format!("model/{name}"), tensor.size()))
        .collect();
    checkpoint::check_compatible(&ckpt, &expected).map_err(|source| {
        TrainError::ForeignCheckpoint {
            path: path.clone(),
            source,
        }
    })?;
    let backbone = network.backbone_name().to_string();
    let prefix = format!("model/{backbone}.");
    let tensors: Vec<(String, Tensor)> = ckpt
        .tensors
        .iter()
        .filter_map(|(name, tensor)| {
            name.strip_prefix(&prefix)
                .map(|short| (short.to_string(), tensor.shallow_clone()))
        })
        .collect();
    if tensors.is_empty() {
        return Err(TrainError::EmptyExport { backbone, path });
    }
    // Through a temporary file and a rename, like every file fa writes.
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = out.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    if let Err(error) = Tensor::write_safetensors(&tensors, &temporary) {
        let _ = std::fs::remove_file(&temporary);
        return Err(error.into());
    }
    // Durable before it is visible: the data, then the rename, then the folder's entry.
    let synced = std::fs::File::open(&temporary).and_then(|file| file.sync_all());
    if let Err(error) = synced.and_then(|()| std::fs::rename(&temporary, out)) {
        let _ = std::fs::remove_file(&temporary);
        return Err(io(format!("cannot write {}", out.display()))(error));
    }
    let folder = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if let Ok(directory) = std::fs::File::open(folder) {
        let _ = directory.sync_all();
    }
    Ok(tensors.len())
}

/// Refuses an export file that would land in the run's checkpoint folder (where it could
/// replace a checkpoint), in a folder that does not exist, or on a folder.
fn check_destination(run: &Path, out: &Path) -> Result<(), TrainError> {
    let folder = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(TrainError::ExportFolderMissing {
            out: out.to_path_buf(),
            folder: folder.to_path_buf(),
        });
    }
    if out.is_dir() {
        return Err(TrainError::ExportOntoFolder {
            out: out.to_path_buf(),
        });
    }
    // The file is renamed into place: a device (`/dev/null`), a pipe or a link would be
    // replaced by it.
    if out.symlink_metadata().is_ok_and(|metadata| !metadata.is_file()) {
        return Err(TrainError::ExportOntoSpecial {
            out: out.to_path_buf(),
        });
    }
    let run_folder = if run.is_file() {
        run.parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."))
    } else {
        run
    };
    let checkpoints = checkpoint::checkpoint_folder(run_folder);
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(folder, &checkpoints) {
        return Err(TrainError::ExportIntoCheckpoints {
            out: out.to_path_buf(),
            checkpoints,
        });
    }
    Ok(())
}
