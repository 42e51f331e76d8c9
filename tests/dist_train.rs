//! Data-parallel training on Gloo (`fa train --nproc 2`) against one process with the same
//! global batch: the same parameters, optimiser state, EMA targets and banks after 10 steps;
//! ranks that trained on disjoint slices of each batch with different local gradients; a
//! killed rank that ends the job with a message naming it; Ctrl-C that stops every rank at
//! the same step boundary.
//!
//! The pipeline trains in float32 (parameters, and losses computed in float32 by design:
//! `lower/loss.rs`), so the comparison has a tolerance rather than float64's 1e-10: two ranks
//! sum the gradient, the InfoNCE logits and the batch-norm statistics in another order than
//! one process, and sync batch norm's explicit two-pass statistics differ from libtorch's
//! fused kernel in the last bits. Measured: at most 2.2e-5 absolute (a running variance of
//! about 2), 1e-6 on parameters; the tolerance is 1e-4 relative to each tensor's scale.
//! Integer state (bank indices and pointers, batch counters) must be equal.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fa_base::random::{Key, Purpose};
use tch::{Kind, Tensor};

const TOLERANCE: f64 = 1e-4;

/// The tests of this file run one at a time, whatever `--test-threads` says: each starts
/// several processes of one thread, and together they would overload a 2-core machine past
/// their time limits.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn fa_command(args: &[&str], trace: Option<&Path>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fa"));
    command
        .args(args)
        .current_dir(support::project_root())
        .env("FA_DATA_ROOT", support::data::data_root());
    if let Some(trace) = trace {
        command.env("FA_DIST_TRACE", trace);
    }
    command
}

/// Runs `command`, failing the test after `limit`.
fn run_with_limit(mut command: Command, limit: Duration, what: &str) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fa runs");
    wait_with_limit(child, limit, what)
}

fn wait_with_limit(mut child: Child, limit: Duration, what: &str) -> Output {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("waiting works").is_some() {
            return child.wait_with_output().expect("the output is readable");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().expect("the output is readable");
            panic!(
                "{what} ran past {limit:?}\n--- stderr\n{}",
                support::process::stderr(&output)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn train(file: &str, sets: &[&str], out: &Path, extra: &[&str], trace: Option<&Path>) -> Output {
    let mut args = vec!["train", file, "--no-eval", "--log-format", "plain"];
    args.extend(["--out", support::process::path_text(out)]);
    for set in sets {
        args.extend(["--set", set]);
    }
    args.extend(extra);
    let output = run_with_limit(
        fa_command(&args, trace),
        Duration::from_secs(120),
        &format!("fa {}", args.join(" ")),
    );
    support::process::expect_code(output, 0, "training")
}

fn checkpoint(run: &Path, step: u64) -> Vec<(String, Tensor)> {
    let path = run.join(format!("checkpoints/step-{step:09}.safetensors"));
    let mut tensors = Tensor::read_safetensors(&path)
        .unwrap_or_else(|error| panic!("{} loads: {error}", path.display()));
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// Every tensor of the two runs' checkpoints at `step` agrees: floating-point ones within
/// [`TOLERANCE`] of their scale, integer ones exactly.
fn assert_same_checkpoints(first: &Path, second: &Path, step: u64, what: &str) {
    let (a, b) = (checkpoint(first, step), checkpoint(second, step));
    assert_eq!(
        a.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        b.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "the checkpoints hold the same tensors"
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        if x.is_floating_point() {
            let scale = 1.0 + y.abs().max().double_value(&[]);
            let difference = (x.to_kind(Kind::Double) - y.to_kind(Kind::Double))
                .abs()
                .max()
                .double_value(&[]);
            assert!(
                difference <= TOLERANCE * scale,
                "{what}: {name} differs by {difference:e} (scale {scale})"
            );
        } else {
            assert!(x.equal(y), "{what}: {name} differs");
        }
    }
}

/// One trace line of a rank: the step, the samples it trained on, its local gradient norm.
struct TraceLine {
    step: u64,
    samples: Vec<usize>,
    local_grad_norm: f64,
}

fn trace(folder: &Path, rank: usize) -> Vec<TraceLine> {
    let path = folder.join(format!("rank{rank}.jsonl"));
    std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            TraceLine {
                step: value["step"].as_u64().unwrap(),
                samples: value["samples"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect(),
                local_grad_norm: value["local_grad_norm"].as_f64().unwrap(),
            }
        })
        .collect()
}

/// Trains `file` for `steps` steps on 2 processes (sync batch norm) and on one, and
/// compares everything the checkpoints hold; checks the ranks' traces against the data
/// order one process follows.
fn two_processes_match_one(
    file: &str,
    sets: &[&str],
    steps: u64,
    seed: u64,
    batch: usize,
    accumulate: usize,
) {
    let _serial = serial();
    let folder = tempfile::tempdir().unwrap();
    let (two, one, traces) = (
        folder.path().join("two"),
        folder.path().join("one"),
        folder.path().join("trace"),
    );
    std::fs::create_dir(&traces).unwrap();
    let max_steps = steps.to_string();
    let limit = ["--max-steps", max_steps.as_str()];
    let mut parallel = limit.to_vec();
    parallel.extend(["--nproc", "2", "--sync-batch-norm"]);
    train(file, sets, &two, &parallel, Some(&traces));
    train(file, sets, &one, &limit, None);

    assert_same_checkpoints(&two, &one, steps, file);

    // The data order one process follows: the epoch's permutation, consecutive global
    // batches of `batch × accumulate`; rank r takes the r-th half of each micro-batch.
    let images = 1024;
    let per_step = batch * accumulate;
    let steps_per_epoch = (images / per_step) as u64;
    let ranks = [trace(&traces, 0), trace(&traces, 1)];
    for rank in &ranks {
        assert_eq!(rank.len() as u64, steps, "one trace line per step");
    }
    for step in 0..steps {
        let epoch = step / steps_per_epoch;
        let order = Key::new(seed, Purpose::DataOrder, epoch)
            .stream(0)
            .permutation(images);
        let start = (step % steps_per_epoch) as usize * per_step;
        let global = &order[start..start + per_step];
        let (zero, one) = (&ranks[0][step as usize], &ranks[1][step as usize]);
        assert_eq!((zero.step, one.step), (step, step));
        for (rank, line) in [zero, one].into_iter().enumerate() {
            let expected: Vec<usize> = global
                .chunks(batch)
                .flat_map(|micro| micro[rank * batch / 2..(rank + 1) * batch / 2].to_vec())
                .collect();
            assert_eq!(
                line.samples, expected,
                "rank {rank}'s samples at step {step}"
            );
        }
        let zero_set: BTreeSet<_> = zero.samples.iter().collect();
        assert!(
            one.samples.iter().all(|s| !zero_set.contains(s)),
            "the ranks' samples overlap at step {step}"
        );
        assert_eq!(zero.samples.len() + one.samples.len(), per_step);
        // Different data, different local gradients (a rank computing the whole batch
        // would have the same gradient as the other).
        let (g0, g1) = (zero.local_grad_norm, one.local_grad_norm);
        assert!(
            (g0 - g1).abs() > 1e-6 * g0.max(g1),
            "the local gradients agree at step {step}: {g0} and {g1}"
        );
    }
}

/// InfoNCE with NN feature augmentation: negatives gathered from both ranks with the
/// positive of local row i at global row rank·32 + i, a bank both ranks fill with the global
/// batch. No accumulation here: a nearest-neighbour lookup is discontinuous, and over many
/// queries float32 rounding (even one process's thread count) eventually flips a near-tie,
/// after which runs drift apart; 10 steps of 64 queries stay clear of that for this seed.
#[test]
fn infonce_with_a_bank_matches_one_process() {
    two_processes_match_one("tests/train/tiny.fa", &[], 10, 3, 64, 1);
}

/// BYOL with an EMA target, symmetric terms and batch-noise mixup partners drawn from the
/// global batch, under LARS with two micro-batches accumulated per step.
#[test]
fn byol_with_ema_lars_and_accumulation_matches_one_process() {
    two_processes_match_one(
        "tests/train/tiny_byol.fa",
        &["optim.method=lars(trust: 0.02)", "optim.accumulate=2"],
        10,
        5,
        32,
        2,
    );
}

/// A run trained on two processes continues on one, says so, and ends where one process
/// alone ends.
#[test]
fn a_two_process_run_resumes_on_one_process() {
    let _serial = serial();
    let folder = tempfile::tempdir().unwrap();
    let (resumed, one) = (folder.path().join("resumed"), folder.path().join("one"));
    let file = "tests/train/tiny_byol.fa";
    // Sync batch norm from the file's settings this time, rather than the flag.
    let first = train(
        file,
        &["train.sync_batch_norm=true"],
        &resumed,
        &["--max-steps", "4", "--nproc", "2"],
        None,
    );
    let stderr = support::process::stderr(&first);
    assert!(
        stderr.contains("each rank takes 16 of the global batch of 32; sync batch norm on"),
        "fa train says sync batch norm is on: {stderr}"
    );
    let output = train(file, &[], &resumed, &["--max-steps", "8", "--resume"], None);
    let stderr = support::process::stderr(&output);
    assert!(
        stderr.contains("written by a run on 2 process(es); continuing on 1"),
        "{stderr}"
    );
    train(file, &[], &one, &["--max-steps", "8"], None);
    assert_same_checkpoints(&resumed, &one, 8, "resumed on another world size");
}

/// A parallel run stopped and resumed on the same number of processes ends bit for bit where
/// the uninterrupted run ends: every draw is keyed by (seed, step, sample), the checkpoint
/// holds every tensor (banks, EMA target, optimiser state), and two ranks sum in a fixed
/// order.
#[test]
fn a_parallel_run_resumes_bit_for_bit_on_the_same_world_size() {
    let _serial = serial();
    let folder = tempfile::tempdir().unwrap();
    let (resumed, straight) = (
        folder.path().join("resumed"),
        folder.path().join("straight"),
    );
    let file = "tests/train/tiny_byol.fa";
    let parallel = |steps: &'static str, resume: bool| {
        let mut extra = vec!["--max-steps", steps, "--nproc", "2", "--sync-batch-norm"];
        if resume {
            extra.push("--resume");
        }
        extra
    };
    train(file, &[], &resumed, &parallel("4", false), None);
    let output = train(file, &[], &resumed, &parallel("8", true), None);
    let stderr = support::process::stderr(&output);
    assert!(
        !stderr.contains("continuing on"),
        "same world size: {stderr}"
    );
    train(file, &[], &straight, &parallel("8", false), None);
    let (a, b) = (checkpoint(&resumed, 8), checkpoint(&straight, 8));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.equal(y), "{name} differs after the resume");
    }
}

/// The backend follows the device unless `--dist-backend` says otherwise, and a choice that
/// cannot work is refused before any rank starts.
#[test]
fn nccl_on_the_cpu_is_refused_before_any_rank_starts() {
    let folder = tempfile::tempdir().unwrap();
    let run = folder.path().join("run");
    let args = [
        "train",
        "tests/train/tiny.fa",
        "--nproc",
        "2",
        "--device",
        "cpu",
        "--dist-backend",
        "nccl",
        "--out",
        support::process::path_text(&run),
    ];
    let output = run_with_limit(
        fa_command(&args, None),
        Duration::from_secs(60),
        "nccl on cpu",
    );
    let stderr = support::process::stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--dist-backend nccl needs CUDA tensors"),
        "{stderr}"
    );
    assert!(!run.exists(), "nothing was written");
}

/// When rank 0 refuses the run folder (a run is already there), every rank stops at once
/// and the job keeps rank 0's usage exit code.
#[test]
fn a_refused_run_folder_stops_every_rank() {
    let _serial = serial();
    let folder = tempfile::tempdir().unwrap();
    let run = folder.path().join("run");
    let parallel = ["--max-steps", "1", "--nproc", "2"];
    train("tests/train/tiny.fa", &[], &run, &parallel, None);
    let mut args = vec![
        "train",
        "tests/train/tiny.fa",
        "--no-eval",
        "--out",
        support::process::path_text(&run),
    ];
    args.extend(parallel);
    let output = run_with_limit(
        fa_command(&args, None),
        Duration::from_secs(60),
        "the refused job",
    );
    let stderr = support::process::stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("already holds a run"), "{stderr}");
    assert!(
        stderr.contains("rank 1 stopped: rank 0 could not start the run"),
        "{stderr}"
    );
}

/// The process ids of the ranks `pid` started, by rank.
fn ranks_of(pid: u32) -> Vec<(usize, u32)> {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let mut ranks: Vec<(usize, u32)> = children
        .split_whitespace()
        .filter_map(|child| {
            let child: u32 = child.parse().ok()?;
            let environ = std::fs::read(format!("/proc/{child}/environ")).ok()?;
            let rank = environ
                .split(|&b| b == 0)
                .find_map(|var| var.strip_prefix(b"FA_RANK="))?;
            Some((std::str::from_utf8(rank).ok()?.parse().ok()?, child))
        })
        .collect();
    ranks.sort();
    ranks
}

/// Starts a long two-rank run and waits until both ranks have taken `steps` steps.
fn start_long_run(out: &Path, traces: &Path, steps: usize) -> Child {
    start_long_run_with(out, traces, steps, &[])
}

fn start_long_run_with(out: &Path, traces: &Path, steps: usize, extra: &[&str]) -> Child {
    let mut args = vec![
        "train",
        "tests/train/tiny.fa",
        "--no-eval",
        "--log-format",
        "quiet",
        "--set",
        "train.epochs=1000",
        "--nproc",
        "2",
        "--out",
        support::process::path_text(out),
    ];
    args.extend(extra);
    let child = fa_command(&args, Some(traces))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fa runs");
    let started = Instant::now();
    while trace(traces, 0).len() < steps || trace(traces, 1).len() < steps {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the ranks did not start training"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// Starts a long two-rank run in `folder/run` (traces in `folder/trace`), waits for `steps`
/// steps, sends `signal` to rank 1, and returns the job's output and how long it took to end.
fn signal_rank_one(
    folder: &Path,
    steps: usize,
    extra: &[&str],
    signal: i32,
    limit: Duration,
) -> (Output, Duration) {
    let traces = folder.join("trace");
    std::fs::create_dir(&traces).unwrap();
    let child = start_long_run_with(&folder.join("run"), &traces, steps, extra);
    let ranks = ranks_of(child.id());
    assert_eq!(ranks.len(), 2, "two ranks under the supervisor: {ranks:?}");
    let signalled_at = Instant::now();
    // SAFETY: kill(2) on a process this test's child started.
    unsafe {
        libc::kill(ranks[1].1 as i32, signal);
    }
    let output = wait_with_limit(child, limit, "the job after the signal");
    // The supervisor ends the ranks; make sure nothing is left behind either way.
    // SAFETY: as above (the process may be gone already).
    unsafe {
        libc::kill(ranks[1].1 as i32, libc::SIGKILL);
    }
    (output, signalled_at.elapsed())
}

#[test]
fn a_killed_rank_ends_the_job_naming_it() {
    let _serial = serial();
    let folder = tempfile::tempdir().unwrap();
    let (output, elapsed) = signal_rank_one(
        folder.path(),
        20,
        &[],
        libc::SIGKILL,
        Duration::from_secs(60),
    );
    let stderr = support::process::stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("rank 1 was killed by signal 9 (SIGKILL)"),
        "the message names the rank: {stderr}"
    );
    assert!(elapsed < Duration::from_secs(30));
    // The checkpoint of the first epoch (16 steps) was written before and stays valid.
    checkpoint(&folder.path().join("run"), 16);
}

/// A rank that stops answering (SIGSTOP: alive, but never reaching the next collective) is
/// named by the rank that waited for it, once the timeout has passed.
#[test]
fn a_stalled_rank_is_named_by_the_rank_that_waited_for_it() {
    let _serial = serial();
    let folder = tempfile::tempdir().unwrap();
    let (output, elapsed) = signal_rank_one(
        folder.path(),
        5,
        &["--dist-timeout", "4"],
        libc::SIGSTOP,
        Duration::from_secs(90),
    );
    let stderr = support::process::stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    // The message as one line, without the report's wrapping and margin.
    let flat = stderr
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        flat.contains("Timed out")
            && flat.contains(
                "rank 1 never reached this collective (it stalled or lost its connection)"
            ),
        "the waiting rank names the stalled one: {stderr}"
    );
    // The timeout (4 s), the wait for other waiting ranks (10 s) and the supervisor's grace.
    assert!(elapsed < Duration::from_secs(45));
}

#[test]
fn ctrl_c_stops_every_rank_at_the_same_step() {
    let _serial = serial();
    let folder = tempfile::tempdir().unwrap();
    let traces = folder.path().join("trace");
    std::fs::create_dir(&traces).unwrap();
    let run: PathBuf = folder.path().join("run");
    let child = start_long_run(&run, &traces, 3);
    // SAFETY: kill(2) on this test's child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let output = wait_with_limit(child, Duration::from_secs(60), "the interrupted job");
    let stderr = support::process::stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let (zero, one) = (trace(&traces, 0), trace(&traces, 1));
    let last = zero.last().unwrap().step;
    assert_eq!(
        last,
        one.last().unwrap().step,
        "the ranks stopped at one step"
    );
    assert!(stderr.contains("stopped by SIGINT"), "{stderr}");
    // One checkpoint at the step boundary where they stopped.
    checkpoint(&run, last + 1);
}
