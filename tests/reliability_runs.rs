//! What `fa train` promises about its run folder when runs collide, are interrupted or find
//! an earlier run's leftovers (docs/reliability.md): one trainer per folder, a fresh run never
//! mixes with an old one, a signal stops at a step boundary with a checkpoint, and stale
//! temporary files are cleaned. Runs use Fashion-MNIST from Debian and skip without it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn command(out: &Path, root: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fa"));
    command
        .args([
            "train",
            "tests/train/tiny.fa",
            "--no-eval",
            "--device",
            "cpu",
        ])
        .args(["--log-format", "plain", "--data-root"])
        .arg(root)
        .arg("--out")
        .arg(out)
        .args(extra)
        .current_dir(repo());
    command
}

fn run(out: &Path, root: &Path, extra: &[&str]) -> Output {
    command(out, root, extra).output().expect("fa runs")
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A trainer that runs for minutes unless stopped, started in the background.
fn long_trainer(out: &Path, root: &Path) -> Child {
    command(out, root, &["--set", "train.epochs=1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fa starts")
}

/// Waits until the trainer in `out` has taken a step (its metrics file has a line).
fn wait_for_steps(out: &Path, child: &mut Child) {
    let started = Instant::now();
    loop {
        let lines = std::fs::read_to_string(out.join("metrics.jsonl"))
            .map(|text| text.lines().count())
            .unwrap_or(0);
        if lines >= 2 {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the trainer ended early: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no step in two minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

fn checkpoint_steps(out: &Path) -> Vec<u64> {
    fa_torch::train::checkpoint::checkpoints(out)
        .into_iter()
        .map(|(step, _)| step)
        .collect()
}

#[test]
fn a_second_trainer_is_refused_and_sigint_stops_the_first_with_a_checkpoint_and_the_resume_command()
{
    let root = &support::data::fashion_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut first = long_trainer(&out, root);
    wait_for_steps(&out, &mut first);

    let second = run(&out, root, &["--max-steps", "1"]);
    assert_eq!(second.status.code(), Some(2), "{}", text(&second));
    let message = text(&second);
    assert!(
        message.contains("in use by another trainer")
            && message.contains(&format!("process {}", first.id())),
        "names the holder: {message}"
    );

    signal(&first, "INT");
    let output = first.wait_with_output().unwrap();
    let message = text(&output);
    assert_eq!(output.status.code(), Some(130), "{message}");
    assert!(message.contains("stopped by SIGINT"), "{message}");
    assert!(
        message.contains("continue it with: fa train tests/train/tiny.fa")
            && message.contains("--resume"),
        "{message}"
    );
    // Epoch ends may have written checkpoints before the signal (how many depends on the
    // machine's speed); the stop writes one at the last step it took.
    let saved = checkpoint_steps(&out);
    let metrics = fa_torch::train::metrics::read_metrics(&out.join("metrics.jsonl")).unwrap();
    let last_step = metrics
        .iter()
        .filter_map(|record| match record {
            fa_torch::train::metrics::Record::Step { step, .. } => Some(*step),
            _ => None,
        })
        .max();
    assert!(last_step.is_some(), "steps were recorded");
    assert_eq!(
        saved.last().copied(),
        last_step,
        "the latest checkpoint holds every recorded step: {saved:?}"
    );
}

#[test]
fn a_second_signal_stops_at_once() {
    let root = &support::data::fashion_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut trainer = long_trainer(&out, root);
    wait_for_steps(&out, &mut trainer);
    signal(&trainer, "TERM");
    signal(&trainer, "TERM");
    let output = trainer.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(143), "{}", text(&output));
}

#[test]
fn a_run_stopped_before_its_first_checkpoint_is_refused_then_replaced_with_overwrite() {
    let root = &support::data::fashion_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir_all(&out).unwrap();
    // What a trainer killed before its first checkpoint leaves: metrics and the model.
    std::fs::write(out.join("metrics.jsonl"), "{\"kind\":\"step\",\"step\":1,\"epoch\":0,\"loss\":9.0,\"lr\":0.1,\"images_per_s\":1.0}\n{\"kind\":\"st").unwrap();
    std::fs::write(out.join("model.json"), "{}").unwrap();

    let fresh = run(&out, root, &["--max-steps", "1"]);
    let message = text(&fresh);
    assert_eq!(fresh.status.code(), Some(2), "{message}");
    assert!(
        message.contains("already holds a run (metrics.jsonl, model.json)")
            && message.contains("--overwrite"),
        "{message}"
    );
    let resumed = run(&out, root, &["--max-steps", "1", "--resume"]);
    assert!(
        text(&resumed).contains("holds no checkpoint") && text(&resumed).contains("--overwrite"),
        "{}",
        text(&resumed)
    );
    let both = run(&out, root, &["--resume", "--overwrite"]);
    assert_eq!(both.status.code(), Some(2), "{}", text(&both));

    let replaced = run(&out, root, &["--max-steps", "2", "--overwrite"]);
    assert_eq!(replaced.status.code(), Some(0), "{}", text(&replaced));
    let metrics = fa_torch::train::metrics::read_metrics(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.len(),
        2,
        "only the new run's two steps: {metrics:?}"
    );
}

#[test]
fn resume_drops_a_partial_metrics_line_and_removes_stale_temporaries() {
    let root = &support::data::fashion_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let first = run(&out, root, &["--max-steps", "2"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    // A kill in the middle of a metrics line and of two atomic writes.
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics = std::fs::read_to_string(&metrics_path).unwrap();
    metrics.push_str("{\"kind\":\"step\",\"step\":3,\"ep");
    std::fs::write(&metrics_path, metrics).unwrap();
    let stale: Vec<PathBuf> = vec![
        out.join(".model.json.999999999.tmp"),
        out.join("checkpoints/.step-000000003.safetensors.999999999.tmp"),
    ];
    for path in &stale {
        std::fs::write(path, b"half").unwrap();
    }

    let resumed = run(&out, root, &["--max-steps", "4", "--resume"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    let records = fa_torch::train::metrics::read_metrics(&metrics_path).unwrap();
    let steps: Vec<u64> = records
        .iter()
        .filter_map(|record| match record {
            fa_torch::train::metrics::Record::Step { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, [1, 2, 3, 4]);
    assert!(
        std::fs::read_to_string(&metrics_path)
            .unwrap()
            .ends_with('\n'),
        "no partial line is left"
    );
    for path in &stale {
        assert!(!path.exists(), "{} removed", path.display());
    }
}

#[test]
fn the_latest_checkpoint_is_the_highest_stored_step_and_only_the_last_n_are_kept() {
    let root = &support::data::fashion_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // 128 images in batches of 64: two steps an epoch, a checkpoint every epoch.
    let settings = [
        "--set",
        "data.limit=128",
        "--set",
        "train.epochs=5",
        "--set",
        "train.keep_checkpoints=2",
    ];
    let output = run(&out, root, &settings);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(checkpoint_steps(&out), [8, 10]);

    // A name that sorts last but holds an earlier step is not the latest.
    let folder = out.join("checkpoints");
    std::fs::rename(
        folder.join("step-000000008.safetensors"),
        folder.join("step-999999999.safetensors"),
    )
    .unwrap();
    let latest = fa_torch::train::checkpoint::latest(&out).unwrap();
    assert_eq!(
        latest.file_name().unwrap(),
        "step-000000010.safetensors",
        "chosen by the step inside"
    );
}

#[test]
fn an_out_that_names_a_file_is_refused_as_not_a_folder() {
    let root = &support::data::fashion_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("notes.txt");
    std::fs::write(&out, "mine").unwrap();
    let output = run(&out, root, &["--max-steps", "1"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("is a file, not a run folder"),
        "{}",
        text(&output)
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "mine");
}

/// A model whose memory estimate exceeds the machine's available memory is refused before any
/// data is loaded, with the figures; the run folder gets no artefact.
#[test]
fn a_model_too_large_for_the_memory_is_refused_before_loading_data() {
    let root = &support::data::fashion_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let started = std::time::Instant::now();
    let output = run(&out, root, &["--set", "data.image_size=4096"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("for a training step and its data, but")
            && text(&output).contains("FA_SKIP_MEMORY_CHECK"),
        "{}",
        text(&output)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let artefacts: Vec<_> = std::fs::read_dir(&out)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name != ".lock")
                .collect()
        })
        .unwrap_or_default();
    assert!(artefacts.is_empty(), "{artefacts:?}");
}

/// A run stopped mid-epoch and resumed writes that epoch's record over all of its steps, not
/// only those after the resume.
#[test]
fn the_epoch_record_of_a_resumed_epoch_averages_every_step_of_it() {
    let root = &support::data::fashion_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let first = run(&out, root, &["--max-steps", "5"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let resumed = run(&out, root, &["--max-steps", "16", "--resume"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));

    let records = fa_torch::train::metrics::read_metrics(&out.join("metrics.jsonl")).unwrap();
    let mut losses = Vec::new();
    let mut collapses = Vec::new();
    let mut epoch_record = None;
    for record in &records {
        match record {
            fa_torch::train::metrics::Record::Step {
                epoch: 0,
                loss,
                collapse_std,
                ..
            } => {
                losses.push(*loss);
                collapses.push(collapse_std.expect("steps store the collapse statistic"));
            }
            fa_torch::train::metrics::Record::Epoch {
                epoch: 1,
                loss,
                collapse_std,
                ..
            } => epoch_record = Some((*loss, collapse_std.unwrap())),
            _ => {}
        }
    }
    assert_eq!(losses.len(), 16, "one record per step of the epoch");
    let (loss, collapse) = epoch_record.expect("the epoch's record");
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    assert!(
        (loss - mean(&losses)).abs() < 1e-12 * mean(&losses).abs().max(1.0),
        "{loss} vs {}",
        mean(&losses)
    );
    assert!(
        (collapse - mean(&collapses)).abs() < 1e-12,
        "{collapse} vs {}",
        mean(&collapses)
    );
    let after_resume = mean(&losses[5..]);
    assert!(
        (loss - after_resume).abs() > 1e-9,
        "the first five steps count"
    );
}

/// `--out` naming a folder of other files (`--out .` in a project, `--out /`) is refused
/// before anything is written there.
#[test]
fn a_folder_of_other_files_is_refused_as_a_run_folder() {
    let root = &support::data::fashion_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("project");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    for extra in [
        &["--max-steps", "1"][..],
        &["--max-steps", "1", "--overwrite"][..],
    ] {
        let output = run(&out, root, extra);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        assert!(
            text(&output).contains("holds files that are not a run's (notes.txt"),
            "{}",
            text(&output)
        );
    }
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["notes.txt"], "nothing was written there");
}
