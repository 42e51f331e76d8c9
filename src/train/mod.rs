//! Training: the loop, optimisers, learning-rate schedules, checkpoints, metrics and tables.

pub mod checkpoint;
pub mod metrics;
#[cfg(feature = "torch")]
pub mod optim;
#[cfg(feature = "torch")]
pub mod precision;
#[cfg(feature = "torch")]
pub mod run;
pub mod schedule;
pub mod seed;
pub mod table;
