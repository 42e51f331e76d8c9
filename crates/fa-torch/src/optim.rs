//! SGD with momentum and LARS, written here because tch's optimisers cannot save their state.
//!
//! Each step runs either per parameter (a few kernels for every tensor) or with libtorch's
//! multi-tensor `_foreach_*` operations through the C++ shim ([`crate::native`]), which on a
//! GPU fuses the same arithmetic over all parameters into a few launches. Both paths apply
//! the same operations in the same order, so they agree bit for bit on the CPU (where the
//! `_foreach_*` operations run tensor by tensor; tested in `tests/trainkit_optim.rs`). The
//! multi-tensor path is the default; `FA_OPTIM_FOREACH=0` selects the per-parameter one.
//!
//! `FA_OPTIM_FUSED=1` runs SGD's multi-tensor step in libtorch's fused SGD kernel instead
//! (`_fused_sgd_`, what `torch.optim.SGD(fused=True)` runs): one pass over each parameter,
//! gradient and buffer instead of six. It contracts the weight decay and the momentum into
//! fused multiply-adds, so it agrees with the other paths to a few units in the last place
//! per step, not bit for bit (tested to a relative 1e-6 over four steps; a run and its
//! resumption still agree bit for bit). It is not the default, as it is not PyTorch's: on
//! the CPU it gained nothing measurable (docs/benchmarks.md), and a different rounding is a
//! different training trajectory: the quickstart's kNN moved from 87.30% to 86.86% under it,
//! and the published figures are reproduced exactly only by the default path.
//!
//! [`Optimizer::zero_grad`] drops the gradients (PyTorch's `set_to_none=True`), so a backward
//! pass stores its gradients instead of adding them to zeros.
//!
//! Both optimisers keep one momentum buffer per parameter, exposed through
//! [`Optimizer::state`] and [`Optimizer::load_state`] so that a checkpoint holds everything
//! needed to resume bit for bit. The learning rate is passed to every [`Optimizer::step`]:
//! the schedule lives with the caller ([`crate::schedule`]).
//!
//! Which parameters are decayed follows the peer code of each optimiser:
//! - SGD decays every parameter, as `torch.optim.SGD` does and as solo-learn
//!   (`exclude_bias_n_norm_wd` off by default) and lightly's CIFAR-10 benchmark run it;
//! - LARS leaves parameters with at most one dimension (biases, batch-norm weights and
//!   biases) without weight decay and without adaptation, as solo-learn's LARS with
//!   `exclude_bias_n_norm` (which the paper's recipes use) does.

use tch::{Kind, Tensor};

use crate::native;
use crate::train::checkpoint::{CheckpointError, TensorMismatch};
use fa_lang::ir::{OptimConfig, OptimKind};

/// Prefix of the optimiser's tensors in a checkpoint.
const STATE_PREFIX: &str = "optim/";

/// One trainable parameter and its momentum buffer.
#[derive(Debug)]
struct Slot {
    name: String,
    parameter: Tensor,
    /// Created by the first step that sees a gradient, as PyTorch's SGD does.
    buffer: Option<Tensor>,
    /// Whether weight decay (and, under LARS, adaptation) applies: every parameter under
    /// SGD, tensors of two or more dimensions under LARS.
    decayed: bool,
}

/// SGD with momentum, or LARS, over a fixed list of named parameters.
#[derive(Debug)]
pub struct Optimizer {
    kind: OptimKind,
    momentum: f64,
    weight_decay: f64,
    slots: Vec<Slot>,
    /// Whether [`Optimizer::step`] uses the multi-tensor operations.
    multi_tensor: bool,
    /// Whether the multi-tensor SGD step runs libtorch's fused kernel.
    fused: bool,
}

/// Whether new optimisers use the multi-tensor path: yes unless `FA_OPTIM_FOREACH` is `0`.
fn multi_tensor_default() -> bool {
    std::env::var("FA_OPTIM_FOREACH").map_or(true, |value| value.trim() != "0")
}

/// Whether new optimisers run SGD's multi-tensor step in libtorch's fused kernel: only when
/// `FA_OPTIM_FUSED` is `1` (PyTorch's SGD defaults to the unfused multi-tensor step too).
fn fused_default() -> bool {
    std::env::var("FA_OPTIM_FUSED").is_ok_and(|value| value.trim() == "1")
}

impl Optimizer {
    /// An optimiser of the kind, momentum and weight decay `cfg` states.
    ///
    /// `params`: named trainable tensors (name → tensor with `requires_grad`). Under LARS,
    /// biases and batch-norm parameters (1-D tensors) are excluded from weight decay and
    /// adaptation; SGD decays every parameter.
    pub fn new(cfg: &OptimConfig, params: Vec<(String, Tensor)>) -> Optimizer {
        Optimizer::with_settings(cfg.kind, cfg.momentum, cfg.weight_decay, params)
    }

    /// The same as [`Optimizer::new`] without a whole [`OptimConfig`] (the linear probe uses it).
    pub fn with_settings(
        kind: OptimKind,
        momentum: f64,
        weight_decay: f64,
        params: Vec<(String, Tensor)>,
    ) -> Optimizer {
        let slots = params
            .into_iter()
            .map(|(name, parameter)| Slot {
                decayed: match kind {
                    OptimKind::Sgd => true,
                    OptimKind::Lars { .. } => parameter.dim() > 1,
                },
                name,
                parameter,
                buffer: None,
            })
            .collect();
        Optimizer {
            kind,
            momentum,
            weight_decay,
            slots,
            multi_tensor: multi_tensor_default(),
            fused: fused_default(),
        }
    }

    /// Chooses the multi-tensor (`true`) or the per-parameter step (see the module
    /// documentation); the results are the same.
    pub fn set_multi_tensor(&mut self, multi_tensor: bool) {
        self.multi_tensor = multi_tensor;
    }

    /// Whether [`Optimizer::step`] uses the multi-tensor operations.
    pub fn multi_tensor(&self) -> bool {
        self.multi_tensor
    }

    /// Chooses whether SGD's multi-tensor step runs in libtorch's fused kernel (`true`) or
    /// as separate `_foreach_*` operations (`false`, the default unless `FA_OPTIM_FUSED=1`);
    /// LARS always runs the latter. The results agree to rounding (`tests/trainkit_optim.rs`).
    pub fn set_fused(&mut self, fused: bool) {
        self.fused = fused;
    }

    /// Names of the parameters that get weight decay and LARS adaptation, in order.
    pub fn decayed_parameters(&self) -> Vec<&str> {
        self.slots
            .iter()
            .filter(|slot| slot.decayed)
            .map(|slot| slot.name.as_str())
            .collect()
    }

    /// Drops every parameter's gradient, as PyTorch's `zero_grad()` does by default
    /// (`set_to_none=True`): the next backward pass stores its gradients instead of adding
    /// them to zeros, which saves clearing and re-reading every gradient each step. A
    /// parameter the next backward pass does not reach then has no gradient, and
    /// [`Optimizer::step`] leaves it (and its momentum) alone, as PyTorch's SGD does.
    pub fn zero_grad(&mut self) {
        for slot in &mut self.slots {
            native::clear_grad(&slot.parameter);
        }
    }

    /// The global L2 norm of all gradients (the norm of their concatenation): per-tensor
    /// norms in the gradients' dtype, combined in float64.
    /// Parameters without a gradient count as zero.
    pub fn grad_norm(&self) -> f64 {
        let grads: Vec<Tensor> = self
            .slots
            .iter()
            .map(|slot| slot.parameter.grad())
            .filter(Tensor::defined)
            .collect();
        if grads.is_empty() {
            return 0.0;
        }
        // Each gradient's norm in its own dtype by one multi-tensor operation (as PyTorch's
        // `clip_grad_norm_`), then the norm of the norms in float64: one stack and one
        // transfer rather than a device round-trip, or a float64 copy, per parameter.
        let norms = crate::native::foreach_norm(&grads.iter().collect::<Vec<_>>());
        Tensor::stack(&norms, 0)
            .to_kind(Kind::Double)
            .square()
            .sum(Kind::Double)
            .sqrt()
            .double_value(&[])
    }

    /// Computes the global L2 norm of the gradients and, when it exceeds `max_norm`, scales
    /// every gradient by `max_norm / (norm + 1e-6)`, PyTorch's `clip_grad_norm_` rule (the
    /// small constant guards a zero norm). Returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let norm = self.grad_norm();
        let coefficient = max_norm / (norm + 1e-6);
        if coefficient < 1.0 {
            tch::no_grad(|| {
                for slot in &self.slots {
                    let mut grad = slot.parameter.grad();
                    if grad.defined() {
                        let _ = grad.g_mul_scalar_(coefficient);
                    }
                }
            });
        }
        norm
    }

    /// One optimiser step with learning rate `lr` (the caller applies the schedule).
    ///
    /// With `wd` the weight decay (zero for 1-D parameters under LARS) and `μ` the momentum:
    ///
    /// - **SGD**, PyTorch's `torch.optim.SGD` with dampening 0 and no Nesterov:
    ///   `d = g + wd·p; buf = μ·buf + d` (`buf = d` on the first step); `p −= lr·buf`.
    /// - **LARS**, the layer-wise scaling of solo-learn's `LARS` and lightly's `LARS`
    ///   (both descend from NVIDIA apex's LARC): for a parameter with two or more
    ///   dimensions, `d = s · (g + wd·p)` with the local rate
    ///   `s = trust · ‖p‖ / (‖g‖ + wd·‖p‖)`, or `s = 1` when `‖p‖` or `‖g‖` is zero. With
    ///   `clip`, LARC's clipping variant replaces `s` by `min(s / lr, 1)`, so the effective
    ///   rate `lr · s` never exceeds the scheduled `lr` (and `s = 1` when `lr` is zero).
    ///   1-D parameters take the plain SGD direction `d = g`. The momentum buffer then
    ///   accumulates the scaled direction, `buf = μ·buf + d; p −= lr·buf`, as in solo-learn.
    ///   Two small departures, both documented here: solo-learn adds `eps = 1e-8` to the
    ///   denominator (we test the norms for zero instead, which differs by at most a relative
    ///   1e-8 otherwise), and when a norm is zero solo-learn also drops the weight-decay term,
    ///   which only matters for an exactly zero gradient.
    ///
    /// Parameters without a gradient are left alone, buffer included.
    pub fn step(&mut self, lr: f64) {
        if self.multi_tensor {
            self.step_multi_tensor(lr);
        } else {
            self.step_per_parameter(lr);
        }
    }

    /// [`Optimizer::step`] one parameter at a time.
    fn step_per_parameter(&mut self, lr: f64) {
        let momentum = self.momentum;
        let weight_decay = self.weight_decay;
        let kind = self.kind;
        tch::no_grad(|| {
            for slot in &mut self.slots {
                let grad = slot.parameter.grad();
                if !grad.defined() {
                    continue;
                }
                let decay = if slot.decayed { weight_decay } else { 0.0 };
                let mut direction = if decay != 0.0 {
                    &grad + &slot.parameter * decay
                } else {
                    grad.copy()
                };
                if let OptimKind::Lars { trust, clip } = kind {
                    if slot.decayed {
                        let scale = lars_scale(&slot.parameter, &grad, trust, decay, clip, lr);
                        direction *= scale;
                    }
                }
                let update = match &mut slot.buffer {
                    Some(buffer) if momentum != 0.0 => {
                        let _ = buffer.g_mul_scalar_(momentum);
                        let _ = buffer.g_add_(&direction);
                        buffer.shallow_clone()
                    }
                    Some(_) => direction,
                    None => {
                        if momentum != 0.0 {
                            slot.buffer = Some(direction.shallow_clone());
                        }
                        direction
                    }
                };
                let _ = slot.parameter.g_sub_(&(update * lr));
            }
        });
    }

    /// [`Optimizer::step`] with the multi-tensor operations: the same arithmetic as
    /// [`Optimizer::step_per_parameter`], in the same order, over lists of tensors.
    fn step_multi_tensor(&mut self, lr: f64) {
        if self.fused && self.kind == OptimKind::Sgd {
            self.step_fused(lr);
            return;
        }
        let momentum = self.momentum;
        let weight_decay = self.weight_decay;
        let kind = self.kind;
        tch::no_grad(|| {
            let grads: Vec<Option<Tensor>> = self
                .slots
                .iter()
                .map(|slot| Some(slot.parameter.grad()).filter(Tensor::defined))
                .collect();
            let active: Vec<usize> = (0..self.slots.len())
                .filter(|&index| grads[index].is_some())
                .collect();
            let grad_of =
                |index: usize| grads[index].as_ref().expect("active slots have a gradient");
            let decay_of = |index: usize| {
                if self.slots[index].decayed {
                    weight_decay
                } else {
                    0.0
                }
            };
            // d = g + wd·p where wd ≠ 0 (all parameters share one wd), else a copy of g.
            let mut directions: Vec<Option<Tensor>> = self.slots.iter().map(|_| None).collect();
            let (decayed, plain): (Vec<usize>, Vec<usize>) =
                active.iter().partition(|&&index| decay_of(index) != 0.0);
            if !decayed.is_empty() {
                let parameters: Vec<&Tensor> =
                    decayed.iter().map(|&i| &self.slots[i].parameter).collect();
                let products = native::foreach_mul_scalar(&parameters, weight_decay);
                let gradients: Vec<&Tensor> = decayed.iter().map(|&i| grad_of(i)).collect();
                let sums =
                    native::foreach_add_list(&gradients, &products.iter().collect::<Vec<_>>());
                for (&index, sum) in decayed.iter().zip(sums) {
                    directions[index] = Some(sum);
                }
            }
            if !plain.is_empty() {
                let gradients: Vec<&Tensor> = plain.iter().map(|&i| grad_of(i)).collect();
                for (&index, copy) in plain.iter().zip(native::foreach_copy(&gradients)) {
                    directions[index] = Some(copy);
                }
            }
            let direction_of = |directions: &[Option<Tensor>], index: usize| {
                directions[index]
                    .as_ref()
                    .expect("every active slot has a direction")
                    .shallow_clone()
            };
            if let OptimKind::Lars { trust, clip } = kind {
                let adapted: Vec<usize> = active
                    .iter()
                    .copied()
                    .filter(|&index| self.slots[index].decayed)
                    .collect();
                if !adapted.is_empty() {
                    let parameters: Vec<&Tensor> =
                        adapted.iter().map(|&i| &self.slots[i].parameter).collect();
                    let gradients: Vec<&Tensor> = adapted.iter().map(|&i| grad_of(i)).collect();
                    let parameter_norms = Tensor::stack(&native::foreach_norm(&parameters), 0);
                    let grad_norms = Tensor::stack(&native::foreach_norm(&gradients), 0);
                    // Element by element the same operations as `lars_scale`, on a vector.
                    let scales = lars_scale_of_norms(
                        &parameter_norms,
                        &grad_norms,
                        trust,
                        weight_decay,
                        clip,
                        lr,
                    )
                    .unbind(0);
                    let targets: Vec<Tensor> = adapted
                        .iter()
                        .map(|&i| direction_of(&directions, i))
                        .collect();
                    native::foreach_mul_list_(
                        &targets.iter().collect::<Vec<_>>(),
                        &scales.iter().collect::<Vec<_>>(),
                    );
                }
            }
            // The momentum buffers: buf = μ·buf + d where a buffer exists, else buf = d.
            let mut updates: Vec<Tensor> = Vec::with_capacity(active.len());
            let mut accumulated: Vec<(Tensor, Tensor)> = Vec::new();
            for &index in &active {
                let direction = direction_of(&directions, index);
                let slot = &mut self.slots[index];
                match &slot.buffer {
                    Some(buffer) if momentum != 0.0 => {
                        accumulated.push((buffer.shallow_clone(), direction));
                        updates.push(buffer.shallow_clone());
                    }
                    Some(_) => updates.push(direction),
                    None => {
                        if momentum != 0.0 {
                            slot.buffer = Some(direction.shallow_clone());
                        }
                        updates.push(direction);
                    }
                }
            }
            if !accumulated.is_empty() {
                let buffers: Vec<&Tensor> = accumulated.iter().map(|(buffer, _)| buffer).collect();
                let added: Vec<&Tensor> =
                    accumulated.iter().map(|(_, direction)| direction).collect();
                native::foreach_mul_scalar_(&buffers, momentum);
                native::foreach_add_list_(&buffers, &added);
            }
            if !active.is_empty() {
                // p −= lr·buf
                let steps = native::foreach_mul_scalar(&updates.iter().collect::<Vec<_>>(), lr);
                let parameters: Vec<&Tensor> =
                    active.iter().map(|&i| &self.slots[i].parameter).collect();
                native::foreach_sub_list_(&parameters, &steps.iter().collect::<Vec<_>>());
            }
        });
    }

    /// The SGD step in libtorch's fused kernel: one pass over each parameter, its gradient
    /// and its buffer, instead of six multi-tensor operations. The kernel takes one weight
    /// decay and one first-step flag per call, so the parameters go in groups by both.
    fn step_fused(&mut self, lr: f64) {
        let momentum = self.momentum;
        let weight_decay = self.weight_decay;
        tch::no_grad(|| {
            let mut groups: Vec<((bool, bool), Vec<(usize, Tensor)>)> = Vec::new();
            for (index, slot) in self.slots.iter_mut().enumerate() {
                let grad = slot.parameter.grad();
                if !grad.defined() {
                    continue;
                }
                let first = momentum != 0.0 && slot.buffer.is_none();
                if first {
                    // Filled with the first direction by the kernel.
                    slot.buffer = Some(slot.parameter.zeros_like());
                }
                let key = (slot.decayed, first);
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, members)) => members.push((index, grad)),
                    None => groups.push((key, vec![(index, grad)])),
                }
            }
            for ((decayed, first), members) in groups {
                let parameters: Vec<&Tensor> = members
                    .iter()
                    .map(|(i, _)| &self.slots[*i].parameter)
                    .collect();
                let grads: Vec<&Tensor> = members.iter().map(|(_, grad)| grad).collect();
                let buffers: Option<Vec<&Tensor>> = (momentum != 0.0).then(|| {
                    members
                        .iter()
                        .map(|(i, _)| {
                            self.slots[*i]
                                .buffer
                                .as_ref()
                                .expect("a buffer was made above")
                        })
                        .collect()
                });
                native::fused_sgd_(
                    &parameters,
                    &grads,
                    buffers.as_deref(),
                    if decayed { weight_decay } else { 0.0 },
                    momentum,
                    lr,
                    first,
                );
            }
        });
    }

    /// The momentum buffers, named `optim/<parameter name>`; parameters that have not yet
    /// taken a step have none.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .filter_map(|slot| {
                let buffer = slot.buffer.as_ref()?;
                Some((format!("{STATE_PREFIX}{}", slot.name), buffer.copy()))
            })
            .collect()
    }

    /// Restores momentum buffers from checkpoint tensors. Tensors outside `optim/` are
    /// ignored (a checkpoint also holds the model); a buffer whose shape differs from its
    /// parameter's, or one for no known parameter, is refused, and all such problems are
    /// reported together. Parameters with no stored buffer start without one, as before
    /// their first step.
    pub fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<(), CheckpointError> {
        let mut problems = Vec::new();
        let mut found: Vec<Option<Tensor>> = self.slots.iter().map(|_| None).collect();
        for (name, tensor) in tensors {
            let Some(parameter_name) = name.strip_prefix(STATE_PREFIX) else {
                continue;
            };
            match self
                .slots
                .iter()
                .position(|slot| slot.name == parameter_name)
            {
                None => problems.push(TensorMismatch::Unexpected { name: name.clone() }),
                Some(index) => {
                    let expected = self.slots[index].parameter.size();
                    if tensor.size() != expected {
                        problems.push(TensorMismatch::Shape {
                            name: name.clone(),
                            expected,
                            found: tensor.size(),
                        });
                    } else {
                        found[index] = Some(tensor.shallow_clone());
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(CheckpointError::Mismatch { problems });
        }
        for (slot, stored) in self.slots.iter_mut().zip(found) {
            slot.buffer = stored.map(|tensor| {
                tensor
                    .to_device(slot.parameter.device())
                    .to_kind(slot.parameter.kind())
                    .detach()
                    .copy()
            });
        }
        Ok(())
    }
}

/// LARS's local learning-rate factor as a 0-D tensor on the parameter's device, computed
/// without a host round-trip (see [`Optimizer::step`] for the formula).
fn lars_scale(
    parameter: &Tensor,
    grad: &Tensor,
    trust: f64,
    decay: f64,
    clip: bool,
    lr: f64,
) -> Tensor {
    lars_scale_of_norms(&parameter.norm(), &grad.norm(), trust, decay, clip, lr)
}

/// [`lars_scale`] from the norms: 0-D tensors for one parameter, or vectors of one entry per
/// parameter (the multi-tensor path), element by element the same operations.
fn lars_scale_of_norms(
    parameter_norm: &Tensor,
    grad_norm: &Tensor,
    trust: f64,
    decay: f64,
    clip: bool,
    lr: f64,
) -> Tensor {
    let local = (parameter_norm * trust) / (grad_norm + parameter_norm * decay);
    let local = if clip {
        if lr > 0.0 {
            (local / lr).clamp_max(1.0)
        } else {
            local.ones_like()
        }
    } else {
        local
    };
    let both_positive = parameter_norm.gt(0.0).logical_and(&grad_norm.gt(0.0));
    local.where_self(&both_positive, &local.ones_like())
}
