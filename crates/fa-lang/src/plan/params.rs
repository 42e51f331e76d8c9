//! The parameter table of each module kind: names below the module's prefix (torchvision's
//! for ResNets), shapes, and which entries are buffers.

use crate::ir::{FeatureShape, ModuleKind, Norm, Stem};

/// The residual block kind and blocks per stage of a torchvision ResNet depth.
pub fn resnet_layout(depth: u32) -> Option<(ResidualBlock, [usize; 4])> {
    match depth {
        18 => Some((ResidualBlock::Basic, [2, 2, 2, 2])),
        34 => Some((ResidualBlock::Basic, [3, 4, 6, 3])),
        50 => Some((ResidualBlock::Bottleneck, [3, 4, 6, 3])),
        101 => Some((ResidualBlock::Bottleneck, [3, 4, 23, 3])),
        152 => Some((ResidualBlock::Bottleneck, [3, 8, 36, 3])),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResidualBlock {
    /// Two 3×3 convolutions (ResNet-18, 34); expansion 1.
    Basic,
    /// 1×1, 3×3 (strided, as torchvision's v1.5), 1×1 convolutions; expansion 4.
    Bottleneck,
}

impl ResidualBlock {
    pub fn expansion(self) -> usize {
        match self {
            ResidualBlock::Basic => 1,
            ResidualBlock::Bottleneck => 4,
        }
    }
}

/// The channel count of a module's input (images) or its width (vectors, flattened images).
fn flat_width(shape: FeatureShape) -> usize {
    match shape {
        FeatureShape::Image {
            channels,
            height,
            width,
        } => channels * height * width,
        FeatureShape::Vector { width, .. } => width,
    }
}

fn channels(shape: FeatureShape) -> usize {
    match shape {
        FeatureShape::Image { channels, .. } => channels,
        FeatureShape::Vector { width, .. } => width,
    }
}

/// The entries of one module below its prefix: `(name, shape, is_buffer)`, in the order
/// PyTorch's `state_dict` lists them.
pub fn module_params(kind: &ModuleKind, input: FeatureShape) -> Vec<(String, Vec<usize>, bool)> {
    let mut out = Vec::new();
    match kind {
        ModuleKind::ResNet { depth, stem } => {
            let Some((block, stages)) = resnet_layout(*depth) else {
                return out;
            };
            let kernel = match stem {
                Stem::Imagenet => 7,
                Stem::Cifar => 3,
            };
            out.push((
                "conv1.weight".into(),
                vec![64, channels(input), kernel, kernel],
                false,
            ));
            batch_norm_params(&mut out, "bn1", 64);
            let mut inplanes = 64;
            for (stage, &blocks) in stages.iter().enumerate() {
                let planes = 64 << stage;
                let stride = if stage == 0 { 1 } else { 2 };
                for index in 0..blocks {
                    let prefix = format!("layer{}.{index}", stage + 1);
                    let block_stride = if index == 0 { stride } else { 1 };
                    let outplanes = planes * block.expansion();
                    // (output channels, input channels, kernel) of conv1, conv2[, conv3],
                    // each followed by its batch norm bn1, bn2[, bn3], as torchvision names them.
                    let convs = match block {
                        ResidualBlock::Basic => vec![(planes, inplanes, 3), (planes, planes, 3)],
                        ResidualBlock::Bottleneck => {
                            vec![
                                (planes, inplanes, 1),
                                (planes, planes, 3),
                                (outplanes, planes, 1),
                            ]
                        }
                    };
                    for (number, (output, input, kernel)) in (1..).zip(convs) {
                        out.push((
                            format!("{prefix}.conv{number}.weight"),
                            vec![output, input, kernel, kernel],
                            false,
                        ));
                        batch_norm_params(&mut out, &format!("{prefix}.bn{number}"), output);
                    }
                    if block_stride != 1 || inplanes != outplanes {
                        out.push((
                            format!("{prefix}.downsample.0.weight"),
                            vec![outplanes, inplanes, 1, 1],
                            false,
                        ));
                        batch_norm_params(&mut out, &format!("{prefix}.downsample.1"), outplanes);
                    }
                    inplanes = outplanes;
                }
            }
        }
        ModuleKind::ConvNet { widths } => {
            let mut previous = channels(input);
            for (index, &width) in widths.iter().enumerate() {
                out.push((
                    format!("blocks.{index}.conv.weight"),
                    vec![width, previous, 3, 3],
                    false,
                ));
                batch_norm_params(&mut out, &format!("blocks.{index}.bn"), width);
                previous = width;
            }
        }
        ModuleKind::Mlp {
            widths,
            norm,
            last_norm,
        } => {
            let mut previous = flat_width(input);
            for (index, &width) in widths.iter().enumerate() {
                let normed = mlp_layer_has_norm(index, widths.len(), *norm, *last_norm);
                out.push((
                    format!("layers.{index}.linear.weight"),
                    vec![width, previous],
                    false,
                ));
                if normed {
                    batch_norm_params(&mut out, &format!("layers.{index}.bn"), width);
                } else {
                    out.push((format!("layers.{index}.linear.bias"), vec![width], false));
                }
                previous = width;
            }
        }
        ModuleKind::Ema { .. } => {}
    }
    out
}

/// Whether layer `index` of an MLP with `layers` layers is followed by batch norm. The
/// linear layer has a bias exactly when it is not (batch norm's shift makes a bias redundant).
pub fn mlp_layer_has_norm(index: usize, layers: usize, norm: Norm, last_norm: bool) -> bool {
    if index + 1 == layers {
        last_norm
    } else {
        norm == Norm::Batch
    }
}

fn batch_norm_params(out: &mut Vec<(String, Vec<usize>, bool)>, prefix: &str, width: usize) {
    out.push((format!("{prefix}.weight"), vec![width], false));
    out.push((format!("{prefix}.bias"), vec![width], false));
    out.push((format!("{prefix}.running_mean"), vec![width], true));
    out.push((format!("{prefix}.running_var"), vec![width], true));
    out.push((format!("{prefix}.num_batches_tracked"), vec![], true));
}
