//! Data-parallel training across processes on libtorch's c10d (Gloo on CPU): the process
//! group and its collectives, how a process learns its rank, and the shared handle the
//! network and the trainer use.
//!
//! ```text
//! launch (--nproc, torchrun, srun) ─▶ Launch ─▶ ProcessGroup (csrc/dist.cpp) ─▶ Collectives
//!                                                                    ├─ trainer: broadcast, gradients, stop flag
//!                                                                    └─ network: gathers (InfoNCE, banks, FA, sync BN)
//! ```
//!
//! docs/distributed.md describes what is global and what is per rank.

mod collectives;
mod group;
pub mod launch;

pub use collectives::Collectives;
pub use group::{GroupOptions, ProcessGroup, Rendezvous, TESTED_KINDS};
pub use launch::{Launch, LaunchError};

/// A collective or rendezvous that failed.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
pub enum DistError {
    #[error("the ranks could not meet at {rendezvous}: {message}")]
    #[diagnostic(
        code(fa::train),
        help("every rank must start within the timeout and reach the rendezvous address")
    )]
    Rendezvous { rendezvous: String, message: String },
    #[error("the {what} failed on this rank: {message}")]
    #[diagnostic(
        code(fa::train),
        help("another rank stopped, lost its connection or fell behind past the timeout; its own message says why")
    )]
    Collective { what: &'static str, message: String },
    #[error("rank {rank} is not below the world size {world}")]
    #[diagnostic(code(fa::usage))]
    BadRank { rank: usize, world: usize },
    #[error("`{value}` contains a NUL byte")]
    #[diagnostic(code(fa::usage))]
    Nul { value: String },
}
