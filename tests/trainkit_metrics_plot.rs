//! Metrics JSON Lines round trip and crash tolerance; plots of several runs as PNG and SVG.

use std::collections::BTreeMap;
use std::io::Write;

use fa_torch::plot::{plot_runs, PlotError, PLOT_HEIGHT, PLOT_WIDTH};
use fa_torch::train::memory::PeakMemory;
use fa_torch::train::metrics::{read_metrics, MetricsError, MetricsWriter, Record};

fn step(step: u64, loss: f64) -> Record {
    Record::Step {
        step,
        epoch: step / 10,
        loss,
        terms: BTreeMap::from([
            ("info_nce".to_string(), loss * 0.5),
            ("fa/nn".to_string(), loss * 1.5),
        ]),
        lr: 0.4 * (1.0 - step as f64 / 100.0),
        ema_momentum: Some(0.99),
        images_per_s: 812.5,
        grad_norm: None,
        collapse_std: Some(0.05),
        nn_label_match: None,
    }
}

fn epoch(epoch: u64, knn: Option<f64>) -> Record {
    Record::Epoch {
        epoch,
        loss: 3.0 - epoch as f64 * 0.1,
        collapse_std: Some(0.0625),
        nn_label_match: None,
        knn_top1: knn,
        seconds: 12.0,
        peak_memory: (epoch == 1).then_some(PeakMemory {
            rss_mib: Some(812.5),
            cuda_mib: None,
        }),
    }
}

fn run_records(offset: f64) -> Vec<Record> {
    let mut records: Vec<Record> = (0..100)
        .map(|s| step(s, 5.0 * (-(s as f64) / 30.0).exp() + offset))
        .collect();
    records.extend((0..10).map(|e| epoch(e, Some(20.0 + 5.0 * e as f64 + offset))));
    records
}

#[test]
fn records_round_trip_through_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/metrics.jsonl");
    let records = vec![
        step(3, 2.5),
        epoch(0, Some(41.0)),
        epoch(1, None),
        Record::Eval {
            step: Some(300),
            knn_top1: Some(71.5),
            knn_top5: Some(95.0),
            linear_top1: Some(75.0),
            linear_top5: None,
            random_init_knn_top1: Some(30.2),
            random_init_linear_top1: None,
            pixels_knn_top1: Some(35.0),
            peak_memory: Some(PeakMemory {
                rss_mib: Some(900.0),
                cuda_mib: Some(2048.0),
            }),
        },
    ];
    let mut writer = MetricsWriter::open(&path).unwrap();
    for record in &records[..2] {
        writer.write(record).unwrap();
    }
    drop(writer);
    // Reopening appends: a resumed run continues the same file.
    let mut writer = MetricsWriter::open(&path).unwrap();
    for record in &records[2..] {
        writer.write(record).unwrap();
    }
    assert_eq!(read_metrics(&path).unwrap(), records);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 4);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .starts_with(r#"{"kind":"step","step":3,"#),
        "{text}"
    );
}

#[test]
fn a_diverged_loss_is_written_as_null_and_read_back_as_nan() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let mut writer = MetricsWriter::open(&path).unwrap();
    writer.write(&step(1, f64::NAN)).unwrap();
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains(r#""loss":null"#));
    let records = read_metrics(&path).unwrap();
    let Record::Step { loss, terms, .. } = &records[0] else {
        panic!("{records:?}")
    };
    assert!(loss.is_nan() && terms["info_nce"].is_nan());
}

#[test]
fn a_line_cut_short_by_a_crash_is_skipped_but_a_bad_line_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let mut writer = MetricsWriter::open(&path).unwrap();
    writer.write(&step(1, 2.0)).unwrap();
    writer.write(&step(2, 1.5)).unwrap();
    drop(writer);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(br#"{"kind":"step","step":3,"ep"#).unwrap();
    drop(file);
    assert_eq!(
        read_metrics(&path).unwrap(),
        vec![step(1, 2.0), step(2, 1.5)]
    );

    std::fs::write(&path, "{\"kind\":\"step\"}\n\n").unwrap();
    let error = read_metrics(&path).unwrap_err();
    assert!(
        matches!(error, MetricsError::Parse { line: 1, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("line 1"), "{error}");
}

#[test]
fn plots_of_several_runs_are_written_as_png_and_svg_of_the_stated_size() {
    let dir = tempfile::tempdir().unwrap();
    let runs = vec![
        ("baseline".to_string(), run_records(0.0)),
        ("nn fa".to_string(), run_records(1.0)),
    ];
    let written = plot_runs(&runs, &dir.path().join("plots")).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names,
        ["loss.png", "loss.svg", "knn.png", "knn.svg", "lr.png", "lr.svg"]
    );
    for path in &written {
        assert!(
            std::fs::metadata(path).unwrap().len() > 1000,
            "{} is nearly empty",
            path.display()
        );
        if path.extension().unwrap() == "png" {
            let image = image::open(path).unwrap().to_rgb8();
            assert_eq!(image.dimensions(), (PLOT_WIDTH, PLOT_HEIGHT));
            // The chart is drawn: besides the white background there are coloured pixels.
            let distinct: std::collections::BTreeSet<[u8; 3]> =
                image.pixels().map(|pixel| pixel.0).collect();
            assert!(
                distinct.len() > 3,
                "{} has {} colours",
                path.display(),
                distinct.len()
            );
        } else {
            let svg = std::fs::read_to_string(path).unwrap();
            assert!(
                svg.contains(&format!(r#"width="{PLOT_WIDTH}""#))
                    && svg.contains(&format!(r#"height="{PLOT_HEIGHT}""#))
            );
            // Both runs' labels appear in the legend.
            assert!(
                svg.contains("baseline") && svg.contains("nn fa"),
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn charts_without_data_are_skipped_and_no_data_at_all_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let no_knn: Vec<Record> = (0..5)
        .map(|s| step(s, 1.0))
        .chain([epoch(0, None)])
        .collect();
    let written = plot_runs(&[("run".to_string(), no_knn)], dir.path()).unwrap();
    assert_eq!(written.len(), 4);
    assert!(!dir.path().join("knn.png").exists());
    let error = plot_runs(&[("empty".to_string(), Vec::new())], dir.path()).unwrap_err();
    assert!(matches!(error, PlotError::NoData), "{error}");
}
