//! The language's vocabularies, one table each: every word with the parameters it takes and
//! a line of documentation; parameter checks, did-you-mean suggestions and help all read them.

/// One word of a vocabulary: a constructor, method or section the language knows.
#[derive(Clone, Copy, Debug)]
pub struct Word {
    pub name: &'static str,
    /// Other spellings of the same word.
    pub aliases: &'static [&'static str],
    /// The named parameters it accepts, in the order suggestions list them.
    pub params: &'static [&'static str],
    /// Parameters that give the structure rather than a setting (the modules an EMA copies),
    /// which `--set` suggestions leave out.
    pub structural: &'static [&'static str],
    pub doc: &'static str,
}

impl Word {
    const fn new(name: &'static str, params: &'static [&'static str], doc: &'static str) -> Word {
        Word {
            name,
            aliases: &[],
            params,
            structural: &[],
            doc,
        }
    }

    /// The parameters `--set word_name.param` may change.
    pub fn settings(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.params
            .iter()
            .copied()
            .filter(|param| !self.structural.contains(param))
    }
}

/// A table of words.
#[derive(Clone, Copy, Debug)]
pub struct Vocabulary(pub &'static [Word]);

impl Vocabulary {
    /// The word spelled `name` (or one of its aliases).
    pub fn get(&self, name: &str) -> Option<&'static Word> {
        self.0
            .iter()
            .find(|word| word.name == name || word.aliases.contains(&name))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The main spelling of every word, in table order (did-you-mean candidates, help).
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|word| word.name).collect()
    }

    /// The parameters of the word spelled `name`; none for an unknown word.
    pub fn params(&self, name: &str) -> &'static [&'static str] {
        self.get(name).map(|word| word.params).unwrap_or(&[])
    }

    pub fn words(&self) -> &'static [Word] {
        self.0
    }
}

/// Names with a meaning in chains, which definitions cannot take.
pub const RESERVED: &[&str] = &["stopgrad", "view", "none"];

/// Data augmentations, the items of a `pipeline`.
pub const AUGMENTATIONS: Vocabulary = Vocabulary(&[
    Word::new(
        "crop",
        &["size", "scale", "ratio", "interpolation"],
        "random resized crop to `size`",
    ),
    Word::new("flip", &["p"], "horizontal flip with probability `p`"),
    Word::new(
        "jitter",
        &["brightness", "contrast", "saturation", "hue", "p"],
        "colour jitter in random order",
    ),
    Word {
        aliases: &["greyscale"],
        ..Word::new("grayscale", &["p"], "greyscale with probability `p`")
    },
    Word::new(
        "blur",
        &["p", "sigma"],
        "Gaussian blur, sigma drawn per image",
    ),
    Word::new(
        "solarize",
        &["p", "threshold"],
        "inverts the pixels above `threshold`",
    ),
    Word::new("normalize", &["mean", "std"], "per-channel normalisation"),
]);

/// Feature-augmentation methods, written after `fa` in a chain.
pub const FA_METHODS: Vocabulary = Vocabulary(&[
    Word::new("none", &[], "the identity (the tables' \"No FA\" column)"),
    Word::new(
        "nn",
        &["bank", "k", "grad", "exclude_self"],
        "nearest neighbour from a feature bank (NNCLR)",
    ),
    Word::new(
        "mask",
        &["rate", "k"],
        "zeroes a fraction `rate` of the components",
    ),
    Word::new(
        "mixup",
        &["alpha", "noise", "k"],
        "mixes the feature with a noise, weight drawn from U(alpha, 1)",
    ),
]);

/// The noises `mixup` mixes in.
pub const MIXUP_NOISES: Vocabulary = Vocabulary(&[
    Word::new(
        "nn",
        &["bank", "grad", "exclude_self"],
        "the j-th nearest bank entry",
    ),
    Word::new("batch", &[], "another sample of the batch"),
    Word::new(
        "gaussian",
        &["sigma", "variance", "space"],
        "Gaussian noise N(0, sigma²) (or `variance`), mixed with the unit (or `space: raw`) feature",
    ),
]);

/// Module constructors, the right-hand side of `encoder NAME = ...` and the other roles.
pub const MODULE_KINDS: Vocabulary = Vocabulary(&[
    Word::new("resnet18", &["stem"], "torchvision's ResNet-18, 512 wide"),
    Word::new("resnet34", &["stem"], "torchvision's ResNet-34, 512 wide"),
    Word::new("resnet50", &["stem"], "torchvision's ResNet-50, 2048 wide"),
    Word::new("convnet", &[], "a small convnet, one block per width"),
    Word::new(
        "mlp",
        &["norm", "last_norm"],
        "a multilayer perceptron, one layer per width",
    ),
    Word {
        structural: &["chain"],
        ..Word::new(
            "ema",
            &["chain", "momentum", "final"],
            "an exponential-moving-average copy of a chain of modules",
        )
    },
]);

/// Losses, after `loss`.
pub const LOSSES: Vocabulary = Vocabulary(&[
    Word::new(
        "infonce",
        &["tau", "negatives"],
        "InfoNCE with temperature `tau`; `negatives: anchors` takes the softmax over the left side",
    ),
    Word::new("byol", &[], "BYOL's regression loss 2 − 2 cos"),
]);

/// Optimisers, `optim.method`.
pub const OPTIMISERS: Vocabulary = Vocabulary(&[
    Word::new("sgd", &[], "SGD with momentum"),
    Word::new(
        "lars",
        &["trust", "clip"],
        "LARS with trust coefficient `trust`",
    ),
]);

/// Configuration sections and their keys.
pub const SECTIONS: Vocabulary = Vocabulary(&[
    Word::new(
        "data",
        &[
            "format",
            "path",
            "train_split",
            "test_split",
            "image_size",
            "channels",
            "batch",
            "limit",
        ],
        "the dataset and the batch",
    ),
    Word::new(
        "optim",
        &[
            "method",
            "lr",
            "lr_basis",
            "momentum",
            "weight_decay",
            "warmup",
            "schedule",
            "accumulate",
            "clip",
        ],
        "the optimiser and its schedule",
    ),
    Word::new(
        "train",
        &[
            "epochs",
            "seed",
            "precision",
            "checkpoint_every",
            "knn_every",
            "keep_checkpoints",
            "sync_batch_norm",
        ],
        "the training run",
    ),
    Word::new("eval", &["knn", "linear"], "the evaluations after training"),
]);

/// Blocks nested in a section (`eval { knn { ... } }`) and their keys.
pub const SECTION_BLOCKS: Vocabulary = Vocabulary(&[
    Word::new(
        "knn",
        &["k", "tau"],
        "weighted kNN on the backbone's features",
    ),
    Word::new(
        "linear",
        &[
            "epochs",
            "lr",
            "batch",
            "momentum",
            "weight_decay",
            "milestones",
            "mode",
        ],
        "a linear probe on the backbone's features",
    ),
]);

/// Every dotted key `--set` accepts for the configuration sections, in table order.
pub fn known_keys() -> Vec<String> {
    let mut keys = Vec::new();
    for section in SECTIONS.words() {
        for key in section.params {
            keys.push(format!("{}.{key}", section.name));
            for inner in SECTION_BLOCKS.params(key) {
                keys.push(format!("{}.{key}.{inner}", section.name));
            }
        }
    }
    keys
}
