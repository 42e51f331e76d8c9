//! Training: optimisers, learning-rate schedules, checkpoints and metrics records.

pub mod checkpoint;
pub mod metrics;
#[cfg(feature = "torch")]
pub mod optim;
pub mod schedule;
