//! `fa`: a compiler and trainer for self-supervised contrastive models with feature augmentation.
//!
//! The pipeline, one module per pass:
//!
//! ```text
//! .fa source ─ syntax ─▶ AST ─ resolve (use, --set, sweeps) ─▶ ir::Model ─ valid ─▶ ValidModel
//!     ValidModel ─ lower::plan ─▶ Plan (pure)      ValidModel ─ lower::torch ─▶ Network (tch)
//!     Network + data ─ train ─▶ run folder ─ eval ─▶ kNN / linear top-1
//! ```
//!
//! Everything up to `lower::plan` builds without libtorch (`--no-default-features`).

pub mod commands;
pub mod diag;
pub mod fmt;
pub mod graph;
pub mod ir;
pub mod lower;
pub mod resolve;
pub mod syntax;
pub mod valid;

pub mod data;
pub mod eval;
pub mod plot;
pub mod train;
