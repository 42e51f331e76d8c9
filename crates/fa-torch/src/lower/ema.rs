//! EMA target networks: momentum copies of chains of online modules, updated after each step.

use tch::Tensor;

use super::layers::Layer;
use super::Network;
use crate::schedule::ema_momentum;

/// An EMA copy of a chain of online modules.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) chain: Vec<Layer>,
    pub(super) base_momentum: f64,
    pub(super) final_momentum: f64,
    /// (online, target) parameter pairs, averaged after each optimiser step.
    pub(super) parameters: Vec<(Tensor, Tensor)>,
    /// (online, target) buffer pairs, copied after each optimiser step.
    pub(super) buffers: Vec<(Tensor, Tensor)>,
}

impl Network {
    /// The EMA update after optimiser step k (from 0) of K; `progress` = k / K, BYOL's.
    /// Parameters are averaged with momentum `m = final − (final − base)(cos(π·progress)+1)/2`,
    /// buffers copied. Returns the momentum of the first target (`None` without EMA).
    pub fn update_targets(&mut self, progress: f64) -> Option<f64> {
        let progress = progress.clamp(0.0, 1.0);
        let mut used = None;
        tch::no_grad(|| {
            for target in self.targets.values() {
                let momentum = ema_momentum(target.base_momentum, target.final_momentum, progress);
                for (online, copy) in &target.parameters {
                    let mut copy = copy.shallow_clone();
                    let _ = copy.g_mul_scalar_(momentum);
                    let _ = copy.g_add_(&(online.detach() * (1.0 - momentum)));
                }
                for (online, copy) in &target.buffers {
                    copy.shallow_clone().copy_(online);
                }
                used.get_or_insert(momentum);
            }
        });
        used
    }
}
