//! The network: a validated model lowered onto tch modules, with EMA targets, feature banks and the loss.
//!
//! [`Network::forward`] walks the validated execution order once (twice for symmetric terms,
//! the second time with the two views exchanged), keeping each node's value as one tensor
//! per FA sample.

pub mod fa;
pub mod layers;
pub mod loss;

mod doctor;
mod ema;
mod error;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use petgraph::visit::EdgeRef;
use petgraph::Direction;
use tch::{nn, Device, Tensor};

use fa_lang::ir::{
    Combine, FaMethod, FeatureShape, LossKind, MixupNoise, ModuleKind, ModuleRole, Negatives,
    NnGrad, NodeId, NodeKind, NoiseSpace,
};
use fa_lang::plan::{bank_of, bank_path, module_inputs, path_component};

use fa_lang::valid::ValidModel;

use crate::dist::Collectives;
pub use doctor::{doctor, parse_device};
use ema::Target;
pub use error::LowerError;
use fa::Bank;
use layers::{Layer, Registry};

/// What one forward call produces.
#[derive(Debug)]
pub struct StepOutput {
    /// The combined loss: the sum of terms (`free`) or their mean over `term_count` (`mean`).
    pub total: Tensor,
    /// Each term's value: `left~right`, with `#j` (1-based) appended for FA sample j when the
    /// term has several.
    pub terms: Vec<(String, Tensor)>,
    /// An L2-normalised, detached projector output (the first projector application, or the
    /// first term's left side), for the collapse monitor.
    pub projection: Tensor,
    /// For the first NN-bank FA node: the stored dataset index of each query's nearest
    /// neighbour, and the query's own dataset index.
    pub nn_hits: Option<(Tensor, Tensor)>,
}

/// A validated model lowered onto tch.
#[derive(Debug)]
pub struct Network {
    valid: ValidModel,
    device: Device,
    online: BTreeMap<String, Layer>,
    targets: BTreeMap<String, Target>,
    banks: BTreeMap<NodeId, Bank>,
    backbone: String,
    /// The nodes a symmetric term depends on: evaluated again with the views exchanged.
    symmetric_nodes: BTreeSet<NodeId>,
    /// The process group when this network is one rank of a data-parallel job: its batch
    /// is this rank's slice of the global batch, and the losses, banks and FA draws are
    /// defined over the global batch (docs/distributed.md).
    parallel: Option<Collectives>,
}

/// The values of one pass through the graph.
struct Pass {
    values: HashMap<NodeId, Vec<Tensor>>,
    /// What each deterministic value is: the view it starts from and the modules and
    /// stop-gradients applied since (`None` for values with randomness or bank state, such
    /// as FA). The swapped pass of a symmetric term reuses a value of the first pass with
    /// the same provenance instead of computing it again, so every module sees each view
    /// once per step: batch-norm running statistics update once per view, as in solo-learn,
    /// and the encoder's forward cost does not double.
    provenance: HashMap<NodeId, Option<String>>,
    terms: HashMap<NodeId, Vec<Tensor>>,
    /// The unit features each bank node read (first FA input sample), to enqueue.
    enqueue: Vec<(NodeId, Tensor)>,
    nn_hits: Option<(Tensor, Tensor)>,
}

impl Network {
    /// Creates every parameter under `root`: online modules at `<module>.…`, EMA copies at
    /// `ema.<target>.<member>.…` (never trainable), NN banks at `bank.<fa node>.{features,
    /// indices,ptr}` (never trainable).
    pub fn new(root: &nn::Path, valid: &ValidModel) -> Result<Network, LowerError> {
        Network::new_parallel(root, valid, None, false)
    }

    /// As [`Network::new`], for one rank of a data-parallel job: InfoNCE takes its negatives
    /// from every rank, banks enqueue the global batch, FA draws are made for the global batch
    /// and sliced, and with `sync_batch_norm` batch norm (online and EMA) normalises with the
    /// global batch's statistics.
    pub fn new_parallel(
        root: &nn::Path,
        valid: &ValidModel,
        parallel: Option<Collectives>,
        sync_batch_norm: bool,
    ) -> Result<Network, LowerError> {
        let sync = if sync_batch_norm {
            parallel.clone()
        } else {
            None
        };
        let model = valid.model();
        let device = root.device();
        let inputs = module_inputs(valid);
        let mut online = BTreeMap::new();
        let mut online_tensors: HashMap<String, Vec<(Tensor, bool)>> = HashMap::new();
        for (name, input) in &inputs {
            let def = model
                .modules
                .get(name)
                .ok_or_else(|| LowerError::UnknownModule(name.clone()))?;
            if matches!(def.kind, ModuleKind::Ema { .. }) {
                continue;
            }
            let mut registry = Registry::new(true, device);
            registry.sync = sync.clone();
            let layer = Layer::build(
                &(root / path_component(name)),
                &mut registry,
                name,
                &def.kind,
                *input,
            )?;
            online.insert(name.clone(), layer);
            online_tensors.insert(name.clone(), registry.tensors);
        }

        let mut targets = BTreeMap::new();
        for (name, input) in &inputs {
            let def = &model.modules[name];
            let ModuleKind::Ema {
                chain,
                base_momentum,
                final_momentum,
            } = &def.kind
            else {
                continue;
            };
            if chain.is_empty() {
                return Err(LowerError::EmptyEma(name.clone()));
            }
            let mut layers = Vec::new();
            let mut parameters = Vec::new();
            let mut buffers = Vec::new();
            let mut shape = *input;
            for member in chain {
                let member_def = model
                    .modules
                    .get(member)
                    .ok_or_else(|| LowerError::UnknownModule(member.clone()))?;
                let path = root / "ema" / path_component(name) / path_component(member);
                let mut registry = Registry::new(false, device);
                registry.sync = sync.clone();
                let layer = Layer::build(&path, &mut registry, member, &member_def.kind, shape)?;
                let sources = &online_tensors[member];
                tch::no_grad(|| {
                    for ((source, _), (copy, buffer)) in sources.iter().zip(&registry.tensors) {
                        copy.shallow_clone().copy_(source);
                        if *buffer {
                            buffers.push((source.shallow_clone(), copy.shallow_clone()));
                        } else {
                            parameters.push((source.shallow_clone(), copy.shallow_clone()));
                        }
                    }
                });
                layers.push(layer);
                let width = model
                    .module_output_width(member, shape)
                    .ok_or_else(|| LowerError::UnknownModule(member.clone()))?;
                shape = FeatureShape::Vector { width, samples: 1 };
            }
            targets.insert(
                name.clone(),
                Target {
                    chain: layers,
                    base_momentum: *base_momentum,
                    final_momentum: *final_momentum,
                    parameters,
                    buffers,
                },
            );
        }

        let mut banks = BTreeMap::new();
        for &node in valid.order() {
            let Some((bank, width)) = bank_of(valid, node) else {
                continue;
            };
            let path = bank_path(&model.graph[node].name)
                .iter()
                .fold(root.clone(), |path, part| path / part);
            banks.insert(node, Bank::new(&path, bank.size, width));
        }

        let mut symmetric_nodes = BTreeSet::new();
        for term in valid.terms() {
            let NodeKind::Loss(loss) = &model.graph[term.node].kind else {
                continue;
            };
            // Validation guarantees a symmetric model two views (fa::valid::symmetric_views),
            // FA on feature vectors only (fa::valid::input_kind) and banks of at least k
            // entries (fa::valid::bank_too_small): lowering does not check them again.
            if !loss.symmetric {
                continue;
            }
            let mut stack = vec![term.node];
            while let Some(node) = stack.pop() {
                if symmetric_nodes.insert(node) {
                    stack.extend(model.graph.neighbors_directed(node, Direction::Incoming));
                }
            }
        }

        let backbone = backbone_module(valid).ok_or(LowerError::NoEncoder)?;
        Ok(Network {
            valid: valid.clone(),
            device,
            online,
            targets,
            banks,
            backbone,
            symmetric_nodes,
            parallel,
        })
    }

    /// Runs the model on one micro-batch and combines its loss terms.
    ///
    /// `views`: one float tensor `[N, C, H, W]` per `valid.views()`, in order. `indices`:
    /// int64 `[N]` dataset indices (for exclude-self and the NN hit rate). `train`:
    /// batch-norm mode; in training mode each bank enqueues the batch once per call.
    pub fn forward(&mut self, views: &[Tensor], indices: &Tensor, train: bool) -> StepOutput {
        assert_eq!(
            views.len(),
            self.valid.views().len(),
            "one tensor per view node"
        );
        let indices = indices.to_device(self.device);
        let first = self.run(views, &indices, train, None);
        let second = if self.symmetric_nodes.is_empty() {
            None
        } else {
            let swapped = [views[1].shallow_clone(), views[0].shallow_clone()];
            Some(self.run(&swapped, &indices, train, Some(&first)))
        };

        let model = self.valid.model();
        let mut terms = Vec::new();
        // Report terms in source order whatever order validation listed them in.
        let mut in_source_order: Vec<_> = self.valid.terms().iter().collect();
        in_source_order.sort_by_key(|term| {
            let span = model.graph[term.node].span;
            (span.file, span.start)
        });
        for term in in_source_order {
            let NodeKind::Loss(loss) = &model.graph[term.node].kind else {
                continue;
            };
            let values = &first.terms[&term.node];
            let name = format!(
                "{}~{}",
                model.graph[term.left].name, model.graph[term.right].name
            );
            for (j, value) in values.iter().enumerate() {
                let value = match (&second, loss.symmetric) {
                    (Some(second), true) => {
                        let both = value + &second.terms[&term.node][j];
                        match loss.kind {
                            // BYOL's symmetrised loss is the sum L + L̃ (its paper, and
                            // solo-learn's `byol`); InfoNCE's directions are averaged
                            // (solo-learn's NNCLR and SimCLR).
                            LossKind::Byol => both,
                            LossKind::InfoNce { .. } => both / 2.0,
                        }
                    }
                    _ => value.shallow_clone(),
                };
                let label = if values.len() > 1 {
                    format!("{name}#{}", j + 1)
                } else {
                    name.clone()
                };
                terms.push((label, value));
            }
        }
        let mut total = terms
            .iter()
            .map(|(_, value)| value.shallow_clone())
            .reduce(|a, b| a + b)
            .unwrap_or_else(|| Tensor::zeros([], (tch::Kind::Float, self.device)));
        if model.combine == Combine::Mean {
            total /= self.valid.term_count().max(1) as f64;
        }

        let projection = projection_node(&self.valid)
            .and_then(|node| first.values.get(&node))
            .map(|values| fa::l2_normalize(&values[0].detach()))
            .unwrap_or_else(|| Tensor::zeros([0], (tch::Kind::Float, self.device)));

        if train {
            // Every rank enqueues the global batch in rank order, as one process enqueues
            // it, so the banks stay identical on every rank whatever the world size.
            let indices = match &self.parallel {
                Some(parallel) => parallel.gather(&indices),
                None => indices.shallow_clone(),
            };
            for (node, unit) in &first.enqueue {
                let unit = match &self.parallel {
                    Some(parallel) => parallel.gather(unit),
                    None => unit.shallow_clone(),
                };
                if let Some(bank) = self.banks.get_mut(node) {
                    bank.enqueue(&unit, &indices);
                }
            }
        }
        StepOutput {
            total,
            terms,
            projection,
            nn_hits: first.nn_hits,
        }
    }

    /// Evaluates the graph once; with `swapped`, only the nodes symmetric terms need.
    ///
    /// `first`: the first pass, whose deterministic values the swapped pass reuses.
    fn run(&self, views: &[Tensor], indices: &Tensor, train: bool, first: Option<&Pass>) -> Pass {
        let swapped = first.is_some();
        let model = self.valid.model();
        // Provenance of the first pass's values, to find a value the swapped pass already has.
        let computed: HashMap<&str, NodeId> = first
            .map(|first| {
                first
                    .provenance
                    .iter()
                    .filter_map(|(node, key)| Some((key.as_deref()?, *node)))
                    .collect()
            })
            .unwrap_or_default();
        let mut pass = Pass {
            values: HashMap::new(),
            provenance: HashMap::new(),
            terms: HashMap::new(),
            enqueue: Vec::new(),
            nn_hits: None,
        };
        for &node in self.valid.order() {
            if swapped && !self.symmetric_nodes.contains(&node) {
                continue;
            }
            let weight = &model.graph[node];
            let provenance = self.provenance(node, &pass.provenance, swapped);
            if let (Some(first), Some(key)) = (first, &provenance) {
                if let Some(done) = computed.get(key.as_str()) {
                    let reused = first.values[done]
                        .iter()
                        .map(Tensor::shallow_clone)
                        .collect();
                    pass.values.insert(node, reused);
                    pass.provenance.insert(node, provenance);
                    continue;
                }
            }
            pass.provenance.insert(node, provenance);
            let input = || &pass.values[&self.valid.input(node)];
            let value: Vec<Tensor> = match &weight.kind {
                NodeKind::View { .. } => {
                    let position = self
                        .valid
                        .views()
                        .iter()
                        .position(|&v| v == node)
                        .expect("view node is listed");
                    vec![views[position].to_device(self.device)]
                }
                NodeKind::Apply { module } => match self.targets.get(module) {
                    Some(target) => input()
                        .iter()
                        .map(|x| {
                            // BYOL runs its target in training mode: batch statistics of
                            // the current batch, as the online network sees them.
                            tch::no_grad(|| {
                                let mut out = x.detach();
                                for layer in &target.chain {
                                    out = layer.forward(&out, train);
                                }
                                out
                            })
                        })
                        .collect(),
                    None => {
                        let layer = &self.online[module];
                        input().iter().map(|x| layer.forward(x, train)).collect()
                    }
                },
                NodeKind::StopGrad => input().iter().map(Tensor::detach).collect(),
                NodeKind::FeatureAug(aug) => {
                    let mut out = Vec::new();
                    for (sample, x) in input().iter().enumerate() {
                        let unit = fa::l2_normalize(x);
                        let neighbours = self.banks.get(&node).map(|bank| {
                            let exclude = bank_of(&self.valid, node)
                                .map(|(b, _)| b.exclude_self)
                                .unwrap_or(false);
                            bank.lookup(&unit, indices, aug.k, exclude)
                        });
                        if let Some(found) = &neighbours {
                            if sample == 0 && !swapped {
                                pass.enqueue.push((node, unit.detach()));
                                if pass.nn_hits.is_none() {
                                    pass.nn_hits =
                                        Some((found.indices.select(1, 0), indices.shallow_clone()));
                                }
                            }
                        }
                        for j in 0..aug.k {
                            out.push(self.augment(
                                &aug.method,
                                x,
                                &unit,
                                neighbours.as_ref().map(|n| &n.features[j]),
                            ));
                        }
                    }
                    out
                }
                NodeKind::Loss(loss) => {
                    let Some(term) = self.valid.terms().iter().find(|t| t.node == node) else {
                        continue;
                    };
                    let left = &pass.values[&term.left];
                    let right = &pass.values[&term.right];
                    let values = (0..term.multiplicity)
                        .map(|j| {
                            let a = &left[j % left.len()];
                            let b = &right[j % right.len()];
                            match loss.kind {
                                LossKind::InfoNce {
                                    tau,
                                    negatives: Negatives::Positives,
                                } => self.info_nce(a, b, tau),
                                // Rows of the right side, softmax over the left.
                                LossKind::InfoNce {
                                    tau,
                                    negatives: Negatives::Anchors,
                                } => self.info_nce(b, a, tau),
                                // A mean over this rank's rows; averaging the gradients
                                // over the ranks makes it the global batch's mean.
                                LossKind::Byol => loss::byol_loss(a, b),
                            }
                        })
                        .collect();
                    pass.terms.insert(node, values);
                    continue;
                }
            };
            pass.values.insert(node, value);
        }
        pass
    }

    /// The provenance of `node`'s value (see [`Pass::provenance`]) given its input's: a view
    /// is named by the view tensor it reads (exchanged in the swapped pass), a module
    /// application or stop-gradient extends its input's, anything else has none.
    fn provenance(
        &self,
        node: NodeId,
        known: &HashMap<NodeId, Option<String>>,
        swapped: bool,
    ) -> Option<String> {
        let model = self.valid.model();
        match &model.graph[node].kind {
            NodeKind::View { .. } => {
                let position = self.valid.views().iter().position(|&v| v == node)?;
                let tensor = if swapped { 1 - position } else { position };
                Some(format!("view{tensor}"))
            }
            NodeKind::Apply { module } => {
                let input = known.get(&self.valid.input(node))?.as_ref()?;
                Some(format!("{input}>{module}"))
            }
            NodeKind::StopGrad => {
                let input = known.get(&self.valid.input(node))?.as_ref()?;
                Some(format!("{input}>stopgrad"))
            }
            _ => None,
        }
    }

    /// InfoNCE of this rank's rows of `a` against the global batch of `b`: in a parallel
    /// job `b` comes from every rank through the autograd all-gather (its gradient returns
    /// to the rank that computed it) and the positive of local row i is global row
    /// rank·n + i.
    fn info_nce(&self, a: &Tensor, b: &Tensor, tau: f64) -> Tensor {
        match &self.parallel {
            Some(parallel) => {
                let offset = parallel.rank() as i64 * a.size()[0];
                loss::info_nce_rows(a, &parallel.gather_autograd(b), tau, offset)
            }
            None => loss::info_nce(a, b, tau),
        }
    }

    /// The number of rows of the global batch when this rank holds `rows`.
    fn global_rows(&self, rows: usize) -> usize {
        rows * self.parallel.as_ref().map_or(1, Collectives::world)
    }

    /// This rank's rows of a draw made for the global batch.
    fn local_rows(&self, global: Tensor) -> Tensor {
        match &self.parallel {
            Some(parallel) => parallel.local_slice(&global),
            None => global,
        }
    }

    /// One FA sample of `x` (whose unit version is `unit`), drawing the method's randomness.
    ///
    /// Every draw is made for the global batch, whose rows every rank draws alike (the
    /// generator is seeded per micro-step, not per rank), and sliced to this rank's rows: a
    /// sample gets the draws it gets in one process with the whole batch.
    fn augment(
        &self,
        method: &FaMethod,
        x: &Tensor,
        unit: &Tensor,
        neighbour: Option<&Tensor>,
    ) -> Tensor {
        let rows = self.global_rows(unit.size()[0] as usize);
        let width = unit.size()[1] as usize;
        match method {
            FaMethod::None => x.shallow_clone(),
            FaMethod::Mask { rate } => fa::apply_mask(
                unit,
                &self.local_rows(fa::draw_mask(rows, width, *rate, self.device)),
            ),
            FaMethod::Nn(bank) => {
                let neighbour = neighbour.expect("nn nodes own a bank");
                match bank.grad {
                    NnGrad::None => neighbour.shallow_clone(),
                    NnGrad::StraightThrough => fa::straight_through(unit, neighbour),
                }
            }
            FaMethod::Mixup { alpha, noise } => {
                // The noise is a constant: gradients reach the feature through λ·f only.
                let noise = match noise {
                    MixupNoise::Nn(_) => neighbour
                        .expect("nn-noise nodes own a bank")
                        .shallow_clone(),
                    // Partners come from the global batch.
                    MixupNoise::Batch => {
                        let global = match &self.parallel {
                            Some(parallel) => parallel.gather(&unit.detach()),
                            None => unit.detach(),
                        };
                        global.index_select(0, &self.local_rows(fa::draw_other(rows, self.device)))
                    }
                    MixupNoise::Gaussian { sigma, space } => {
                        let lambda = self.local_rows(fa::draw_lambda(rows, *alpha, self.device));
                        let base = match space {
                            NoiseSpace::Unit => unit,
                            NoiseSpace::Raw => x,
                        };
                        let like = if self.parallel.is_some() {
                            base.detach().repeat([rows as i64 / base.size()[0], 1])
                        } else {
                            base.detach()
                        };
                        let noise = self.local_rows(fa::draw_gaussian(&like, *sigma));
                        return fa::mixup(base, &noise, &lambda);
                    }
                };
                let lambda = self.local_rows(fa::draw_lambda(rows, *alpha, self.device));
                fa::mixup(unit, &noise, &lambda)
            }
        }
    }

    /// Online encoder features for evaluation: the backbone in eval mode, without gradients.
    ///
    /// # Shapes
    /// `[N, C, H, W]` to `[N, D]`.
    pub fn backbone(&self, images: &Tensor) -> Tensor {
        tch::no_grad(|| self.online[&self.backbone].forward(&images.to_device(self.device), false))
    }

    /// The encoder module's name, the prefix of its parameters.
    pub fn backbone_name(&self) -> &str {
        &self.backbone
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// The feature bank owned by the FA node named `node`, if it has one.
    pub fn bank(&self, node: &str) -> Option<&Bank> {
        let graph = &self.valid.model().graph;
        self.banks
            .iter()
            .find(|(id, _)| graph[**id].name == node)
            .map(|(_, bank)| bank)
    }

    pub fn valid(&self) -> &ValidModel {
        &self.valid
    }

    /// The process group, when this network is one rank of a data-parallel job.
    pub fn parallel(&self) -> Option<&Collectives> {
        self.parallel.as_ref()
    }
}

/// The EMA momentum schedule lives with the other schedules.

/// The module applied to the first view (not an EMA target), else the first encoder.
fn backbone_module(valid: &ValidModel) -> Option<String> {
    let model = valid.model();
    let first_view = *valid.views().first()?;
    let applied = model
        .graph
        .edges_directed(first_view, Direction::Outgoing)
        .find_map(|edge| match &model.graph[edge.target()].kind {
            NodeKind::Apply { module }
                if !matches!(
                    model.modules.get(module).map(|d| &d.kind),
                    Some(ModuleKind::Ema { .. })
                ) =>
            {
                Some(module.clone())
            }
            _ => None,
        });
    applied.or_else(|| {
        model
            .modules
            .values()
            .find(|d| d.role == ModuleRole::Encoder)
            .map(|d| d.name.clone())
    })
}

/// The node whose value the collapse monitor watches.
fn projection_node(valid: &ValidModel) -> Option<NodeId> {
    let model = valid.model();
    valid
        .order()
        .iter()
        .copied()
        .find(|&node| match &model.graph[node].kind {
            NodeKind::Apply { module } => model
                .modules
                .get(module)
                .is_some_and(|d| d.role == ModuleRole::Projector),
            _ => false,
        })
        .or_else(|| valid.terms().first().map(|t| t.left))
}
