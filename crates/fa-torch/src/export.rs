//! `fa export --backbone`: a run's encoder weights, under torchvision's parameter names
//! (which timm's ResNets share), or as a plain state dict of fa's names for backbones that
//! neither library builds (the CIFAR stem, the small convnet).

use fa_base::random::Purpose;
use std::path::Path;

use tch::{Device, Tensor};

use crate::train::checkpoint;
use crate::train::error::io;
use crate::train::trainer::build_network;
use crate::train::TrainError;
use fa_lang::ir::{ModuleKind, Stem};
use fa_lang::plan::path_component;
use fa_lang::valid::ValidModel;

/// Whose layout the exported file follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExportFormat {
    /// `torchvision.models.resnetNN()` with `fc` replaced by `Identity`, loaded strictly.
    #[default]
    Torchvision,
    /// `timm.create_model("resnetNN", num_classes=0)`, loaded strictly (the same keys).
    Timm,
    /// fa's own tensor names for any backbone, for code that builds the module itself.
    StateDict,
}

impl ExportFormat {
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Torchvision => "torchvision",
            ExportFormat::Timm => "timm",
            ExportFormat::StateDict => "state-dict",
        }
    }
}

/// Which copy of the encoder is exported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExportEncoder {
    /// The online encoder, the one the paper evaluates (and `fa eval` does).
    #[default]
    Online,
    /// The EMA (momentum) copy of the encoder, in models that have one.
    Target,
}

/// Refuses a backbone that `format`'s ResNet cannot load strictly, saying why.
fn check_format(
    valid: &ValidModel,
    backbone: &str,
    format: ExportFormat,
) -> Result<(), TrainError> {
    if format == ExportFormat::StateDict {
        return Ok(());
    }
    let Some(definition) = valid.model().modules.get(backbone) else {
        return Ok(());
    };
    let refuse = |kind: String, reason: String| TrainError::ExportIncompatible {
        backbone: backbone.to_string(),
        kind,
        format: format.name(),
        reason,
    };
    match &definition.kind {
        ModuleKind::ResNet { stem: Stem::Imagenet, .. } => Ok(()),
        ModuleKind::ResNet { depth, stem: Stem::Cifar } => Err(refuse(
            format!("resnet{depth}, CIFAR stem"),
            format!(
                "its conv1 is a 3×3 stride-1 convolution without the max-pool, and {}'s resnet{depth} has a 7×7 stride-2 conv1 followed by a max-pool, so the weights cannot load into it",
                format.name()
            ),
        )),
        ModuleKind::ConvNet { widths } => Err(refuse(
            format!("convnet of {} blocks", widths.len()),
            "the small convnet has no counterpart among the ResNets".into(),
        )),
        other => Err(refuse(format!("{other:?}"), "only ResNets have a counterpart".into())),
    }
}

/// The checkpoint prefix of the encoder's tensors: `model/f.` for the online encoder,
/// `model/ema.<target>.f.` for the EMA copy made by the target whose chain holds it.
fn encoder_prefix(
    valid: &ValidModel,
    backbone: &str,
    encoder: ExportEncoder,
) -> Result<String, TrainError> {
    match encoder {
        ExportEncoder::Online => Ok(format!("model/{backbone}.")),
        ExportEncoder::Target => valid
            .model()
            .modules
            .iter()
            .find_map(|(name, definition)| match &definition.kind {
                ModuleKind::Ema { chain, .. } if chain.iter().any(|member| member == backbone) => {
                    Some(format!(
                        "model/ema.{}.{}.",
                        path_component(name),
                        path_component(backbone)
                    ))
                }
                _ => None,
            })
            .ok_or_else(|| TrainError::ExportNoTarget {
                backbone: backbone.to_string(),
            }),
    }
}

/// Writes the backbone's tensors of the latest checkpoint of `run` under torchvision's names
/// (the online encoder); returns how many tensors were written.
pub fn export_backbone(valid: &ValidModel, run: &Path, out: &Path) -> Result<usize, TrainError> {
    export_backbone_as(
        valid,
        run,
        out,
        ExportFormat::Torchvision,
        ExportEncoder::Online,
    )
}

/// Writes the `encoder` copy of the backbone of the latest checkpoint of `run` (or of the
/// checkpoint file `run`) in `format`; returns how many tensors were written. A backbone the
/// format's library cannot load is refused before anything is read.
pub fn export_backbone_as(
    valid: &ValidModel,
    run: &Path,
    out: &Path,
    format: ExportFormat,
    encoder: ExportEncoder,
) -> Result<usize, TrainError> {
    check_destination(run, out)?;
    let (vs, network) = build_network(valid, Device::Cpu, 0, Purpose::Init)?;
    let backbone = network.backbone_name().to_string();
    check_format(valid, &backbone, format)?;
    let prefix = encoder_prefix(valid, &backbone, encoder)?;
    let path = if run.is_file() {
        run.to_path_buf()
    } else {
        checkpoint::latest(run).ok_or_else(|| TrainError::NoCheckpoint {
            run: run.to_path_buf(),
        })?
    };
    let ckpt = checkpoint::load(&path, Device::Cpu)?;
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
    // Through a temporary file and a rename, like every file fa writes: durable before it is
    // visible (the data, then the rename, then the folder's entry).
    let temporary = fa_base::fsio::temporary_path(out);
    let written = Tensor::write_safetensors(&tensors, &temporary).map_err(TrainError::from);
    let synced = written.and_then(|()| {
        std::fs::File::open(&temporary)
            .and_then(|file| file.sync_all())
            .map_err(io(format!("cannot write {}", out.display())))
    });
    if let Err(error) = synced {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    fa_base::fsio::rename_durably(&temporary, out)
        .map_err(io(format!("cannot write {}", out.display())))?;
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
    if !fa_base::fsio::is_replaceable(out) {
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
