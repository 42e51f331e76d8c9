//! The lowering plan: what the network will execute and which parameters it owns, computed without libtorch.
//!
//! The plan is the contract the tch lowering must honour: a test builds the network on the
//! CPU and checks that its VarStore holds exactly the names and shapes listed here. Names use
//! tch's `.` separator and, below a module's prefix, torchvision's names, so that stripping
//! `<module>.` from a ResNet parameter yields the torchvision `state_dict` key.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::ir::{
    FaMethod, FeatureShape, LossKind, MixupNoise, Model, ModuleKind, Negatives, NnGrad, NodeId,
    NodeKind, NoiseSpace, Norm, Stem,
};
use crate::valid::ValidModel;

mod memory;
mod params;

pub use memory::{estimate as memory_estimate, human as human_bytes, parse_size, MemoryEstimate};
pub use params::{mlp_layer_has_norm, module_params, resnet_layout, ResidualBlock};

/// Everything `fa lower FILE` prints: the operations in execution order and the parameter table.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub model: String,
    pub ops: Vec<PlanOp>,
    pub params: Vec<ParamEntry>,
    /// Number of trainable scalars (online modules only).
    pub trainable: usize,
    /// Number of scalars in online buffers (batch-norm running statistics and counters).
    pub buffers: usize,
    /// Number of scalars in EMA copies (parameters and buffers together).
    pub ema: usize,
    /// Number of scalars in feature banks.
    pub bank: usize,
}

/// One operation of the forward pass.
#[derive(Clone, Debug, Serialize)]
pub struct PlanOp {
    /// The graph node's name.
    pub node: String,
    /// `view`, `apply`, `stopgrad`, `fa` or `loss`.
    pub op: String,
    /// The VarStore prefix of the parameters the operation uses (`f`, `ema.target`,
    /// `bank.aug`), if any.
    pub param_path: Option<String>,
    /// A one-line description of the operation's configuration.
    pub config: String,
    pub inputs: Vec<PlanValue>,
    /// The produced value's shape; `None` for loss terms.
    pub output: Option<String>,
}

/// An input of an operation: the producing node and the shape flowing along the edge.
#[derive(Clone, Debug, Serialize)]
pub struct PlanValue {
    pub node: String,
    pub shape: String,
}

/// What a VarStore entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ParamKind {
    /// A parameter of an online module; receives gradients.
    Trainable,
    /// A batch-norm running statistic or counter of an online module.
    Buffer,
    /// A parameter or buffer of an EMA copy; never receives gradients.
    Ema,
    /// A feature bank's features, dataset indices or pointer.
    Bank,
}

/// One VarStore entry, named relative to the network's root path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParamEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: ParamKind,
}

impl ParamEntry {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Computes the plan of a validated model.
pub fn plan(valid: &ValidModel) -> Plan {
    let model = valid.model();
    let inputs = module_inputs(valid);
    let mut ops = Vec::new();
    for &node in valid.order() {
        ops.push(plan_op(valid, node));
    }

    let mut params = Vec::new();
    for (name, input) in &inputs {
        let Some(def) = model.modules.get(name) else {
            continue;
        };
        if matches!(def.kind, ModuleKind::Ema { .. }) {
            continue;
        }
        for (suffix, shape, buffer) in module_params(&def.kind, *input) {
            let kind = if buffer {
                ParamKind::Buffer
            } else {
                ParamKind::Trainable
            };
            params.push(ParamEntry {
                name: format!("{name}.{suffix}"),
                shape,
                kind,
            });
        }
    }
    for (name, input) in &inputs {
        let Some(def) = model.modules.get(name) else {
            continue;
        };
        let ModuleKind::Ema { chain, .. } = &def.kind else {
            continue;
        };
        let mut shape = *input;
        for member in chain {
            let Some(member_def) = model.modules.get(member) else {
                break;
            };
            for (suffix, param_shape, _) in module_params(&member_def.kind, shape) {
                params.push(ParamEntry {
                    name: format!("ema.{name}.{member}.{suffix}"),
                    shape: param_shape,
                    kind: ParamKind::Ema,
                });
            }
            match model.module_output_width(member, shape) {
                Some(width) => shape = FeatureShape::Vector { width, samples: 1 },
                None => break,
            }
        }
    }
    for &node in valid.order() {
        if let Some((bank, width)) = bank_of(valid, node) {
            let prefix = bank_path(&model.graph[node].name).join(".");
            params.push(ParamEntry {
                name: format!("{prefix}.features"),
                shape: vec![bank.size, width],
                kind: ParamKind::Bank,
            });
            params.push(ParamEntry {
                name: format!("{prefix}.indices"),
                shape: vec![bank.size],
                kind: ParamKind::Bank,
            });
            params.push(ParamEntry {
                name: format!("{prefix}.ptr"),
                shape: vec![1],
                kind: ParamKind::Bank,
            });
        }
    }

    let total = |kind: ParamKind| {
        params
            .iter()
            .filter(|p| p.kind == kind)
            .map(ParamEntry::numel)
            .sum()
    };
    Plan {
        model: model.name.clone(),
        trainable: total(ParamKind::Trainable),
        buffers: total(ParamKind::Buffer),
        ema: total(ParamKind::Ema),
        bank: total(ParamKind::Bank),
        ops,
        params,
    }
}

/// A node name as one VarStore path component: tch forbids `.` inside a component, and
/// generated names such as `anchor.2` contain one.
pub fn path_component(name: &str) -> String {
    name.replace('.', "_")
}

/// The VarStore path of the feature bank an FA node owns, as components: the plan joins them
/// with `.`, the tch lowering walks them.
pub fn bank_path(node_name: &str) -> [String; 2] {
    ["bank".to_string(), path_component(node_name)]
}

/// The feature bank an FA node owns, with the width of the features it stores.
pub fn bank_of(valid: &ValidModel, node: NodeId) -> Option<(&crate::ir::BankConfig, usize)> {
    let NodeKind::FeatureAug(fa) = &valid.model().graph[node].kind else {
        return None;
    };
    let bank = match &fa.method {
        FaMethod::Nn(bank) => bank,
        FaMethod::Mixup {
            noise: MixupNoise::Nn(bank),
            ..
        } => bank,
        _ => return None,
    };
    match valid.shape(node) {
        FeatureShape::Vector { width, .. } => Some((bank, width)),
        FeatureShape::Image { .. } => None,
    }
}

/// The input shape of every module that the network instantiates, in order of first use.
///
/// A module applied by a node gets that node's input shape; a member of an EMA chain that
/// no node applies directly gets the shape the chain feeds it. The first use decides: the
/// validator guarantees later uses agree.
pub fn module_inputs(valid: &ValidModel) -> Vec<(String, FeatureShape)> {
    let model = valid.model();
    let mut seen: Vec<(String, FeatureShape)> = Vec::new();
    let record = |seen: &mut Vec<(String, FeatureShape)>, name: &str, shape: FeatureShape| {
        if !seen.iter().any(|(n, _)| n == name) {
            seen.push((name.to_string(), shape));
        }
    };
    for &node in valid.order() {
        let NodeKind::Apply { module } = &model.graph[node].kind else {
            continue;
        };
        let shape = valid.shape(valid.input(node));
        let shape = single_sample(shape);
        record(&mut seen, module, shape);
        if let Some(ModuleKind::Ema { chain, .. }) = model.modules.get(module).map(|d| &d.kind) {
            let mut current = shape;
            for member in chain {
                record(&mut seen, member, current);
                match model.module_output_width(member, current) {
                    Some(width) => current = FeatureShape::Vector { width, samples: 1 },
                    None => break,
                }
            }
        }
    }
    seen
}

fn single_sample(shape: FeatureShape) -> FeatureShape {
    match shape {
        FeatureShape::Vector { width, .. } => FeatureShape::Vector { width, samples: 1 },
        image => image,
    }
}

/// A shape as the plan prints it, batch as `N`, `k×` in front when there are k FA samples.
pub fn shape_text(shape: FeatureShape) -> String {
    match shape {
        FeatureShape::Image {
            channels,
            height,
            width,
        } => format!("[N,{channels},{height},{width}]"),
        FeatureShape::Vector { width, samples: 1 } => format!("[N,{width}]"),
        FeatureShape::Vector { width, samples } => format!("{samples}×[N,{width}]"),
    }
}

fn plan_op(valid: &ValidModel, node: NodeId) -> PlanOp {
    let model = valid.model();
    let weight = &model.graph[node];
    let value = |n: NodeId| PlanValue {
        node: model.graph[n].name.clone(),
        shape: shape_text(valid.shape(n)),
    };
    let output = || Some(shape_text(valid.shape(node)));
    match &weight.kind {
        NodeKind::View { pipeline } => PlanOp {
            node: weight.name.clone(),
            op: "view".into(),
            param_path: None,
            config: format!("pipeline {pipeline}"),
            inputs: Vec::new(),
            output: output(),
        },
        NodeKind::Apply { module } => {
            let (param_path, config) = match model.modules.get(module) {
                Some(def) => match &def.kind {
                    ModuleKind::Ema {
                        chain,
                        base_momentum,
                        final_momentum,
                    } => (
                        format!("ema.{module}"),
                        format!(
                            "ema of {} (momentum {base_momentum} → {final_momentum}, no grad)",
                            chain.join(" → ")
                        ),
                    ),
                    kind => (module.clone(), module_text(model, kind)),
                },
                None => (module.clone(), "unknown module".into()),
            };
            PlanOp {
                node: weight.name.clone(),
                op: "apply".into(),
                param_path: Some(param_path),
                config,
                inputs: vec![value(valid.input(node))],
                output: output(),
            }
        }
        NodeKind::StopGrad => PlanOp {
            node: weight.name.clone(),
            op: "stopgrad".into(),
            param_path: None,
            config: "detach".into(),
            inputs: vec![value(valid.input(node))],
            output: output(),
        },
        NodeKind::FeatureAug(fa) => {
            let param_path = bank_of(valid, node).map(|_| bank_path(&weight.name).join("."));
            PlanOp {
                node: weight.name.clone(),
                op: "fa".into(),
                param_path,
                config: format!("{} k={} on l2(f)", fa_text(&fa.method), fa.k),
                inputs: vec![value(valid.input(node))],
                output: output(),
            }
        }
        NodeKind::Loss(term) => {
            let info = valid.terms().iter().find(|t| t.node == node);
            let kind = match term.kind {
                LossKind::InfoNce { tau, negatives } => match negatives {
                    Negatives::Positives => format!("infonce tau={tau}"),
                    Negatives::Anchors => format!("infonce tau={tau} negatives=anchors"),
                },
                LossKind::Byol => "byol 2-2cos".into(),
            };
            let mut config = kind;
            if term.symmetric {
                config.push_str(" symmetric");
            }
            if let Some(info) = info {
                config.push_str(&format!(" ×{}", info.multiplicity));
                if info.gradient_free {
                    config.push_str(" (gradient-free)");
                }
            }
            let inputs = info
                .map(|i| vec![value(i.left), value(i.right)])
                .unwrap_or_default();
            PlanOp {
                node: weight.name.clone(),
                op: "loss".into(),
                param_path: None,
                config,
                inputs,
                output: None,
            }
        }
    }
}

fn module_text(_model: &Model, kind: &ModuleKind) -> String {
    match kind {
        ModuleKind::ResNet { depth, stem } => {
            let stem = match stem {
                Stem::Imagenet => "imagenet stem",
                Stem::Cifar => "cifar stem",
            };
            format!("resnet{depth} {stem}")
        }
        ModuleKind::ConvNet { widths } => format!("convnet {widths:?}"),
        ModuleKind::Mlp {
            widths,
            norm,
            last_norm,
        } => {
            let norm = match norm {
                Norm::Batch => "norm batch",
                Norm::None => "norm none",
            };
            let last = if *last_norm { ", last bn" } else { "" };
            format!("mlp {widths:?} {norm}{last}")
        }
        ModuleKind::Ema { chain, .. } => format!("ema of {}", chain.join(" → ")),
    }
}

fn bank_text(bank: &crate::ir::BankConfig) -> String {
    let grad = match bank.grad {
        NnGrad::None => "grad none",
        NnGrad::StraightThrough => "grad straight-through",
    };
    let exclude = if bank.exclude_self {
        ", exclude self"
    } else {
        ""
    };
    format!("bank {}, {grad}{exclude}", bank.size)
}

fn fa_text(method: &FaMethod) -> String {
    match method {
        FaMethod::None => "identity".into(),
        FaMethod::Nn(bank) => format!("nn ({})", bank_text(bank)),
        FaMethod::Mask { rate } => format!("mask rate={rate}"),
        FaMethod::Mixup { alpha, noise } => {
            let noise = match noise {
                MixupNoise::Nn(bank) => format!("nn noise ({})", bank_text(bank)),
                MixupNoise::Batch => "batch noise".into(),
                MixupNoise::Gaussian { sigma, space } => match space {
                    NoiseSpace::Unit => format!("gaussian noise sigma={sigma}"),
                    NoiseSpace::Raw => format!("gaussian noise sigma={sigma} on raw features"),
                },
            };
            format!("mixup alpha={alpha} {noise}")
        }
    }
}

/// Groups the digits of a count by thousands (11,168,832).
pub fn thousands(value: usize) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, c) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The widest a column of the printed plan is padded to; longer names overflow their column
/// (the formatter refuses widths above 65,535, and no table reads well at 80 either).
const MAX_COLUMN: usize = 80;

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model {}", self.model)?;
        writeln!(f)?;
        writeln!(f, "operations (batch N):")?;
        let node_width = self
            .ops
            .iter()
            .map(|op| op.node.chars().count())
            .max()
            .unwrap_or(4)
            .clamp(4, MAX_COLUMN);
        let path_width = self
            .ops
            .iter()
            .map(|op| op.param_path.as_deref().unwrap_or("-").chars().count())
            .max()
            .unwrap_or(1)
            .min(MAX_COLUMN);
        let config_width = self
            .ops
            .iter()
            .map(|op| op.config.chars().count())
            .max()
            .unwrap_or(1)
            .min(MAX_COLUMN);
        for op in &self.ops {
            let inputs = if op.inputs.is_empty() {
                "-".to_string()
            } else {
                op.inputs
                    .iter()
                    .map(|v| format!("{} {}", v.node, v.shape))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let output = op.output.as_deref().unwrap_or("-");
            writeln!(
                f,
                "  {:<node_width$}  {:<8}  {:<path_width$}  {:<config_width$}  {inputs} -> {output}",
                op.node,
                op.op,
                op.param_path.as_deref().unwrap_or("-"),
                op.config,
            )?;
        }
        writeln!(f)?;
        writeln!(f, "parameters:")?;
        let name_width = self
            .params
            .iter()
            .map(|p| p.name.len())
            .max()
            .unwrap_or(4)
            .min(MAX_COLUMN);
        for param in &self.params {
            let shape = format!("{:?}", param.shape);
            let kind = match param.kind {
                ParamKind::Trainable => "trainable",
                ParamKind::Buffer => "buffer",
                ParamKind::Ema => "ema",
                ParamKind::Bank => "bank",
            };
            writeln!(f, "  {:<name_width$}  {:<18}  {kind}", param.name, shape)?;
        }
        writeln!(f)?;
        writeln!(f, "trainable parameters: {}", thousands(self.trainable))?;
        writeln!(f, "buffers:              {}", thousands(self.buffers))?;
        writeln!(f, "ema copies:           {}", thousands(self.ema))?;
        write!(f, "feature banks:        {}", thousands(self.bank))
    }
}

/// The online modules in order of first use with their input shapes, as a map.
pub fn module_input_map(valid: &ValidModel) -> BTreeMap<String, FeatureShape> {
    module_inputs(valid).into_iter().collect()
}
