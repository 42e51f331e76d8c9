//! Builds small models in code for tests, examples and benchmarks, without the parser.
//!
//! The builder fills every configuration block with plain defaults so that a test names only
//! what it is about: modules, nodes and loss terms. It is public (not `cfg(test)`) because
//! integration tests, `examples/step.rs` and `benches/step.rs` use it too.

use std::collections::{BTreeMap, HashMap};

use crate::ir::{
    BankConfig, Combine, DataConfig, Edge, EdgeRole, EvalConfig, FaMethod, FeatureAug,
    LearningRate, LossKind, LossTerm, LrScaling, MixupNoise, Model, ModuleDef, ModuleKind,
    ModuleRole, Negatives, Node, NodeId, NodeKind, NoiseSpace, Norm, OptimConfig, Span, Stem,
    TrainConfig, EMA_MOMENTUM, GAUSSIAN_SIGMA, INFONCE_TAU, MASK_RATE, MIXUP_ALPHA,
};
use crate::valid::{validate, ValidModel};

/// Assembles a [`Model`] node by node; nodes are referred to by name.
pub struct ModelBuilder {
    model: Model,
    nodes: HashMap<String, NodeId>,
    next_span: usize,
}

impl ModelBuilder {
    /// An empty model seeing `channels`×`size`×`size` images in batches of 8.
    pub fn new(name: &str, channels: usize, size: usize) -> ModelBuilder {
        let model = Model {
            name: name.into(),
            span: Span::default(),
            data: DataConfig {
                path: "cifar10".into(),
                image_size: size,
                channels,
                batch_size: 8,
                ..DataConfig::default()
            },
            pipelines: BTreeMap::new(),
            modules: BTreeMap::new(),
            graph: Default::default(),
            combine: Combine::Mean,
            optim: OptimConfig {
                lr: LearningRate {
                    value: 0.05,
                    scaling: LrScaling::Absolute,
                    ..LearningRate::default()
                },
                weight_decay: 0.0,
                ..OptimConfig::default()
            },
            train: TrainConfig {
                epochs: 1,
                checkpoint_every: 1,
                ..TrainConfig::default()
            },
            // Test models train without evaluating.
            eval: EvalConfig {
                knn: None,
                linear: None,
            },
        };
        ModelBuilder {
            model,
            nodes: HashMap::new(),
            next_span: 1,
        }
    }

    pub fn combine(mut self, combine: Combine) -> ModelBuilder {
        self.model.combine = combine;
        self
    }

    pub fn module(mut self, name: &str, role: ModuleRole, kind: ModuleKind) -> ModelBuilder {
        let span = self.span();
        self.model.modules.insert(
            name.into(),
            ModuleDef {
                name: name.into(),
                role,
                kind,
                span,
            },
        );
        self
    }

    /// A view drawn with `pipeline`; a pipeline not defined yet is added as a plain
    /// normalisation, so tests about the graph need not spell one out.
    pub fn view(mut self, name: &str, pipeline: &str) -> ModelBuilder {
        let channels = self.model.data.channels;
        self.model
            .pipelines
            .entry(pipeline.into())
            .or_insert_with(|| crate::ir::Pipeline {
                name: pipeline.into(),
                ops: vec![crate::ir::AugOp::Normalize {
                    mean: vec![0.5; channels],
                    std: vec![0.5; channels],
                }],
                span: Span::default(),
            });
        self.add(
            name,
            NodeKind::View {
                pipeline: pipeline.into(),
            },
            &[],
        );
        self
    }

    pub fn apply(mut self, name: &str, module: &str, input: &str) -> ModelBuilder {
        self.add(
            name,
            NodeKind::Apply {
                module: module.into(),
            },
            &[(EdgeRole::Input, input)],
        );
        self
    }

    pub fn stopgrad(mut self, name: &str, input: &str) -> ModelBuilder {
        self.add(name, NodeKind::StopGrad, &[(EdgeRole::Input, input)]);
        self
    }

    pub fn fa(mut self, name: &str, method: FaMethod, k: usize, input: &str) -> ModelBuilder {
        self.add(
            name,
            NodeKind::FeatureAug(FeatureAug { method, k }),
            &[(EdgeRole::Input, input)],
        );
        self
    }

    pub fn loss(
        mut self,
        name: &str,
        kind: LossKind,
        symmetric: bool,
        left: &str,
        right: &str,
    ) -> ModelBuilder {
        self.add(
            name,
            NodeKind::Loss(LossTerm { kind, symmetric }),
            &[(EdgeRole::Left, left), (EdgeRole::Right, right)],
        );
        self
    }

    pub fn build(self) -> Model {
        self.model
    }

    /// Validates the model, panicking with the problems when it is invalid (test support).
    pub fn validate(self) -> ValidModel {
        match validate(self.model) {
            Ok(valid) => valid,
            Err(problems) => panic!("test model is invalid: {problems:?}"),
        }
    }

    fn span(&mut self) -> Span {
        self.next_span += 1;
        Span::new(0, self.next_span, self.next_span + 1)
    }

    fn add(&mut self, name: &str, kind: NodeKind, inputs: &[(EdgeRole, &str)]) {
        let span = self.span();
        let node = self.model.graph.add_node(Node {
            name: name.into(),
            kind,
            span,
        });
        for (role, input) in inputs {
            let Some(&source) = self.nodes.get(*input) else {
                panic!("test model uses `{input}` before defining it");
            };
            self.model.graph.add_edge(
                source,
                node,
                Edge {
                    role: *role,
                    shape: None,
                },
            );
        }
        self.nodes.insert(name.into(), node);
    }
}

/// The paper's architectures (Fig. 2) plus BYOL, for building test models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    Basic,
    ParallelPredictor,
    PostPredictor,
    PrePredictor,
    /// BYOL with an EMA target of encoder and projector, symmetric terms, free loss.
    Byol,
}

/// Widths of a test model's modules.
#[derive(Clone, Debug)]
pub struct Widths {
    pub channels: usize,
    pub image_size: usize,
    pub encoder: ModuleKind,
    pub projector: Vec<usize>,
    pub predictor: Vec<usize>,
}

impl Widths {
    /// A tiny convnet on 3×16×16 images with 16-wide heads: fast on a CPU.
    pub fn tiny() -> Widths {
        Widths {
            channels: 3,
            image_size: 16,
            encoder: ModuleKind::ConvNet {
                widths: vec![8, 16],
            },
            projector: vec![32, 16],
            predictor: vec![32, 16],
        }
    }

    /// The CIFAR ResNet-18 with the paper's head shapes scaled to CIFAR (2048-wide hidden
    /// projector layers, 256-wide output, 4096-wide predictor hidden layer).
    pub fn resnet18_cifar() -> Widths {
        Widths {
            channels: 3,
            image_size: 32,
            encoder: ModuleKind::ResNet {
                depth: 18,
                stem: Stem::Cifar,
            },
            projector: vec![2048, 2048, 256],
            predictor: vec![4096, 256],
        }
    }
}

/// An NN method with a bank of `size` entries.
pub fn nn(size: usize) -> FaMethod {
    FaMethod::Nn(BankConfig {
        size,
        exclude_self: true,
        ..BankConfig::default()
    })
}

/// One of each FA method of Table I, with the paper's settings (the language's defaults) and a bank of `bank` entries.
pub fn every_fa_method(bank: usize) -> Vec<(&'static str, FaMethod)> {
    let bank_config = BankConfig {
        size: bank,
        exclude_self: true,
        ..BankConfig::default()
    };
    vec![
        ("mask", FaMethod::Mask { rate: MASK_RATE }),
        ("nn", FaMethod::Nn(bank_config.clone())),
        (
            "nn-noise",
            FaMethod::Mixup {
                alpha: MIXUP_ALPHA,
                noise: MixupNoise::Nn(bank_config),
            },
        ),
        (
            "batch-noise",
            FaMethod::Mixup {
                alpha: MIXUP_ALPHA,
                noise: MixupNoise::Batch,
            },
        ),
        (
            "gaussian-noise",
            FaMethod::Mixup {
                alpha: MIXUP_ALPHA,
                noise: MixupNoise::Gaussian {
                    sigma: GAUSSIAN_SIGMA,
                    space: NoiseSpace::Unit,
                },
            },
        ),
    ]
}

/// Builds one of the paper's architectures with FA method `fa` drawing `k` samples
/// (`None`: no FA term), InfoNCE with τ = 0.2 (BYOL loss for [`Architecture::Byol`]).
pub fn architecture(
    arch: Architecture,
    widths: &Widths,
    fa: Option<(FaMethod, usize)>,
) -> ValidModel {
    let mlp = |widths: &[usize], last_norm: bool| ModuleKind::Mlp {
        widths: widths.to_vec(),
        norm: Norm::Batch,
        last_norm,
    };
    let mut builder = ModelBuilder::new(&format!("{arch:?}"), widths.channels, widths.image_size)
        .module("f", ModuleRole::Encoder, widths.encoder.clone())
        .module("g", ModuleRole::Projector, mlp(&widths.projector, true))
        .view("anchor_view", "strong")
        .view("positive_view", "weak")
        .apply("h", "f", "anchor_view")
        .apply("anchor", "g", "h");
    if arch != Architecture::Byol {
        builder = builder.apply("h_plus", "f", "positive_view");
    }
    let infonce = LossKind::InfoNce {
        tau: INFONCE_TAU,
        negatives: Negatives::Positives,
    };
    if arch != Architecture::Basic {
        builder = builder.module("q", ModuleRole::Predictor, mlp(&widths.predictor, false));
    }
    builder = match arch {
        Architecture::Byol => byol_branches(builder, fa),
        _ => {
            // The InfoNCE architectures share the positive branch under stop-gradient and
            // differ in where the predictor sits and where FA acts (Fig. 2 of the paper).
            builder = builder
                .apply("z_plus", "g", "h_plus")
                .stopgrad("positive", "z_plus");
            let online = if arch == Architecture::Basic {
                "anchor"
            } else {
                builder = builder.apply("prediction", "q", "anchor");
                "prediction"
            };
            builder = builder.loss("original", infonce, false, online, "positive");
            match (fa, arch) {
                (None, _) => builder,
                (Some((method, k)), Architecture::PostPredictor) => builder
                    .fa("augmented", method, k, "prediction")
                    .loss("fa_term", infonce, false, "augmented", "positive"),
                (Some((method, k)), Architecture::PrePredictor) => builder
                    .fa("augmented", method, k, "anchor")
                    .apply("augmented_prediction", "q", "augmented")
                    .loss(
                        "fa_term",
                        infonce,
                        false,
                        "augmented_prediction",
                        "positive",
                    ),
                (Some((method, k)), _) => builder.fa("augmented", method, k, "positive").loss(
                    "fa_term",
                    infonce,
                    false,
                    online,
                    "augmented",
                ),
            }
        }
    };
    builder.validate()
}

/// BYOL's branches: the online prediction against an EMA target of `f → g`, symmetric and
/// free, with FA on the target's projection.
fn byol_branches(mut builder: ModelBuilder, fa: Option<(FaMethod, usize)>) -> ModelBuilder {
    builder = builder
        .module(
            "target",
            ModuleRole::Target,
            ModuleKind::Ema {
                chain: vec!["f".into(), "g".into()],
                base_momentum: EMA_MOMENTUM.0,
                final_momentum: EMA_MOMENTUM.1,
            },
        )
        .combine(Combine::Free)
        .apply("prediction", "q", "anchor")
        .apply("positive", "target", "positive_view")
        .loss("original", LossKind::Byol, true, "prediction", "positive");
    if let Some((method, k)) = fa {
        builder = builder.fa("augmented", method, k, "positive").loss(
            "fa_term",
            LossKind::Byol,
            true,
            "prediction",
            "augmented",
        );
    }
    builder
}
