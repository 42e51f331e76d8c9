//! Data-parallel training across processes on libtorch's c10d (Gloo on CPU, NCCL on CUDA): the process
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
pub use group::{nccl_available, Backend, GroupOptions, ProcessGroup, Rendezvous, TESTED_KINDS};
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

/// `fa doctor`'s NCCL line: whether this build has the backend, and whether a GPU is here to
/// use it.
fn nccl_line() -> String {
    match nccl_available() {
        Err(why) => format!("not built into this fa: {why}"),
        Ok(()) if tch::Cuda::is_available() => format!(
            "built in; {} CUDA device(s) here (fa train --device cuda --nproc N, one GPU per rank)",
            tch::Cuda::device_count()
        ),
        Ok(()) => "built in; no CUDA device here to use it".to_string(),
    }
}

/// `fa doctor`'s lines on the distributed backends: Gloo checked by forming a one-rank group
/// and all-reducing through it; NCCL, whether it is built in and has a GPU.
pub fn doctor() -> String {
    let folder = std::env::temp_dir().join(format!("fa-doctor-{}", std::process::id()));
    let gloo = ProcessGroup::new(&GroupOptions {
        backend: Backend::Gloo,
        rendezvous: Rendezvous::File(folder.clone()),
        rank: 0,
        world: 1,
        timeout: std::time::Duration::from_secs(10),
        bind: Some("127.0.0.1".into()),
    })
    .and_then(|group| {
        let value = tch::Tensor::from_slice(&[1.0f32]);
        group.all_reduce_sum(&value)?;
        Ok(())
    });
    let _ = std::fs::remove_file(&folder);
    let gloo = match gloo {
        Ok(()) => {
            "available (a one-rank group formed and all-reduced; fa train --nproc, torchrun, srun)"
                .to_string()
        }
        Err(error) => format!("not working: {error}"),
    };
    [
        format!("gloo (CPU):        {gloo}"),
        format!("nccl (CUDA):       {}", nccl_line()),
    ]
    .join("\n")
}
