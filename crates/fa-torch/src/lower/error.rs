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
    #[error("the model applies no encoder to its first view")]
    NoEncoder,
    #[error("unknown device `{0}`: expected auto, cpu, cuda or cuda:N")]
    Device(String),
    #[error("device cuda:{index} requested but {count} cuda devices are available")]
    CudaUnavailable { index: usize, count: usize },
}
