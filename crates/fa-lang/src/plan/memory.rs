//! An estimate of the memory a training step needs, computed without libtorch, so that
//! `fa check` can print it and `fa train` can refuse a model that cannot fit before it loads
//! any data.
//!
//! What is exact: parameters, their gradients and one momentum buffer each (SGD and LARS
//! keep one), batch-norm buffers, EMA copies and feature banks, the batch of augmented views,
//! and the decoded dataset held in host memory. What is an estimate: activations kept for the
//! backward pass, counted per layer output (a convolution, its batch norm and its ReLU each
//! keep one tensor), and the InfoNCE similarity matrices. Allocator slack and libtorch's own
//! workspace are not counted: read the figure as a lower bound with the right order of
//! magnitude.

use serde::Serialize;

use super::params::resnet_layout;
use super::{plan, ResidualBlock};
use crate::ir::{FeatureShape, LossKind, ModuleKind, NodeKind, Stem};
use crate::valid::{dataset_size, ValidModel};

const F32: usize = 4;

/// Bytes by purpose; `device` is what the training device must hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemoryEstimate {
    /// Trainable parameters, their gradients and one optimiser buffer each.
    pub parameters: usize,
    /// Batch-norm running statistics, EMA copies.
    pub buffers: usize,
    /// Feature banks (features and dataset indices).
    pub banks: usize,
    /// One batch of every view, as f32.
    pub batch: usize,
    /// Activations kept for the backward pass and the loss's similarity matrices.
    pub activations: usize,
    /// The sum of the above.
    pub device: usize,
    /// The decoded training images (u8) in host memory, when the dataset's size is known.
    pub dataset: Option<usize>,
}

/// Estimates the memory of one training step of `valid` at its `data.batch`.
pub fn estimate(valid: &ValidModel) -> MemoryEstimate {
    let model = valid.model();
    let plan = plan(valid);
    let batch = model.data.batch_size;
    let parameters = plan.trainable.saturating_mul(3 * F32);
    let buffers = (plan.buffers + plan.ema).saturating_mul(F32);
    // Features in f32 and indices in i64: a bank's scalars are counted once by the plan,
    // so the indices' extra four bytes are added from the bank's size.
    let banks = plan
        .params
        .iter()
        .filter(|entry| entry.kind == super::ParamKind::Bank)
        .map(|entry| {
            let bytes = if entry.name.ends_with(".indices") {
                8
            } else {
                F32
            };
            entry.numel().saturating_mul(bytes)
        })
        .fold(0usize, usize::saturating_add);

    let mut per_image = 0usize;
    let mut batch_elements = 0usize;
    let mut square = 0usize;
    for &node in valid.order() {
        let kind = &model.graph[node].kind;
        match kind {
            NodeKind::View { .. } => {
                if let FeatureShape::Image {
                    channels,
                    height,
                    width,
                } = valid.shape(node)
                {
                    batch_elements = batch_elements.saturating_add(channels * height * width);
                }
            }
            NodeKind::Apply { module } if valid.carries_gradient(node) => {
                let input = valid.shape(valid.input(node));
                let chain = match model.modules.get(module).map(|def| &def.kind) {
                    Some(ModuleKind::Ema { chain, .. }) => chain.clone(),
                    _ => vec![module.clone()],
                };
                let mut shape = input;
                for member in &chain {
                    let Some(def) = model.modules.get(member) else {
                        break;
                    };
                    per_image = per_image.saturating_add(activations(&def.kind, shape));
                    match model.module_output_width(member, shape) {
                        Some(width) => {
                            shape = FeatureShape::Vector {
                                width,
                                samples: samples(shape),
                            }
                        }
                        None => break,
                    }
                }
            }
            NodeKind::FeatureAug(_) => {
                if let FeatureShape::Vector { width, samples } = valid.shape(node) {
                    per_image = per_image.saturating_add(width.saturating_mul(samples));
                }
            }
            _ => {}
        }
    }
    for term in valid.terms() {
        if let NodeKind::Loss(loss) = &model.graph[term.node].kind {
            if matches!(loss.kind, LossKind::InfoNce { .. }) {
                // Logits and their softmax, per sample and direction.
                let directions = if loss.symmetric { 2 } else { 1 };
                square = square.saturating_add(2 * directions * term.multiplicity);
            }
        }
    }
    let batch_bytes = batch_elements.saturating_mul(batch).saturating_mul(F32);
    let activations = per_image
        .saturating_mul(batch)
        .saturating_add(square.saturating_mul(batch).saturating_mul(batch))
        .saturating_mul(F32);
    let device = [parameters, buffers, banks, batch_bytes, activations]
        .into_iter()
        .fold(0usize, usize::saturating_add);
    let dataset = dataset_size(model).map(|images| {
        images
            .saturating_mul(model.data.channels)
            .saturating_mul(model.data.image_size)
            .saturating_mul(model.data.image_size)
    });
    MemoryEstimate {
        parameters,
        buffers,
        banks,
        batch: batch_bytes,
        activations,
        device,
        dataset,
    }
}

fn samples(shape: FeatureShape) -> usize {
    match shape {
        FeatureShape::Vector { samples, .. } => samples,
        FeatureShape::Image { .. } => 1,
    }
}

/// Activation elements one image keeps for the backward pass through a module.
fn activations(kind: &ModuleKind, input: FeatureShape) -> usize {
    match (kind, input) {
        (ModuleKind::ConvNet { widths }, FeatureShape::Image { height, width, .. }) => {
            let (mut h, mut w) = (height, width);
            let mut total = 0usize;
            for &channels in widths {
                // Convolution, batch norm and ReLU at full size, then the pooled output.
                total = total.saturating_add(3 * channels * h * w);
                h /= 2;
                w /= 2;
                total = total.saturating_add(channels * h * w);
            }
            total
        }
        (ModuleKind::ResNet { depth, stem }, FeatureShape::Image { height, width, .. }) => {
            let Some((block, stages)) = resnet_layout(*depth) else {
                return 0;
            };
            let (mut h, mut w) = match stem {
                Stem::Imagenet => (height.div_ceil(2), width.div_ceil(2)),
                Stem::Cifar => (height, width),
            };
            let mut total = 3 * 64 * h * w;
            if *stem == Stem::Imagenet {
                h = h.div_ceil(2);
                w = w.div_ceil(2);
                total += 64 * h * w;
            }
            for (stage, &blocks) in stages.iter().enumerate() {
                if stage > 0 {
                    h = h.div_ceil(2);
                    w = w.div_ceil(2);
                }
                let planes = 64usize << stage;
                // Per block: each convolution's output, its batch norm and ReLU, and the sum.
                let per_block = match block {
                    ResidualBlock::Basic => (3 + 3 + 1) * planes,
                    ResidualBlock::Bottleneck => (3 + 3 + 3 * 4 + 4) * planes,
                };
                total = total.saturating_add(blocks * per_block * h * w);
            }
            total
        }
        (ModuleKind::Mlp { widths, .. }, _) => {
            // Linear, batch norm and ReLU outputs of each layer, per FA sample.
            3 * widths.iter().sum::<usize>() * samples(input)
        }
        _ => 0,
    }
}

/// `bytes` in binary units with three significant figures: `1.25 GiB`, `640 MiB`.
pub fn human(bytes: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else if value >= 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// Reads a size such as `8GiB`, `512 MiB`, `24G` or `1000000` (bytes).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size: write e.g. 8GiB, 512MiB or 24G"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        other => {
            return Err(format!(
                "unknown size unit `{other}`: use B, KiB, MiB, GiB or TiB"
            ))
        }
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes < 1.0 || bytes > usize::MAX as f64 {
        return Err(format!("`{text}` is not a usable size"));
    }
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units_and_print_with_three_figures() {
        assert_eq!(parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 furlongs").is_err());
        assert!(parse_size("0").is_err());
        assert_eq!(human(1000), "1000 B");
        assert_eq!(human(3 << 29), "1.50 GiB");
        assert_eq!(human(640 << 20), "640 MiB");
    }
}
