//! The intermediate representation: a model as plain configuration plus a petgraph dataflow graph.
//!
//! The IR knows nothing of the parser. Every node and definition carries a plain byte-range
//! [`Span`] into the file it came from, so validation can point at the source, but no pest
//! type or lifetime appears here. Everything is `serde`-serialisable so a resolved model can
//! be stored beside a checkpoint and printed as JSON.

mod defaults;

use std::collections::BTreeMap;

pub use defaults::*;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use serde::{Deserialize, Serialize};

pub use fa_base::source::{FileId, Span};

/// A whole model: configuration blocks, named pipelines and modules, and the dataflow graph.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Model {
    /// The model's name (`model NAME`); a sweep cell's name has the cell's labels appended.
    pub name: String,
    pub span: Span,
    pub data: DataConfig,
    /// Data-augmentation pipelines by name.
    pub pipelines: BTreeMap<String, Pipeline>,
    /// Named modules by name. Applying the same name twice shares its weights.
    pub modules: BTreeMap<String, ModuleDef>,
    pub graph: Graph,
    /// How the loss terms are combined into the total.
    pub combine: Combine,
    pub optim: OptimConfig,
    pub train: TrainConfig,
    pub eval: EvalConfig,
}

/// The dataflow graph. Edges point from producer to consumer.
pub type Graph = StableDiGraph<Node, Edge>;
pub type NodeId = NodeIndex;

/// One node of the dataflow graph.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Node {
    /// The name the source gives the value this node produces (`anchor`, `positive`), or a
    /// generated name `anchor.2` for the intermediate steps of a chain. Unique in a model;
    /// snapshots key nodes by it.
    pub name: String,
    pub kind: NodeKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum NodeKind {
    /// One augmented view of the input batch, drawn with the named pipeline. Each view node
    /// is an independent draw. No inputs.
    View { pipeline: String },
    /// An application of a named module to its one input. Two nodes applying the same module
    /// share weights but are separate calls (batch-norm statistics per call).
    Apply { module: String },
    /// Stop-gradient (`detach`) of its one input.
    StopGrad,
    /// Feature augmentation of its one input, producing `k` samples.
    FeatureAug(FeatureAug),
    /// A loss term between its two inputs (edge roles `Left` and `Right`). Produces no feature.
    Loss(LossTerm),
}

/// The role of an edge at its consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EdgeRole {
    /// The single input of a view-less node.
    Input,
    /// The first (anchor / online) side of a loss term.
    Left,
    /// The second (positive / target) side of a loss term.
    Right,
}

/// A dataflow edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub role: EdgeRole,
    /// The feature flowing along the edge; filled in by validation (`None` before).
    pub shape: Option<FeatureShape>,
}

/// What flows along an edge: an image batch or a batch of feature vectors, each with a
/// number of FA samples (1 when no FA node lies upstream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeatureShape {
    /// `[N, channels, height, width]`.
    Image {
        channels: usize,
        height: usize,
        width: usize,
    },
    /// `[N, width]`, `samples` times (k FA samples are k tensors of this shape).
    Vector { width: usize, samples: usize },
}

// ---------------------------------------------------------------------------------------
// Feature augmentation
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureAug {
    pub method: FaMethod,
    /// Number of independent FA samples (the paper's "augment k samples").
    pub k: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FaMethod {
    /// The identity (the "No FA" column of the tables). Terms that become duplicates of an
    /// existing term are removed by validation.
    None,
    /// Nearest neighbour from a FIFO feature bank (NNCLR).
    Nn(BankConfig),
    /// Zero exactly `round(rate * d)` random components; the others keep their value.
    Mask { rate: f64 },
    /// `λ f + (1 − λ) noise` with `λ ~ U(alpha, 1)` per sample.
    Mixup { alpha: f64, noise: MixupNoise },
}

/// A FIFO bank of L2-normalised features with their dataset indices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BankConfig {
    pub size: usize,
    pub grad: NnGrad,
    /// Skip entries holding the sample's own dataset index.
    pub exclude_self: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NnGrad {
    /// The neighbour is a constant (NNCLR).
    None,
    /// `f + sg(nn − f)`: the forward value is the neighbour, the gradient flows to `f`.
    StraightThrough,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MixupNoise {
    /// The j-th nearest bank entry for FA sample j.
    Nn(BankConfig),
    /// A random other sample's feature from the same batch.
    Batch,
    /// Gaussian N(0, sigma²) per component.
    Gaussian {
        /// The standard deviation of each component of the noise.
        sigma: f64,
        /// Whether the noise is mixed with the unit feature or with the raw one.
        space: NoiseSpace,
    },
}

/// What Gaussian mixup noise is mixed with: the L2-normalised feature (every other FA method
/// works on unit vectors; `docs/feature-augmentation.md` says why this is the default) or the
/// raw feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoiseSpace {
    Unit,
    Raw,
}

// ---------------------------------------------------------------------------------------
// Losses
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossTerm {
    pub kind: LossKind,
    /// Also evaluate the term with the two views exchanged and average both directions; still
    /// one term when combining.
    pub symmetric: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum LossKind {
    /// InfoNCE on L2-normalised features with temperature `tau`.
    InfoNce {
        tau: f64,
        /// Which side's other rows are the negatives (the softmax runs over that side).
        negatives: Negatives,
    },
    /// BYOL's regression loss `2 − 2 cos(p, z)`.
    Byol,
}

/// Where an InfoNCE term draws its negatives from. For `a ~ b` with the default `positives`,
/// row i of `a` is scored against every row of `b` (softmax over `b`); with `anchors`, row i
/// of `b` is scored against every row of `a` (softmax over `a`), which is solo-learn's
/// `nnclr_loss_func(nn, p)` when `a` is the prediction and `b` its nearest neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Negatives {
    Positives,
    Anchors,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Combine {
    /// Total = sum of terms / number of terms (a term with k FA samples counts k times).
    #[default]
    Mean,
    /// Total = sum of terms.
    Free,
}

// ---------------------------------------------------------------------------------------
// Modules
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModuleDef {
    pub name: String,
    pub role: ModuleRole,
    pub kind: ModuleKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModuleRole {
    Encoder,
    Projector,
    Predictor,
    /// A momentum (EMA) copy of a chain of modules.
    Target,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ModuleKind {
    /// torchvision's ResNet topology without the classifier; output width 512 (18, 34) or
    /// 2048 (50).
    ResNet { depth: u32, stem: Stem },
    /// A small convnet for small images: `widths.len()` blocks of 3×3 conv, BN, ReLU,
    /// 2×2 max-pool, then global average pooling; output width = last width.
    ConvNet { widths: Vec<usize> },
    /// A multilayer perceptron: one linear layer per width (the input width comes from the
    /// incoming edge). Hidden layers get batch norm (when `norm` is `Batch`) and ReLU; the
    /// last layer gets batch norm only when `last_norm`, and never a ReLU.
    Mlp {
        widths: Vec<usize>,
        norm: Norm,
        last_norm: bool,
    },
    /// An exponential-moving-average copy of the chain of named modules, applied in order.
    Ema {
        chain: Vec<String>,
        base_momentum: f64,
        final_momentum: f64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stem {
    /// 7×7 stride-2 convolution and 3×3 max-pool.
    Imagenet,
    /// 3×3 stride-1 convolution, no max-pool.
    Cifar,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Norm {
    None,
    Batch,
}

// ---------------------------------------------------------------------------------------
// Data and augmentation pipelines
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    pub format: DatasetFormat,
    /// Location relative to the data root (`--data-root` or `FA_DATA_ROOT`).
    pub path: String,
    /// Split used for pre-training (and as the kNN bank / linear-probe training set).
    pub train_split: String,
    /// Split used for evaluation queries.
    pub test_split: String,
    /// Side of the square images the model sees (storage resolution for image folders).
    pub image_size: usize,
    /// Channels the model sees (1 or 3). Greyscale data fed to a 3-channel model is
    /// replicated; colour data fed to a 1-channel model is an error.
    pub channels: usize,
    /// Images per optimiser micro-batch.
    pub batch_size: usize,
    /// Use only the first `limit` training images (quick experiments and tests).
    pub limit: Option<usize>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DatasetFormat {
    /// IDX files (MNIST, Fashion-MNIST), gzipped or not: `{split}-images-idx3-ubyte[.gz]`
    /// with `train` and `t10k` as split names.
    Idx,
    /// CIFAR-10/100 binary release (`data_batch_*.bin`, `test_batch.bin`).
    CifarBinary,
    /// `<split>/<class>/<image>` folders, or `<split>.tar[.gz]` archives of that layout.
    ImageFolder,
}

/// A data-augmentation pipeline: ops applied in order, each sample drawing its own parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    pub name: String,
    pub ops: Vec<AugOp>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Interpolation {
    Bilinear,
    Bicubic,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AugOp {
    RandomResizedCrop {
        size: usize,
        scale: (f64, f64),
        ratio: (f64, f64),
        interpolation: Interpolation,
    },
    HorizontalFlip {
        p: f64,
    },
    ColorJitter {
        brightness: f64,
        contrast: f64,
        saturation: f64,
        hue: f64,
        p: f64,
    },
    Grayscale {
        p: f64,
    },
    GaussianBlur {
        p: f64,
        sigma: (f64, f64),
    },
    Solarize {
        p: f64,
        threshold: f64,
    },
    /// Per-channel mean and std (one value each for greyscale).
    Normalize {
        mean: Vec<f64>,
        std: Vec<f64>,
    },
}

// ---------------------------------------------------------------------------------------
// Optimisation, training, evaluation
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    pub kind: OptimKind,
    /// Peak learning rate, after the scaling rule.
    pub lr: LearningRate,
    pub momentum: f64,
    pub weight_decay: f64,
    pub warmup_epochs: f64,
    pub schedule: Schedule,
    /// Micro-batches per optimiser step (effective batch = batch_size × accumulate).
    pub accumulate: usize,
    /// Clip the global gradient norm to this value.
    pub clip_grad_norm: Option<f64>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum OptimKind {
    Sgd,
    /// LARS; biases and batch-norm parameters are excluded from adaptation and weight decay.
    Lars {
        trust: f64,
        clip: bool,
    },
}

/// A learning rate with its explicit scaling rule.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearningRate {
    pub value: f64,
    pub scaling: LrScaling,
    /// The batch `per 256` counts (`optim { lr_basis: … }`).
    pub basis: LrBasis,
}

/// Which batch a `per 256` learning rate is per 256 images of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LrBasis {
    /// `data.batch × optim.accumulate`: solo-learn's rule, which scales by the batch of all
    /// devices and then by `accumulate_grad_batches` (`solo/args/pretrain.py`,
    /// `solo/methods/base.py`).
    Effective,
    /// `data.batch` alone (the batch of one forward pass over all devices), without the
    /// accumulation.
    Batch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LrScaling {
    /// The value is the learning rate.
    Absolute,
    /// The value is per 256 images of the effective batch: lr = value × effective / 256.
    Per256,
}

impl LearningRate {
    /// The images `per 256` counts for a batch of `batch` accumulated `accumulate` times.
    pub fn basis_images(&self, batch: usize, accumulate: usize) -> usize {
        match self.basis {
            LrBasis::Effective => batch * accumulate,
            LrBasis::Batch => batch,
        }
    }

    /// The peak learning rate for a batch of `batch` images accumulated `accumulate` times.
    pub fn resolve(&self, batch: usize, accumulate: usize) -> f64 {
        match self.scaling {
            LrScaling::Absolute => self.value,
            LrScaling::Per256 => self.value * self.basis_images(batch, accumulate) as f64 / 256.0,
        }
    }

    /// How [`LearningRate::resolve`] arrives at its value, for `fa train` to print:
    /// `6.4 = 0.4 × 4096 / 256 (per 256 of the effective batch: 512 × 8 accumulated)`.
    pub fn derivation(&self, batch: usize, accumulate: usize) -> String {
        let peak = self.resolve(batch, accumulate);
        match self.scaling {
            LrScaling::Absolute => format!("{peak} (absolute)"),
            LrScaling::Per256 => {
                let images = self.basis_images(batch, accumulate);
                let basis = match self.basis {
                    LrBasis::Effective => format!(
                        "per 256 of the effective batch: {batch} × {accumulate} accumulated"
                    ),
                    LrBasis::Batch => format!(
                        "per 256 of the batch {batch}, not counting {accumulate}× accumulation"
                    ),
                };
                format!("{peak} = {} × {images} / 256 ({basis})", self.value)
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Schedule {
    /// Linear warm-up then cosine decay to zero, per iteration.
    Cosine,
    /// Linear warm-up then constant.
    Constant,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub seed: u64,
    pub precision: Precision,
    /// Save a checkpoint every this many epochs (and always at the end).
    pub checkpoint_every: usize,
    /// Run kNN evaluation every this many epochs (0: only at the end).
    pub knn_every: usize,
    /// How many of the latest checkpoints a run keeps (at least 1); older ones are removed.
    #[serde(default = "defaults::keep_checkpoints")]
    pub keep_checkpoints: usize,
    /// In a data-parallel job, batch norm normalises with the global batch's statistics
    /// (`fa train --sync-batch-norm` turns it on as well).
    #[serde(default)]
    pub sync_batch_norm: bool,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precision {
    F32,
    Bf16,
    F16,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    pub knn: Option<KnnConfig>,
    pub linear: Option<LinearConfig>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnnConfig {
    pub k: usize,
    pub temperature: f64,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearConfig {
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Epochs at which the learning rate is multiplied by 0.1.
    pub milestones: Vec<usize>,
    pub mode: LinearMode,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinearMode {
    /// The standard protocol: random resized crop and flip on the training images each epoch.
    Augmented,
    /// Fast: features of the un-augmented training images computed once.
    Features,
}

impl Model {
    /// Output width of a named module given its input width, or `None` when the module is
    /// unknown or (for an EMA target) one of its chain is.
    pub fn module_output_width(&self, name: &str, input: FeatureShape) -> Option<usize> {
        let def = self.modules.get(name)?;
        match &def.kind {
            ModuleKind::ResNet { depth, .. } => Some(if *depth >= 50 { 2048 } else { 512 }),
            ModuleKind::ConvNet { widths } => widths.last().copied(),
            ModuleKind::Mlp { widths, .. } => widths.last().copied(),
            ModuleKind::Ema { chain, .. } => {
                let mut shape = input;
                for member in chain {
                    let width = self.module_output_width(member, shape)?;
                    shape = FeatureShape::Vector { width, samples: 1 };
                }
                match shape {
                    FeatureShape::Vector { width, .. } => Some(width),
                    FeatureShape::Image { .. } => None,
                }
            }
        }
    }
}
