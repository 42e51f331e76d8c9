//! Training: the loop, checkpoints, metrics, sweep tables and mixed precision.

pub mod checkpoint;
pub mod metrics;
pub mod precision;
pub mod run;
pub mod table;
