//! How a process learns its place in a data-parallel job: from `fa train --nproc N` (which
//! starts the ranks itself), from torchrun's variables, or from SLURM's under `srun`; and the
//! supervisor that runs N local ranks and ends the job when one of them fails.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use super::{Backend, GroupOptions, Rendezvous};

/// Variables `fa train --nproc` gives the ranks it starts.
pub const RANK_VAR: &str = "FA_RANK";
pub const WORLD_VAR: &str = "FA_WORLD_SIZE";
pub const FILE_VAR: &str = "FA_RENDEZVOUS_FILE";
/// A folder where each rank appends what it trained on per step (a diagnostic; the
/// data-parallel tests read it).
pub const TRACE_VAR: &str = "FA_DIST_TRACE";

/// torchrun's default port, used by SLURM jobs that do not set MASTER_PORT.
const DEFAULT_PORT: u16 = 29500;

/// Who started this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// `fa train --nproc N`.
    Local,
    Torchrun,
    Slurm,
}

/// This process's place in a job of several ranks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub launcher: Launcher,
    pub rank: usize,
    pub world: usize,
    /// The rank among those on this machine (the CUDA device it would take).
    pub local_rank: usize,
    pub rendezvous: Rendezvous,
}

/// A launcher's variables that do not describe a job, or a local rank that failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LaunchError {
    #[error("{name}={value:?} is not a whole number")]
    #[diagnostic(code(fa::usage))]
    NotANumber { name: &'static str, value: String },
    #[error("{launcher:?} gave rank {rank} of a world of {world}")]
    #[diagnostic(code(fa::usage))]
    BadRank {
        launcher: Launcher,
        rank: usize,
        world: usize,
    },
    #[error("{name} is set but {missing} is not")]
    #[diagnostic(
        code(fa::usage),
        help("torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT together")
    )]
    Incomplete {
        name: &'static str,
        missing: &'static str,
    },
    #[error("SLURM's node list {list:?} names no host")]
    #[diagnostic(code(fa::usage))]
    NodeList { list: String },
    #[error("--nproc {nproc} needs at least 2 ranks to start")]
    #[diagnostic(code(fa::usage))]
    TooFewRanks { nproc: usize },
    #[error("cannot start rank {rank}: {source}")]
    #[diagnostic(code(fa::io))]
    Spawn { rank: usize, source: std::io::Error },
    #[error("rank {rank} {how}; the other ranks were stopped")]
    #[diagnostic(
        code(fa::train),
        help("rank {rank}'s own message above says why; checkpoints written before it failed are valid")
    )]
    RankFailed { rank: usize, how: String },
}

fn number(name: &'static str, value: &str) -> Result<usize, LaunchError> {
    value.trim().parse().map_err(|_| LaunchError::NotANumber {
        name,
        value: value.to_string(),
    })
}

impl Launch {
    /// The job this process belongs to according to the environment; `None` for a process
    /// that trains alone (no launcher's variables, or torchrun's or SLURM's world of one).
    pub fn from_env() -> Result<Option<Launch>, LaunchError> {
        Launch::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`Launch::from_env`], reading variables through `var` (tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>, LaunchError> {
        let launch = if let Some(rank) = var(RANK_VAR) {
            let world = var(WORLD_VAR).ok_or(LaunchError::Incomplete {
                name: RANK_VAR,
                missing: WORLD_VAR,
            })?;
            let file = var(FILE_VAR).ok_or(LaunchError::Incomplete {
                name: RANK_VAR,
                missing: FILE_VAR,
            })?;
            let rank = number(RANK_VAR, &rank)?;
            Launch {
                launcher: Launcher::Local,
                rank,
                world: number(WORLD_VAR, &world)?,
                local_rank: rank,
                rendezvous: Rendezvous::File(PathBuf::from(file)),
            }
        } else if let Some(rank) = var("RANK") {
            let need = |missing: &'static str| {
                var(missing).ok_or(LaunchError::Incomplete {
                    name: "RANK",
                    missing,
                })
            };
            let world = need("WORLD_SIZE")?;
            let host = need("MASTER_ADDR")?;
            let port = need("MASTER_PORT")?;
            Launch {
                launcher: Launcher::Torchrun,
                rank: number("RANK", &rank)?,
                world: number("WORLD_SIZE", &world)?,
                local_rank: match var("LOCAL_RANK") {
                    Some(value) => number("LOCAL_RANK", &value)?,
                    None => 0,
                },
                rendezvous: Rendezvous::Tcp {
                    host,
                    port: number("MASTER_PORT", &port)?.min(u16::MAX as usize) as u16,
                    // torchrun's agent already serves a store there (as torch's env://).
                    launcher_serves: var("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True"),
                },
            }
        } else if let (Some(rank), Some(world), true) = (
            var("SLURM_PROCID"),
            var("SLURM_NTASKS"),
            // Only a task started by srun is a rank: a batch script also sees SLURM_PROCID
            // and SLURM_NTASKS, but runs once, and would wait for peers that never come.
            var("SLURM_STEP_ID").is_some() || var("SLURM_STEPID").is_some(),
        ) {
            let host = match var("MASTER_ADDR") {
                Some(host) => host,
                None => {
                    let list = var("SLURM_STEP_NODELIST")
                        .or_else(|| var("SLURM_JOB_NODELIST"))
                        .unwrap_or_default();
                    first_host(&list).ok_or(LaunchError::NodeList { list })?
                }
            };
            let port = match var("MASTER_PORT") {
                Some(port) => number("MASTER_PORT", &port)?.min(u16::MAX as usize) as u16,
                None => DEFAULT_PORT,
            };
            Launch {
                launcher: Launcher::Slurm,
                rank: number("SLURM_PROCID", &rank)?,
                world: number("SLURM_NTASKS", &world)?,
                local_rank: match var("SLURM_LOCALID") {
                    Some(value) => number("SLURM_LOCALID", &value)?,
                    None => 0,
                },
                rendezvous: Rendezvous::Tcp {
                    host,
                    port,
                    launcher_serves: false,
                },
            }
        } else {
            return Ok(None);
        };
        if launch.rank >= launch.world.max(1) {
            return Err(LaunchError::BadRank {
                launcher: launch.launcher,
                rank: launch.rank,
                world: launch.world,
            });
        }
        // A launcher's world of one trains alone; fa's own variables ask for a group even of
        // one rank (the GPU check's smoke test of the NCCL backend on one GPU).
        Ok((launch.world > 1 || launch.launcher == Launcher::Local).then_some(launch))
    }

    /// The options of this rank's process group. Local jobs bind Gloo to loopback; jobs of
    /// several machines let libtorch pick this host's address.
    pub fn group_options(&self, backend: Backend, timeout: Duration) -> GroupOptions {
        GroupOptions {
            backend,
            rendezvous: self.rendezvous.clone(),
            rank: self.rank,
            world: self.world,
            timeout,
            bind: (self.launcher == Launcher::Local).then(|| "127.0.0.1".to_string()),
        }
    }
}

/// The first host of a SLURM node list: `gpu[03-05,09],cpu1` → `gpu03`.
pub fn first_host(list: &str) -> Option<String> {
    let list = list.trim();
    let end = list.find([',', '[']).unwrap_or(list.len());
    let prefix = &list[..end];
    if list[end..].starts_with('[') {
        let inside = &list[end + 1..];
        let first = inside.split([',', '-', ']']).next()?.trim();
        if first.is_empty() {
            return None;
        }
        return Some(format!("{prefix}{first}"));
    }
    (!prefix.is_empty()).then(|| prefix.to_string())
}

/// How long the other ranks get to end on their own after one failed (they notice at their
/// next collective) before they are killed.
const GRACE: Duration = Duration::from_secs(5);

/// How a child process ended, in words: "exited with code 1", "was killed by signal 9 (SIGKILL)".
pub(crate) fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                2 => " (SIGINT)",
                9 => " (SIGKILL)",
                6 => " (SIGABRT)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            return format!("was killed by signal {signal}{name}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with code {code}"),
        None => "ended".to_string(),
    }
}

#[cfg(unix)]
pub(crate) fn signal(child: &Child, number: i32) {
    // SAFETY: kill(2) on a child this process started and has not yet reaped.
    unsafe {
        libc::kill(child.id() as i32, number);
    }
}

/// Runs `nproc` copies of `program args` on this machine as the ranks of one job (FileStore
/// rendezvous in the temporary folder) and waits for them. Each rank gets [`RANK_VAR`],
/// [`WORLD_VAR`] and [`FILE_VAR`]. A stop request (`stop` returns true: SIGINT or SIGTERM
/// to this process) is passed on to every rank once, so they stop together at a step
/// boundary. When a rank fails, the others get [`GRACE`] to notice, then are killed, and the
/// error names the rank. Returns rank 0's exit code (also when rank 0 is the one that failed
/// first, with an exit code of its own: a refused run folder keeps its usage code).
pub fn run_local(
    nproc: usize,
    program: &std::path::Path,
    args: &[OsString],
    stop: impl Fn() -> bool,
) -> Result<i32, LaunchError> {
    if nproc < 2 {
        return Err(LaunchError::TooFewRanks { nproc });
    }
    let file = std::env::temp_dir().join(format!(
        "fa-rendezvous-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let mut children: Vec<Option<Child>> = Vec::new();
    for rank in 0..nproc {
        let mut command = Command::new(program);
        command
            .args(args)
            .env(RANK_VAR, rank.to_string())
            .env(WORLD_VAR, nproc.to_string())
            .env(FILE_VAR, &file);
        #[cfg(unix)]
        {
            // Its own process group: Ctrl-C reaches the supervisor alone, which passes it on
            // once, instead of every rank counting it (a second signal ends a rank at once).
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        match command.spawn() {
            Ok(child) => children.push(Some(child)),
            Err(source) => {
                for child in children.iter_mut().flatten() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(LaunchError::Spawn { rank, source });
            }
        }
    }
    let mut codes: Vec<Option<ExitStatus>> = vec![None; nproc];
    let mut failure: Option<(usize, String)> = None;
    let mut failed_at: Option<Instant> = None;
    let mut forwarded = false;
    while codes.iter().any(Option::is_none) {
        if !forwarded && stop() {
            forwarded = true;
            #[cfg(unix)]
            for child in children.iter().flatten() {
                signal(child, libc::SIGINT);
            }
        }
        for rank in 0..nproc {
            let Some(child) = children[rank].as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                codes[rank] = Some(status);
                children[rank] = None;
                // An interrupted rank exits with an error too; only a rank that fails
                // before any stop request is the job's failure.
                if !status.success() && failure.is_none() && !forwarded {
                    failure = Some((rank, describe(status)));
                    failed_at = Some(Instant::now());
                }
            }
        }
        if failed_at.is_some_and(|at| at.elapsed() > GRACE) {
            for child in children.iter_mut().flatten() {
                let _ = child.kill();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(&file);
    match failure {
        // Rank 0 failed first with an exit code: its message says why (a run folder it
        // refused, bad data), and its code is the job's.
        Some((0, _)) if codes[0].and_then(|status| status.code()).is_some() => {
            Ok(codes[0].and_then(|status| status.code()).unwrap_or(1))
        }
        // Rank 0 refused the run (a usage problem, exit 2) and the others stopped on hearing
        // it, one of them possibly exiting before rank 0 did: rank 0's code is the job's.
        Some(_) if codes[0].and_then(|status| status.code()) == Some(2) => Ok(2),
        Some((rank, how)) => Err(LaunchError::RankFailed { rank, how }),
        None => Ok(codes[0].and_then(|status| status.code()).unwrap_or(1)),
    }
}
