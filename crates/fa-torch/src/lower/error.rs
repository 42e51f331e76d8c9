//! Why a validated model could not be lowered, or a device not used.

#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    #[error("module `{0}` is not defined")]
    UnknownModule(String),
    #[error("resnet depth {0} is not one of 18, 34, 50, 101, 152")]
    ResNetDepth(u32),
    #[error("module `{module}` needs images but receives vectors of width {width}")]
    ExpectsImages { module: String, width: usize },
    #[error("ema target chain member `{member}` is itself an ema target")]
    NestedEma { member: String },
    #[error("ema target `{0}` has an empty chain")]
    EmptyEma(String),
    #[error("feature augmentation `{0}` is applied to images, not feature vectors")]
    AugmentsImages(String),
    #[error(
        "feature augmentation `{node}` takes {k} neighbours from a bank of only {size} entries"
    )]
    BankTooSmall { node: String, k: usize, size: usize },
    #[error("symmetric loss term `{term}` needs exactly 2 views, the model has {views}")]
    SymmetricViews { term: String, views: usize },
    #[error("the model applies no encoder to its first view")]
    NoEncoder,
    #[error("unknown device `{0}`: expected auto, cpu, cuda or cuda:N")]
    Device(String),
    #[error("device cuda:{index} requested but {count} cuda devices are available")]
    CudaUnavailable { index: usize, count: usize },
}
