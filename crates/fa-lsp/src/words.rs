//! The words of the language as the editor shows them: keywords with a line each, and the
//! vocabularies of `fa_lang::resolve::vocabulary` (their docs and parameters), with the
//! defaults the IR's `Default` implementations give.

use fa_lang::ir::{self, DataConfig, KnnConfig, LinearConfig, OptimConfig, TrainConfig};
use fa_lang::resolve::vocabulary::{
    Vocabulary, Word, AUGMENTATIONS, FA_METHODS, LOSSES, MIXUP_NOISES, MODULE_KINDS, OPTIMISERS,
    SECTIONS, SECTION_BLOCKS,
};

/// The statement keywords and chain words, each with what it does.
pub const KEYWORDS: &[(&str, &str)] = &[
    (
        "model",
        "`model NAME`: names the model (run folders, tables)",
    ),
    (
        "use",
        "`use \"path.fa\"`: the definitions of another file, relative to this one",
    ),
    (
        "pipeline",
        "`pipeline NAME = [ ... ]`: a data-augmentation pipeline",
    ),
    (
        "encoder",
        "`encoder NAME = ...`: the backbone the evaluations read",
    ),
    ("projector", "`projector NAME = ...`: a projection head"),
    ("predictor", "`predictor NAME = ...`: a prediction head"),
    (
        "target",
        "`target NAME = ema(...)`: a momentum copy of a chain of modules",
    ),
    (
        "sweep",
        "`sweep NAME = { label: value, ... }`: one cell per value, `$NAME` in the file",
    ),
    (
        "recipe",
        "`recipe NAME { ... }` defines settings; `recipe NAME` applies them",
    ),
    (
        "loss",
        "`loss KIND { a ~ b ... } combine mean|sum`: the loss terms",
    ),
    ("combine", "how the loss terms add up: `mean` or `sum`"),
    (
        "symmetric",
        "`symmetric a ~ b`: the term and its mirror `b ~ a`",
    ),
    ("view", "`view(PIPELINE)`: one augmented view of the batch"),
    ("stopgrad", "stops the gradient of the value before it"),
    (
        "fa",
        "`fa METHOD(...)`: feature augmentation of the value before it",
    ),
    (
        "per",
        "`0.3 per 256`: a learning rate for each 256 images of the batch",
    ),
];

/// Every vocabulary with the name of what its words are.
pub const VOCABULARIES: &[(&str, Vocabulary)] = &[
    ("module kind", MODULE_KINDS),
    ("augmentation", AUGMENTATIONS),
    ("feature augmentation", FA_METHODS),
    ("mixup noise", MIXUP_NOISES),
    ("loss", LOSSES),
    ("optimiser", OPTIMISERS),
    ("section", SECTIONS),
    ("block", SECTION_BLOCKS),
];

/// The first vocabulary word spelled `name`, with what it is.
pub fn word(name: &str) -> Option<(&'static str, &'static Word)> {
    VOCABULARIES
        .iter()
        .find_map(|(what, vocabulary)| vocabulary.get(name).map(|word| (*what, word)))
}

/// The default of parameter `param` of word `owner`, where the IR has one.
pub fn default_of(owner: &str, param: &str) -> Option<String> {
    let data = DataConfig::default();
    let optim = OptimConfig::default();
    let train = TrainConfig::default();
    let knn = KnnConfig::default();
    let linear = LinearConfig::default();
    let bank = ir::BankConfig::default();
    Some(match (owner, param) {
        ("data", "batch") => data.batch_size.to_string(),
        ("data", "train_split") => data.train_split,
        ("data", "limit") => "none (every image)".into(),
        ("optim", "lr") => format!("{} per 256", optim.lr.value),
        ("optim", "momentum") => optim.momentum.to_string(),
        ("optim", "weight_decay") => optim.weight_decay.to_string(),
        ("optim", "warmup") => optim.warmup_epochs.to_string(),
        ("optim", "accumulate") => optim.accumulate.to_string(),
        ("optim", "method") => format!("{:?}", optim.kind).to_lowercase(),
        ("optim", "schedule") => format!("{:?}", optim.schedule).to_lowercase(),
        ("train", "epochs") => train.epochs.to_string(),
        ("train", "seed") => train.seed.to_string(),
        ("train", "precision") => format!("{:?}", train.precision).to_lowercase(),
        ("train", "checkpoint_every") => train.checkpoint_every.to_string(),
        ("train", "knn_every") => train.knn_every.to_string(),
        ("train", "keep_checkpoints") => train.keep_checkpoints.to_string(),
        ("knn", "k") => knn.k.to_string(),
        ("knn", "tau") => knn.temperature.to_string(),
        ("linear", "epochs") => linear.epochs.to_string(),
        ("linear", "lr") => linear.lr.to_string(),
        ("linear", "batch") => linear.batch_size.to_string(),
        ("linear", "momentum") => linear.momentum.to_string(),
        ("linear", "weight_decay") => linear.weight_decay.to_string(),
        ("linear", "milestones") => format!("{:?}", linear.milestones),
        ("infonce", "tau") => ir::INFONCE_TAU.to_string(),
        ("nn", "bank") => bank.size.to_string(),
        ("nn", "exclude_self") => bank.exclude_self.to_string(),
        ("mask", "rate") => ir::MASK_RATE.to_string(),
        ("mixup", "alpha") => ir::MIXUP_ALPHA.to_string(),
        ("gaussian", "sigma") => ir::GAUSSIAN_SIGMA.to_string(),
        ("ema", "momentum") => ir::EMA_MOMENTUM.0.to_string(),
        ("ema", "final") => ir::EMA_MOMENTUM.1.to_string(),
        ("lars", "trust") => ir::LARS_TRUST.to_string(),
        _ => return None,
    })
}
