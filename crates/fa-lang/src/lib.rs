//! The front end of fa: a `.fa` file to a validated model, with no libtorch.
//!
//! ```text
//! .fa source ─ syntax ─▶ AST ─ resolve (use, --set, sweeps) ─▶ ir::Model ─ valid ─▶ ValidModel
//!     ValidModel ─ plan ─▶ Plan (what lowering builds)     ValidModel ─ graph ─▶ DOT / text
//! ```

pub mod diag;
pub mod driver;
pub mod fmt;
pub mod graph;
pub mod ir;
pub mod plan;
pub mod resolve;
pub mod syntax;
pub mod testing;
pub mod valid;

pub use fa_base::source;
