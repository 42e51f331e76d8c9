//! The modules a `.fa` file can name — ResNet, small convnet, MLP — built on tch with torchvision's parameter names.
//!
//! Every layer registers its tensors through [`Registry`], which names them in the VarStore
//! and records them in creation order; an EMA copy built by the same code records its
//! tensors in the same order, which is how online and target tensors are paired.

use tch::{nn, Device, Kind, Tensor};

use crate::dist::Collectives;
use crate::lower::LowerError;
use fa_lang::ir::{FeatureShape, ModuleKind, Norm, Stem};
use fa_lang::plan::{mlp_layer_has_norm, resnet_layout, ResidualBlock};

/// Batch-norm momentum and epsilon, PyTorch's defaults.
const BN_MOMENTUM: f64 = 0.1;
const BN_EPS: f64 = 1e-5;

/// Names tensors in the VarStore and remembers them, with whether each is a buffer.
pub(crate) struct Registry {
    /// False for EMA copies: their parameters never require gradients.
    pub trainable: bool,
    pub device: Device,
    pub tensors: Vec<(Tensor, bool)>,
    /// The process group whose global batch statistics batch norm uses (sync batch norm);
    /// `None` normalises each process's batch on its own.
    pub sync: Option<Collectives>,
}

impl Registry {
    pub fn new(trainable: bool, device: Device) -> Registry {
        Registry {
            trainable,
            device,
            tensors: Vec::new(),
            sync: None,
        }
    }

    fn parameter(&mut self, path: &nn::Path, name: &str, value: Tensor) -> Tensor {
        let tensor = path.add(name, value, self.trainable);
        self.tensors.push((tensor.shallow_clone(), false));
        tensor
    }

    fn buffer(&mut self, path: &nn::Path, name: &str, value: Tensor) -> Tensor {
        let tensor = path.add(name, value, false);
        self.tensors.push((tensor.shallow_clone(), true));
        tensor
    }

    fn float(&self) -> (Kind, Device) {
        (Kind::Float, self.device)
    }
}

/// Batch normalisation with torchvision's five state entries.
#[derive(Debug)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    /// Kept only so that a state dict loads into torchvision strictly; the fixed momentum
    /// means PyTorch never reads it either.
    num_batches_tracked: Tensor,
    /// Sync batch norm: training statistics over the global batch of every rank.
    sync: Option<Collectives>,
}

impl BatchNorm {
    pub(crate) fn new(path: &nn::Path, registry: &mut Registry, width: usize) -> BatchNorm {
        let width = width as i64;
        let options = registry.float();
        BatchNorm {
            weight: registry.parameter(path, "weight", Tensor::ones([width], options)),
            bias: registry.parameter(path, "bias", Tensor::zeros([width], options)),
            running_mean: registry.buffer(path, "running_mean", Tensor::zeros([width], options)),
            running_var: registry.buffer(path, "running_var", Tensor::ones([width], options)),
            num_batches_tracked: registry.buffer(
                path,
                "num_batches_tracked",
                Tensor::zeros([] as [i64; 0], (Kind::Int64, registry.device)),
            ),
            sync: registry.sync.clone(),
        }
    }

    /// # Shapes
    /// `[N, C]` or `[N, C, H, W]` to the same shape. In training mode normalises with the
    /// batch statistics and updates the running ones.
    pub fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        if train {
            tch::no_grad(|| {
                let _ = self.num_batches_tracked.shallow_clone().g_add_scalar_(1);
            });
            if let Some(sync) = &self.sync {
                return self.forward_synced(xs, sync);
            }
        }
        xs.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            BN_MOMENTUM,
            BN_EPS,
            true,
        )
    }
}

impl BatchNorm {
    /// Training-mode batch norm with the statistics of the global batch: each rank's
    /// per-channel sums go through the autograd all-gather, so the gradient of every rank's
    /// loss reaches every rank's inputs through the shared mean and variance, as one process
    /// with the whole batch computes it. Two passes (the mean, then the squared deviations
    /// from it) keep the variance as accurate as libtorch's own kernel; the running variance
    /// takes the unbiased estimate over the global count, as `torch.nn.SyncBatchNorm` does.
    ///
    /// # Shapes
    /// `[N, C]` or `[N, C, H, W]` to the same shape; every rank has the same N.
    fn forward_synced(&self, xs: &Tensor, sync: &Collectives) -> Tensor {
        let channels = xs.size()[1];
        let dims: Vec<i64> = (0..xs.dim() as i64).filter(|&d| d != 1).collect();
        let mut shape = vec![1i64; xs.dim()];
        shape[1] = channels;
        let count = (xs.numel() as i64 / channels) * sync.world() as i64;
        // The ranks' rows summed by a product with ones rather than `sum`: the backward of
        // the all-gather (a reduce-scatter) needs a contiguous gradient, and the gradient of
        // `sum` is an expanded, non-contiguous view, where the product's is a fresh matrix.
        let ones = Tensor::ones([1, sync.world() as i64], (xs.kind(), xs.device()));
        let global_sum = |local: Tensor| {
            ones.matmul(&sync.gather_autograd(&local.unsqueeze(0)))
                .squeeze_dim(0)
        };
        let mean = global_sum(xs.sum_dim_intlist(dims.as_slice(), false, xs.kind())) / count as f64;
        let centred = xs - mean.view(shape.as_slice());
        let var = global_sum(
            centred
                .square()
                .sum_dim_intlist(dims.as_slice(), false, xs.kind()),
        ) / count as f64;
        tch::no_grad(|| {
            let unbiased = var.detach() * (count as f64 / (count - 1).max(1) as f64);
            let mut running_mean = self.running_mean.shallow_clone();
            let _ = running_mean.g_mul_scalar_(1.0 - BN_MOMENTUM);
            let _ = running_mean.g_add_(&(mean.detach() * BN_MOMENTUM));
            let mut running_var = self.running_var.shallow_clone();
            let _ = running_var.g_mul_scalar_(1.0 - BN_MOMENTUM);
            let _ = running_var.g_add_(&(unbiased * BN_MOMENTUM));
        });
        centred * (var + BN_EPS).rsqrt().view(shape.as_slice()) * self.weight.view(shape.as_slice())
            + self.bias.view(shape.as_slice())
    }
}

/// A bias-free 2-D convolution (every convolution here is followed by batch norm).
#[derive(Debug)]
pub struct Conv2d {
    weight: Tensor,
    stride: i64,
    padding: i64,
}

impl Conv2d {
    /// Initialised as torchvision's ResNet: Kaiming normal, fan-out, ReLU gain.
    pub(crate) fn new(
        path: &nn::Path,
        registry: &mut Registry,
        input: usize,
        output: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Conv2d {
        let fan_out = (output * kernel * kernel) as f64;
        let std = (2.0 / fan_out).sqrt();
        let shape = [output as i64, input as i64, kernel as i64, kernel as i64];
        let value = Tensor::randn(shape, registry.float()) * std;
        Conv2d {
            weight: registry.parameter(path, "weight", value),
            stride: stride as i64,
            padding: padding as i64,
        }
    }

    /// # Shapes
    /// `[N, input, H, W]` to `[N, output, H', W']`.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        xs.conv2d(
            &self.weight,
            None::<&Tensor>,
            [self.stride, self.stride],
            [self.padding, self.padding],
            [1, 1],
            1,
        )
    }
}

/// A convolution followed by batch norm. In evaluation mode the norm's affine map (running
/// statistics, weight and bias) is folded into the convolution: one kernel with a bias
/// instead of a convolution and a second pass over its output, the same function up to
/// rounding (about a fifth faster for a ResNet-18 on the CPU). Training mode runs the two.
///
/// # Shapes
/// `[N, input, H, W]` to `[N, output, H', W']`.
fn conv_norm(conv: &Conv2d, norm: &BatchNorm, xs: &Tensor, train: bool) -> Tensor {
    if train {
        return norm.forward(&conv.forward(xs), true);
    }
    let scale = &norm.weight * (&norm.running_var + BN_EPS).rsqrt();
    let bias = &norm.bias - &norm.running_mean * &scale;
    let weight = &conv.weight * scale.view([-1, 1, 1, 1]);
    xs.conv2d(
        &weight,
        Some(&bias),
        [conv.stride, conv.stride],
        [conv.padding, conv.padding],
        [1, 1],
        1,
    )
}

/// A fully connected layer, with a bias only when no batch norm follows it.
#[derive(Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Initialised as PyTorch's `nn.Linear`: uniform in ±1/√fan_in for weight and bias.
    pub(crate) fn new(
        path: &nn::Path,
        registry: &mut Registry,
        input: usize,
        output: usize,
        bias: bool,
    ) -> Linear {
        let bound = 1.0 / (input as f64).sqrt();
        let weight =
            Tensor::empty([output as i64, input as i64], registry.float()).uniform_(-bound, bound);
        let weight = registry.parameter(path, "weight", weight);
        let bias = bias.then(|| {
            let value = Tensor::empty([output as i64], registry.float()).uniform_(-bound, bound);
            registry.parameter(path, "bias", value)
        });
        Linear { weight, bias }
    }

    /// # Shapes
    /// `[N, input]` to `[N, output]`.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        xs.linear(&self.weight, self.bias.as_ref())
    }
}

/// One residual block of torchvision's ResNet.
#[derive(Debug)]
struct Residual {
    convs: Vec<(Conv2d, BatchNorm)>,
    downsample: Option<(Conv2d, BatchNorm)>,
}

impl Residual {
    fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut out = xs.shallow_clone();
        let last = self.convs.len() - 1;
        for (index, (conv, norm)) in self.convs.iter().enumerate() {
            out = conv_norm(conv, norm, &out, train);
            if index != last {
                // In place, as torchvision: batch norm's backward needs its input, not its
                // output, and ReLU's backward needs only its result.
                let _ = out.relu_();
            }
        }
        let identity = match &self.downsample {
            Some((conv, norm)) => conv_norm(conv, norm, xs, train),
            None => xs.shallow_clone(),
        };
        // The sum in place too (its backward needs neither operand), then ReLU in place.
        let _ = out.g_add_(&identity);
        let _ = out.relu_();
        out
    }
}

/// torchvision's ResNet without the classifier: `[N, C, H, W]` to `[N, 512 or 2048]`.
#[derive(Debug)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    max_pool: bool,
    blocks: Vec<Residual>,
}

impl ResNet {
    pub(crate) fn new(
        path: &nn::Path,
        registry: &mut Registry,
        depth: u32,
        stem: Stem,
        channels: usize,
    ) -> Result<ResNet, LowerError> {
        let (block, stages) = resnet_layout(depth).ok_or(LowerError::ResNetDepth(depth))?;
        let conv1 = match stem {
            Stem::Imagenet => Conv2d::new(&(path / "conv1"), registry, channels, 64, 7, 2, 3),
            Stem::Cifar => Conv2d::new(&(path / "conv1"), registry, channels, 64, 3, 1, 1),
        };
        let bn1 = BatchNorm::new(&(path / "bn1"), registry, 64);
        let mut blocks = Vec::new();
        let mut inplanes = 64;
        for (stage, &count) in stages.iter().enumerate() {
            let planes = 64 << stage;
            let layer = path / format!("layer{}", stage + 1);
            for index in 0..count {
                let p = &layer / index;
                let stride = if index == 0 && stage > 0 { 2 } else { 1 };
                let outplanes = planes * block.expansion();
                let mut convs = Vec::new();
                match block {
                    ResidualBlock::Basic => {
                        convs.push((
                            Conv2d::new(&(&p / "conv1"), registry, inplanes, planes, 3, stride, 1),
                            BatchNorm::new(&(&p / "bn1"), registry, planes),
                        ));
                        convs.push((
                            Conv2d::new(&(&p / "conv2"), registry, planes, planes, 3, 1, 1),
                            BatchNorm::new(&(&p / "bn2"), registry, planes),
                        ));
                    }
                    ResidualBlock::Bottleneck => {
                        convs.push((
                            Conv2d::new(&(&p / "conv1"), registry, inplanes, planes, 1, 1, 0),
                            BatchNorm::new(&(&p / "bn1"), registry, planes),
                        ));
                        convs.push((
                            Conv2d::new(&(&p / "conv2"), registry, planes, planes, 3, stride, 1),
                            BatchNorm::new(&(&p / "bn2"), registry, planes),
                        ));
                        convs.push((
                            Conv2d::new(&(&p / "conv3"), registry, planes, outplanes, 1, 1, 0),
                            BatchNorm::new(&(&p / "bn3"), registry, outplanes),
                        ));
                    }
                }
                let downsample = (stride != 1 || inplanes != outplanes).then(|| {
                    let d = &p / "downsample";
                    (
                        Conv2d::new(&(&d / 0), registry, inplanes, outplanes, 1, stride, 0),
                        BatchNorm::new(&(&d / 1), registry, outplanes),
                    )
                });
                blocks.push(Residual { convs, downsample });
                inplanes = outplanes;
            }
        }
        Ok(ResNet {
            conv1,
            bn1,
            max_pool: stem == Stem::Imagenet,
            blocks,
        })
    }

    /// # Shapes
    /// `[N, C, H, W]` to `[N, 512]` (ResNet-18/34) or `[N, 2048]` (ResNet-50 and deeper).
    pub fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut out = conv_norm(&self.conv1, &self.bn1, xs, train);
        let _ = out.relu_();
        if self.max_pool {
            out = out.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        for block in &self.blocks {
            out = block.forward(&out, train);
        }
        out.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
}

/// A small convnet: per width a 3×3 convolution, batch norm, ReLU and 2×2 max-pool, then
/// global average pooling.
#[derive(Debug)]
pub struct ConvNet {
    blocks: Vec<(Conv2d, BatchNorm)>,
}

impl ConvNet {
    pub(crate) fn new(
        path: &nn::Path,
        registry: &mut Registry,
        widths: &[usize],
        channels: usize,
    ) -> ConvNet {
        let mut previous = channels;
        let mut blocks = Vec::new();
        for (index, &width) in widths.iter().enumerate() {
            let p = path / "blocks" / index;
            blocks.push((
                Conv2d::new(&(&p / "conv"), registry, previous, width, 3, 1, 1),
                BatchNorm::new(&(&p / "bn"), registry, width),
            ));
            previous = width;
        }
        ConvNet { blocks }
    }

    /// # Shapes
    /// `[N, C, H, W]` to `[N, last width]`.
    pub fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut out = xs.shallow_clone();
        for (conv, norm) in &self.blocks {
            out = conv_norm(conv, norm, &out, train).relu().max_pool2d(
                [2, 2],
                [2, 2],
                [0, 0],
                [1, 1],
                false,
            );
        }
        out.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
}

/// A multilayer perceptron; hidden layers Linear → [BN] → ReLU, the last Linear → [BN].
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<(Linear, Option<BatchNorm>)>,
}

impl Mlp {
    pub(crate) fn new(
        path: &nn::Path,
        registry: &mut Registry,
        widths: &[usize],
        norm: Norm,
        last_norm: bool,
        input: usize,
    ) -> Mlp {
        let mut previous = input;
        let mut layers = Vec::new();
        for (index, &width) in widths.iter().enumerate() {
            let p = path / "layers" / index;
            let normed = mlp_layer_has_norm(index, widths.len(), norm, last_norm);
            let linear = Linear::new(&(&p / "linear"), registry, previous, width, !normed);
            let batch_norm = normed.then(|| BatchNorm::new(&(&p / "bn"), registry, width));
            layers.push((linear, batch_norm));
            previous = width;
        }
        Mlp { layers }
    }

    /// # Shapes
    /// `[N, input]` (or an image batch, flattened) to `[N, last width]`.
    pub fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut out = if xs.dim() > 2 {
            xs.flatten(1, -1)
        } else {
            xs.shallow_clone()
        };
        let last = self.layers.len().saturating_sub(1);
        for (index, (linear, norm)) in self.layers.iter().enumerate() {
            out = linear.forward(&out);
            if let Some(norm) = norm {
                out = norm.forward(&out, train);
            }
            if index != last {
                out = out.relu();
            }
        }
        out
    }
}

/// One instantiated module of any kind.
#[derive(Debug)]
pub enum Layer {
    ResNet(ResNet),
    ConvNet(ConvNet),
    Mlp(Mlp),
}

impl Layer {
    /// Builds the module `kind` under `path` for inputs of shape `input`.
    pub(crate) fn build(
        path: &nn::Path,
        registry: &mut Registry,
        name: &str,
        kind: &ModuleKind,
        input: FeatureShape,
    ) -> Result<Layer, LowerError> {
        let image_channels = || match input {
            FeatureShape::Image { channels, .. } => Ok(channels),
            FeatureShape::Vector { width, .. } => Err(LowerError::ExpectsImages {
                module: name.into(),
                width,
            }),
        };
        match kind {
            ModuleKind::ResNet { depth, stem } => Ok(Layer::ResNet(ResNet::new(
                path,
                registry,
                *depth,
                *stem,
                image_channels()?,
            )?)),
            ModuleKind::ConvNet { widths } => Ok(Layer::ConvNet(ConvNet::new(
                path,
                registry,
                widths,
                image_channels()?,
            ))),
            ModuleKind::Mlp {
                widths,
                norm,
                last_norm,
            } => {
                let input = match input {
                    FeatureShape::Image {
                        channels,
                        height,
                        width,
                    } => channels * height * width,
                    FeatureShape::Vector { width, .. } => width,
                };
                Ok(Layer::Mlp(Mlp::new(
                    path, registry, widths, *norm, *last_norm, input,
                )))
            }
            ModuleKind::Ema { .. } => Err(LowerError::NestedEma {
                member: name.into(),
            }),
        }
    }

    /// Convolutional encoders take their images channels_last (see [`channels_last_input`]).
    ///
    /// # Shapes
    /// See the module kinds: images to `[N, D]`, or `[N, input]` to `[N, D]`.
    pub fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            Layer::ResNet(module) => module.forward(&channels_last_input(xs), train),
            Layer::ConvNet(module) => module.forward(&channels_last_input(xs), train),
            Layer::Mlp(module) => module.forward(xs, train),
        }
    }
}

/// A convolutional encoder's input in the channels_last memory format, unless
/// `FA_CHANNELS_LAST=0` (read once per process) keeps the default layout for a comparison.
///
/// Feeding the first convolution a channels_last batch is enough: libtorch's oneDNN (CPU) and
/// cuDNN (GPU) convolutions then run in that layout and return their outputs in it, batch
/// norm, ReLU, pooling and the residual sums keep it, and the weights stay in their stored
/// layout (the kernels reorder them), so checkpoints, EMA copies and the optimiser state are
/// unchanged. Results differ from the default layout only by rounding (the kernels sum in
/// another order).
pub fn channels_last_input(xs: &Tensor) -> Tensor {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let enabled = *ENABLED.get_or_init(|| {
        std::env::var("FA_CHANNELS_LAST").map_or(true, |value| value.trim() != "0")
    });
    if enabled {
        crate::native::channels_last(xs)
    } else {
        xs.shallow_clone()
    }
}

/// Builds one module on its own under `path` (parity tests and tools); its parameters are
/// trainable and named as in a network.
pub fn build_module(
    path: &nn::Path,
    name: &str,
    kind: &ModuleKind,
    input: FeatureShape,
) -> Result<Layer, LowerError> {
    let mut registry = Registry::new(true, path.device());
    Layer::build(path, &mut registry, name, kind, input)
}
