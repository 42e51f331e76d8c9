//! The libtorch backend of fa: a [`ValidModel`](fa_lang::valid::ValidModel) lowered onto tch
//! modules, the data and its augmentation on the device, training, evaluation, and the
//! commands of the `fa-torch` executable.
//!
//! ```text
//! ValidModel ─ lower ─▶ Network ─┐
//! data (readers, uint8) ─ augment on device ─▶ train ─▶ run folder ─ eval ─▶ kNN / linear top-1
//! ```

pub mod commands;
pub mod data;
pub mod dist;
pub mod eval;
pub mod export;
pub mod host_memory;
pub mod lower;
pub mod native;
pub mod optim;
pub mod plot;
pub mod report;
pub mod schedule;
pub mod train;
