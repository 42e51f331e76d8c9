//! Training: the loop, optimisers, schedules, checkpoints and metrics.

pub mod seed;
