//! The `fa` command line. `fa` serves the front-end commands itself and never loads
//! libtorch; the commands that need it run in the sibling executable `fa-torch`, which
//! parses the same flags ([`cli`]).
//!
//! ```text
//! fa check|graph|fmt|expand|lower ─▶ front (fa_lang)
//! fa train|eval|sweep|export|plot|augment|doctor ─exec─▶ fa-torch ─▶ fa_torch::commands
//! ```

pub mod backend;
pub mod cli;
pub mod front;
