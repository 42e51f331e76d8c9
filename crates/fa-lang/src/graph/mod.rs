//! Views of a validated model: GraphViz DOT (to redraw the paper's Figure 2) and a text
//! listing keyed by node names (used in snapshots).

use std::fmt::Write as _;

use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::ir::*;
use crate::valid::ValidModel;

fn shape_text(shape: FeatureShape) -> String {
    match shape {
        FeatureShape::Image {
            channels,
            height,
            width,
        } => format!("image {channels}×{height}×{width}"),
        FeatureShape::Vector { width, samples: 1 } => format!("{width}"),
        FeatureShape::Vector { width, samples } => format!("{width} ×{samples} samples"),
    }
}

fn bank_text(bank: &BankConfig) -> String {
    let grad = match bank.grad {
        NnGrad::None => "none",
        NnGrad::StraightThrough => "straight",
    };
    format!(
        "bank: {}, grad: {grad}, exclude_self: {}",
        bank.size, bank.exclude_self
    )
}

/// A feature augmentation as source-like text.
pub fn fa_text(fa: &FeatureAug) -> String {
    let method = match &fa.method {
        FaMethod::None => return "none".into(),
        FaMethod::Nn(bank) => format!("nn({}", bank_text(bank)),
        FaMethod::Mask { rate } => format!("mask(rate: {rate}"),
        FaMethod::Mixup { alpha, noise } => {
            let noise = match noise {
                MixupNoise::Nn(bank) => format!("nn({})", bank_text(bank)),
                MixupNoise::Batch => "batch".into(),
                MixupNoise::Gaussian { sigma, space } => match space {
                    NoiseSpace::Unit => format!("gaussian(sigma: {sigma})"),
                    NoiseSpace::Raw => format!("gaussian(sigma: {sigma}, space: raw)"),
                },
            };
            format!("mixup(alpha: {alpha}, noise: {noise}")
        }
    };
    format!("{method}, k: {})", fa.k)
}

fn loss_text(term: &LossTerm) -> String {
    let kind = match term.kind {
        LossKind::InfoNce { tau, negatives } => match negatives {
            Negatives::Positives => format!("infonce(tau: {tau})"),
            Negatives::Anchors => format!("infonce(tau: {tau}, negatives: anchors)"),
        },
        LossKind::Byol => "byol".into(),
    };
    if term.symmetric {
        format!("symmetric {kind}")
    } else {
        kind
    }
}

fn module_text(def: &ModuleDef) -> String {
    let role = match def.role {
        ModuleRole::Encoder => "encoder",
        ModuleRole::Projector => "projector",
        ModuleRole::Predictor => "predictor",
        ModuleRole::Target => "target",
    };
    let kind = match &def.kind {
        ModuleKind::ResNet { depth, stem } => format!(
            "resnet{depth}(stem: {})",
            if *stem == Stem::Cifar {
                "cifar"
            } else {
                "imagenet"
            }
        ),
        ModuleKind::ConvNet { widths } => format!("convnet({})", join(widths)),
        ModuleKind::Mlp {
            widths,
            norm,
            last_norm,
        } => {
            format!(
                "mlp({}, norm: {}, last_norm: {last_norm})",
                join(widths),
                if *norm == Norm::Batch {
                    "batch"
                } else {
                    "none"
                }
            )
        }
        ModuleKind::Ema {
            chain,
            base_momentum,
            final_momentum,
        } => {
            format!(
                "ema({}, momentum: {base_momentum}, final: {final_momentum})",
                chain.join(" -> ")
            )
        }
    };
    format!("{role} {} = {kind}", def.name)
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn op_text(op: &AugOp) -> String {
    match op {
        AugOp::RandomResizedCrop {
            size,
            scale,
            ratio,
            interpolation,
        } => format!(
            "crop(size: {size}, scale: ({}, {}), ratio: ({:.4}, {:.4}), {})",
            scale.0,
            scale.1,
            ratio.0,
            ratio.1,
            if *interpolation == Interpolation::Bicubic {
                "bicubic"
            } else {
                "bilinear"
            }
        ),
        AugOp::HorizontalFlip { p } => format!("flip(p: {p})"),
        AugOp::ColorJitter {
            brightness,
            contrast,
            saturation,
            hue,
            p,
        } => format!("jitter({brightness}, {contrast}, {saturation}, {hue}, p: {p})"),
        AugOp::Grayscale { p } => format!("grayscale(p: {p})"),
        AugOp::GaussianBlur { p, sigma } => {
            format!("blur(p: {p}, sigma: ({}, {}))", sigma.0, sigma.1)
        }
        AugOp::Solarize { p, threshold } => format!("solarize(p: {p}, threshold: {threshold})"),
        AugOp::Normalize { mean, std } => {
            format!("normalize(mean: ({}), std: ({}))", join(mean), join(std))
        }
    }
}

/// The node's operation as text, without inputs.
pub fn node_text(model: &Model, node: &Node) -> String {
    let _ = model;
    match &node.kind {
        NodeKind::View { pipeline } => format!("view({pipeline})"),
        NodeKind::Apply { module } => module.clone(),
        NodeKind::StopGrad => "stopgrad".into(),
        NodeKind::FeatureAug(fa) => format!("fa {}", fa_text(fa)),
        NodeKind::Loss(term) => loss_text(term),
    }
}

/// A text listing of the whole model keyed by names: configuration, modules, pipelines,
/// then every node in execution order with its inputs, shape and gradient flow.
pub fn to_text(valid: &ValidModel) -> String {
    let model = valid.model();
    let graph = &model.graph;
    let mut out = String::new();
    let data = &model.data;
    let format = match data.format {
        DatasetFormat::Idx => "idx",
        DatasetFormat::CifarBinary => "cifar_binary",
        DatasetFormat::ImageFolder => "image_folder",
    };
    let _ = writeln!(out, "model {}", model.name);
    let _ = writeln!(
        out,
        "data {format} {:?} splits {}/{} image {}×{}×{} batch {}{}",
        data.path,
        data.train_split,
        data.test_split,
        data.channels,
        data.image_size,
        data.image_size,
        data.batch_size,
        data.limit
            .map(|l| format!(" limit {l}"))
            .unwrap_or_default()
    );
    for pipeline in model.pipelines.values() {
        let ops: Vec<String> = pipeline.ops.iter().map(op_text).collect();
        let _ = writeln!(out, "pipeline {} = [{}]", pipeline.name, ops.join(", "));
    }
    for def in model.modules.values() {
        let _ = writeln!(out, "{}", module_text(def));
    }
    for &node in valid.order() {
        let weight = &graph[node];
        let mut inputs: Vec<(EdgeRole, String)> = graph
            .edges_directed(node, Direction::Incoming)
            .map(|e| (e.weight().role, graph[e.source()].name.clone()))
            .collect();
        inputs.sort_by_key(|(role, _)| match role {
            EdgeRole::Input => 0,
            EdgeRole::Left => 1,
            EdgeRole::Right => 2,
        });
        let inputs: Vec<String> = inputs.into_iter().map(|(_, name)| name).collect();
        let op = node_text(model, weight);
        match &weight.kind {
            NodeKind::Loss(_) => {
                let term = valid.terms().iter().find(|t| t.node == node);
                let (multiplicity, free) = term
                    .map(|t| (t.multiplicity, t.gradient_free))
                    .unwrap_or((1, false));
                let _ = writeln!(
                    out,
                    "{} = {op}({} ~ {}) ×{multiplicity}{}",
                    weight.name,
                    inputs.first().cloned().unwrap_or_default(),
                    inputs.get(1).cloned().unwrap_or_default(),
                    if free { " gradient-free" } else { "" }
                );
            }
            NodeKind::View { .. } => {
                let _ = writeln!(
                    out,
                    "{} = {op} : {}",
                    weight.name,
                    shape_text(valid.shape(node))
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "{} = {op}({}) : {}{}",
                    weight.name,
                    inputs.join(", "),
                    shape_text(valid.shape(node)),
                    if valid.carries_gradient(node) {
                        ""
                    } else {
                        " detached"
                    }
                );
            }
        }
    }
    let combine = match model.combine {
        Combine::Mean => "mean",
        Combine::Free => "free",
    };
    let _ = writeln!(out, "combine {combine} over {} terms", valid.term_count());
    let optim = &model.optim;
    let kind = match optim.kind {
        OptimKind::Sgd => "sgd".to_string(),
        OptimKind::Lars { trust, clip } => format!("lars(trust: {trust}, clip: {clip})"),
    };
    let lr = match optim.lr.scaling {
        LrScaling::Absolute => format!("{}", optim.lr.value),
        LrScaling::Per256 => match optim.lr.basis {
            LrBasis::Effective => format!("{} per 256", optim.lr.value),
            LrBasis::Batch => format!("{} per 256 of the batch", optim.lr.value),
        },
    };
    let _ = writeln!(
        out,
        "optim {kind} lr {lr} momentum {} weight_decay {} warmup {} {} accumulate {} clip {}",
        optim.momentum,
        optim.weight_decay,
        optim.warmup_epochs,
        if optim.schedule == Schedule::Cosine {
            "cosine"
        } else {
            "constant"
        },
        optim.accumulate,
        optim
            .clip_grad_norm
            .map(|c| c.to_string())
            .unwrap_or_else(|| "none".into())
    );
    let train = &model.train;
    let _ = writeln!(
        out,
        "train epochs {} seed {} precision {:?} checkpoint_every {} knn_every {}",
        train.epochs, train.seed, train.precision, train.checkpoint_every, train.knn_every
    );
    if let Some(knn) = &model.eval.knn {
        let _ = writeln!(out, "eval knn k {} tau {}", knn.k, knn.temperature);
    }
    if let Some(linear) = &model.eval.linear {
        let _ = writeln!(
            out,
            "eval linear epochs {} lr {} batch {} momentum {} weight_decay {} milestones [{}] {:?}",
            linear.epochs,
            linear.lr,
            linear.batch_size,
            linear.momentum,
            linear.weight_decay,
            join(&linear.milestones),
            linear.mode
        );
    }
    for warning in valid.warnings() {
        let _ = writeln!(out, "warning {}: {}", warning.code, warning.message);
    }
    out
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// GraphViz DOT: views as boxes, FA nodes as orange diamonds, EMA targets as grey double
/// octagons, losses as red ellipses, stop-gradient edges dashed.
pub fn to_dot(valid: &ValidModel) -> String {
    let model = valid.model();
    let graph = &model.graph;
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote(&model.name));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(out, "  node [fontname=\"Helvetica\"];");
    for &node in valid.order() {
        let weight = &graph[node];
        if matches!(weight.kind, NodeKind::StopGrad) {
            // Stop-gradient is drawn as a dashed edge, not a node.
            continue;
        }
        let label = match &weight.kind {
            NodeKind::Loss(_) => format!("{}\\n{}", weight.name, node_text(model, weight)),
            _ => format!(
                "{}\\n{}\\n{}",
                weight.name,
                node_text(model, weight),
                shape_text(valid.shape(node))
            ),
        };
        let style = match &weight.kind {
            NodeKind::View { .. } => "shape=box, style=rounded".to_string(),
            NodeKind::FeatureAug(_) => "shape=diamond, style=filled, fillcolor=orange".to_string(),
            NodeKind::Apply { module }
                if model
                    .modules
                    .get(module)
                    .is_some_and(|m| m.role == ModuleRole::Target) =>
            {
                "shape=doubleoctagon, style=filled, fillcolor=lightgrey".to_string()
            }
            NodeKind::Apply { .. } => "shape=box".to_string(),
            NodeKind::Loss(_) => "shape=ellipse, style=filled, fillcolor=salmon".to_string(),
            NodeKind::StopGrad => unreachable!("skipped above"),
        };
        let _ = writeln!(
            out,
            "  {} [label={}, {style}];",
            quote(&weight.name),
            quote(&label).replace("\\\\n", "\\n")
        );
    }
    // Edges, skipping through stop-gradient nodes (drawn dashed).
    for &node in valid.order() {
        let weight = &graph[node];
        if matches!(weight.kind, NodeKind::StopGrad) {
            continue;
        }
        for edge in graph.edges_directed(node, Direction::Incoming) {
            let mut source = edge.source();
            let mut dashed = false;
            while matches!(graph[source].kind, NodeKind::StopGrad) {
                dashed = true;
                source = valid.input(source);
            }
            let mut attributes = Vec::new();
            if dashed {
                attributes.push("style=dashed".to_string());
                attributes.push("label=\"stopgrad\"".to_string());
            }
            match edge.weight().role {
                EdgeRole::Left => attributes.push("taillabel=\"a\"".into()),
                EdgeRole::Right => attributes.push("taillabel=\"b\"".into()),
                EdgeRole::Input => {}
            }
            let attributes = if attributes.is_empty() {
                String::new()
            } else {
                format!(" [{}]", attributes.join(", "))
            };
            let _ = writeln!(
                out,
                "  {} -> {}{attributes};",
                quote(&graph[source].name),
                quote(&weight.name)
            );
        }
    }
    let _ = writeln!(out, "}}");
    out
}
