//! `fa sweep --devices`: the runs of a sweep that are not finished, trained by child
//! processes, at most one per device at a time (a device may be named twice: `cpu,cpu`
//! trains two cells on the CPU at once, each with its share of the cores).
//!
//! Each child is `fa train FILE --cell CELL --set train.seed=S --out RUN` with the sweep's own
//! `--set` values, so a run is exactly the one the serial sweep would train and later sweeps
//! recognise it. Its output goes to `OUT/logs/<cell>-seed-<k>.log`. A run that fails does not
//! stop the others; the sweep reports every failure at the end. Ctrl-C or SIGTERM reaches the
//! sweep alone (the children run in their own process groups); it passes the stop on to each
//! running child once, which checkpoints at its next step, and starts no new run.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tch::Device;

use super::super::{device, folder_name, CommandError};
use crate::dist::launch::{describe, signal};
use fa_lang::resolve::Override;

/// One cell × seed to train.
pub(super) struct Job {
    pub cell: String,
    pub seed: u64,
    /// `train.seed` of this run: the file's seed plus the seed index.
    pub train_seed: u64,
    pub run: PathBuf,
    /// The folder holds a checkpoint of this run to continue.
    pub resume: bool,
}

/// What every child shares: the sweep file, its `--set` values, the data and the log folder.
pub(super) struct Command<'a> {
    pub file: &'a Path,
    pub overrides: &'a [Override],
    pub data_root: Option<&'a Path>,
    pub logs: &'a Path,
}

/// The devices of `--devices`: `cpu`, `cuda`, `cuda:N`, or a bare index `N` for `cuda:N`.
pub(super) fn parse_devices(names: &[String]) -> Result<Vec<Device>, CommandError> {
    names
        .iter()
        .map(|name| {
            let name = name.trim();
            let spelled = match name.parse::<usize>() {
                Ok(index) => format!("cuda:{index}"),
                Err(_) => name.to_string(),
            };
            if name.is_empty() || spelled == "auto" {
                return Err(CommandError::BadDevices {
                    device: name.to_string(),
                });
            }
            // A CUDA device that is not there keeps its own message (how many there are).
            device(&spelled).map_err(|error| {
                let cuda = spelled == "cuda"
                    || spelled
                        .strip_prefix("cuda:")
                        .is_some_and(|index| index.parse::<usize>().is_ok());
                if cuda {
                    error
                } else {
                    CommandError::BadDevices {
                        device: name.to_string(),
                    }
                }
            })
        })
        .collect()
}

fn device_argument(device: Device) -> String {
    match device {
        Device::Cuda(index) => format!("cuda:{index}"),
        _ => "cpu".to_string(),
    }
}

/// The arguments of the child that trains `job`.
fn arguments(job: &Job, device: Device, command: &Command) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["train".into(), command.file.into()];
    for Override { key, value } in command.overrides {
        args.push("--set".into());
        args.push(format!("{key}={value}").into());
    }
    args.push("--set".into());
    args.push(format!("train.seed={}", job.train_seed).into());
    args.extend(
        [
            "--cell",
            &job.cell,
            "--device",
            &device_argument(device),
            "--log-format",
            "plain",
            if job.resume {
                "--resume"
            } else {
                // This sweep's own run, stopped before its first checkpoint: start again.
                "--overwrite"
            },
        ]
        .map(OsString::from),
    );
    args.push("--out".into());
    args.push(job.run.clone().into());
    if let Some(root) = command.data_root {
        args.push("--data-root".into());
        args.push(root.into());
    }
    args
}

/// A job running on a worker.
struct Running {
    job: usize,
    child: Child,
    started: Instant,
}

/// Trains `jobs` on `devices`, one child per device at a time, and waits for all of them.
pub(super) fn run(jobs: &[Job], devices: &[Device], command: &Command) -> Result<(), CommandError> {
    if jobs.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(command.logs).map_err(|source| CommandError::Write {
        path: command.logs.to_path_buf(),
        source,
    })?;
    let program = std::env::current_exe().map_err(|source| CommandError::Io {
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    // The CPU workers share the cores; each CUDA worker has its GPU.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu_workers = devices.iter().filter(|d| !d.is_cuda()).count().max(1);
    let threads = (cores / cpu_workers).max(1);
    eprintln!(
        "sweep: {} run(s) to train on {} worker(s): {}",
        jobs.len(),
        devices.len(),
        devices
            .iter()
            .map(|&d| device_argument(d))
            .collect::<Vec<_>>()
            .join(", ")
    );
    crate::train::interrupt::install();
    let mut slots: Vec<Option<Running>> = devices.iter().map(|_| None).collect();
    let mut next = 0;
    let mut failures: Vec<String> = Vec::new();
    let mut stopped: Option<(&'static str, i32)> = None;
    let mut running_at_stop = 0;
    loop {
        if stopped.is_none() {
            if let Some(signal_taken) = crate::train::interrupt::requested() {
                stopped = Some(signal_taken);
                running_at_stop = slots.iter().flatten().count();
                for running in slots.iter().flatten() {
                    signal(&running.child, libc::SIGINT);
                }
            }
        }
        for (worker, slot) in slots.iter_mut().enumerate() {
            if let Some(running) = slot {
                let Ok(Some(status)) = running.child.try_wait() else {
                    continue;
                };
                let job = &jobs[running.job];
                let minutes = running.started.elapsed().as_secs_f64() / 60.0;
                if status.success() {
                    eprintln!(
                        "{}: seed {} done on {} in {minutes:.1} min",
                        job.cell,
                        job.seed,
                        device_argument(devices[worker])
                    );
                } else if stopped.is_none() {
                    let log = log_path(command.logs, job);
                    eprintln!(
                        "{}: seed {} failed ({}); log: {}",
                        job.cell,
                        job.seed,
                        describe(status),
                        log.display()
                    );
                    failures.push(format!(
                        "  {} seed {}: {} (log: {})",
                        job.cell,
                        job.seed,
                        describe(status),
                        log.display()
                    ));
                }
                *slot = None;
            }
            if slot.is_none() && stopped.is_none() && next < jobs.len() {
                let job = &jobs[next];
                let log = log_path(command.logs, job);
                let child = spawn(&program, job, devices[worker], threads, command, &log)?;
                eprintln!(
                    "{}: seed {} started on {} (log: {})",
                    job.cell,
                    job.seed,
                    device_argument(devices[worker]),
                    log.display()
                );
                *slot = Some(Running {
                    job: next,
                    child,
                    started: Instant::now(),
                });
                next += 1;
            }
        }
        let busy = slots.iter().filter(|slot| slot.is_some()).count();
        if busy == 0 && (next == jobs.len() || stopped.is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some((signal, number)) = stopped {
        return Err(CommandError::SweepInterrupted {
            signal,
            number,
            running: running_at_stop,
        });
    }
    if !failures.is_empty() {
        return Err(CommandError::SweepRunsFailed {
            failed: failures.len(),
            total: jobs.len(),
            details: failures.join("\n"),
        });
    }
    Ok(())
}

fn log_path(logs: &Path, job: &Job) -> PathBuf {
    logs.join(format!("{}-seed-{}.log", folder_name(&job.cell), job.seed))
}

/// Starts the child that trains `job` on `device`, its output appended to `log`.
fn spawn(
    program: &Path,
    job: &Job,
    device: Device,
    threads: usize,
    command: &Command,
    log: &Path,
) -> Result<Child, CommandError> {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| CommandError::Write {
                path: log.to_path_buf(),
                source,
            })
    };
    let mut child = std::process::Command::new(program);
    child
        .args(arguments(job, device, command))
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(open()?);
    if !device.is_cuda() {
        child.env("OMP_NUM_THREADS", threads.to_string());
    }
    #[cfg(unix)]
    {
        // Its own process group: Ctrl-C reaches the sweep alone, which passes it on once.
        use std::os::unix::process::CommandExt;
        child.process_group(0);
    }
    child
        .spawn()
        .map_err(|source| CommandError::SweepSpawn { source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_read_as_cpu_or_cuda() {
        assert_eq!(
            parse_devices(&["cpu".into(), " cpu ".into()]).unwrap(),
            [Device::Cpu, Device::Cpu]
        );
        // Without a GPU, `0` is CUDA device 0, which this machine lacks: refused either way.
        if !tch::Cuda::is_available() {
            assert!(matches!(
                parse_devices(&["0".into()]),
                Err(CommandError::Device(_))
            ));
        }
        for bad in ["gpu", "", "auto", "cuda:x"] {
            assert!(
                matches!(
                    parse_devices(&[bad.into()]),
                    Err(CommandError::BadDevices { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_child_trains_exactly_the_sweeps_run() {
        let job = Job {
            cell: "m[fa=nn]".into(),
            seed: 2,
            train_seed: 7,
            run: PathBuf::from("out/m_fa=nn_/seed-2"),
            resume: false,
        };
        let overrides = [Override {
            key: "data.batch".into(),
            value: "64".into(),
        }];
        let command = Command {
            file: Path::new("m.fa"),
            overrides: &overrides,
            data_root: Some(Path::new("/data")),
            logs: Path::new("out/logs"),
        };
        let words: Vec<String> = arguments(&job, Device::Cpu, &command)
            .into_iter()
            .map(|word| word.into_string().unwrap())
            .collect();
        assert_eq!(
            words.join(" "),
            "train m.fa --set data.batch=64 --set train.seed=7 --cell m[fa=nn] --device cpu \
             --log-format plain --overwrite --out out/m_fa=nn_/seed-2 --data-root /data"
        );
        let resumed = Job {
            resume: true,
            ..job
        };
        let words = arguments(&resumed, Device::Cuda(1), &command);
        assert!(words.contains(&OsString::from("--resume")));
        assert!(words.contains(&OsString::from("cuda:1")));
    }
}
