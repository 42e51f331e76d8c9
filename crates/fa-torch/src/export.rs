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
    let path = if run.is_file() {
        run.to_path_buf()
    } else {
        checkpoint::latest(run).ok_or_else(|| TrainError::NoCheckpoint {
            run: run.to_path_buf(),
        })?
    };
    let ckpt = checkpoint::load(&path, Device::Cpu)?;
    let (_vs, network) = build_network(valid, Device::Cpu, 0, Purpose::Init)?;
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
    std::fs::rename(&temporary, out).map_err(io(format!("cannot write {}", out.display())))?;
    Ok(tensors.len())
}
