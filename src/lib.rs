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

/// Restores the default action of SIGPIPE, which the Rust runtime ignores: a command whose
/// output is piped into a reader that stops early (`fa graph m.fa | head`) then ends quietly,
/// as other command-line tools do, instead of panicking on the failed write. Both
/// executables call it first thing.
pub fn exit_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_DFL at start-up, before any thread
    // exists, has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
