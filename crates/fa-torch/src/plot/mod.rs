//! Training curves (loss, kNN accuracy, learning rate) of one or more runs, as PNG and SVG files.
//!
//! Each chart overlays every run that has data for it, one colour per run with a legend.
//! A chart no run has data for is not written. Long series are averaged over equal-width
//! step buckets down to [`MAX_POINTS`] points, which keeps the SVG files small and smooths
//! the per-step loss noise; non-finite values (a diverged loss) are left out.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::train::metrics::Record;

/// Width of every chart, in pixels.
pub const PLOT_WIDTH: u32 = 1024;
/// Height of every chart, in pixels.
pub const PLOT_HEIGHT: u32 = 640;
/// Points drawn per series at most.
pub const MAX_POINTS: usize = 1000;

/// Why the charts could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("nothing to plot: no run has step or epoch records")]
    NoData,
    #[error("cannot create plot folder {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a folder: --out names the folder the charts go into", .path.display())]
    NotAFolder { path: PathBuf },
    #[error("cannot draw {path}: {message}")]
    Draw { path: PathBuf, message: String },
}

/// One chart: a file stem, axis descriptions and one series of `(x, y)` points per run.
struct Chart {
    stem: &'static str,
    title: &'static str,
    x_label: &'static str,
    y_label: &'static str,
    series: Vec<(String, Vec<(f64, f64)>)>,
}

/// Writes `loss`, `knn` and `lr` charts as `.png` and `.svg` into `out_dir` (created when
/// missing) and returns the paths written, PNG before SVG, in that chart order.
pub fn plot_runs(
    runs: &[(String, Vec<Record>)],
    out_dir: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    let charts = [
        Chart {
            stem: "loss",
            title: "training loss",
            x_label: "step",
            y_label: "loss",
            series: collect(runs, |record| match record {
                Record::Step { step, loss, .. } => Some((*step as f64, *loss)),
                _ => None,
            }),
        },
        Chart {
            stem: "knn",
            title: "kNN top-1 accuracy",
            x_label: "epoch",
            y_label: "top-1 (%)",
            series: collect(runs, |record| match record {
                Record::Epoch {
                    epoch,
                    knn_top1: Some(top1),
                    ..
                } => Some((*epoch as f64, *top1)),
                _ => None,
            }),
        },
        Chart {
            stem: "lr",
            title: "learning rate",
            x_label: "step",
            y_label: "learning rate",
            series: collect(runs, |record| match record {
                Record::Step { step, lr, .. } => Some((*step as f64, *lr)),
                _ => None,
            }),
        },
    ];
    let charts: Vec<Chart> = charts
        .into_iter()
        .filter(|chart| !chart.series.is_empty())
        .collect();
    if charts.is_empty() {
        return Err(PlotError::NoData);
    }
    if out_dir.exists() && !out_dir.is_dir() {
        return Err(PlotError::NotAFolder {
            path: out_dir.to_path_buf(),
        });
    }
    std::fs::create_dir_all(out_dir).map_err(|source| PlotError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for chart in &charts {
        let png = out_dir.join(format!("{}.png", chart.stem));
        let root = BitMapBackend::new(&png, (PLOT_WIDTH, PLOT_HEIGHT)).into_drawing_area();
        draw(root, chart).map_err(|message| PlotError::Draw {
            path: png.clone(),
            message,
        })?;
        written.push(png);
        let svg = out_dir.join(format!("{}.svg", chart.stem));
        let root = SVGBackend::new(&svg, (PLOT_WIDTH, PLOT_HEIGHT)).into_drawing_area();
        draw(root, chart).map_err(|message| PlotError::Draw {
            path: svg.clone(),
            message,
        })?;
        written.push(svg);
    }
    Ok(written)
}

/// One series per run with at least one finite point, bucket-averaged to [`MAX_POINTS`].
fn collect(
    runs: &[(String, Vec<Record>)],
    point: impl Fn(&Record) -> Option<(f64, f64)>,
) -> Vec<(String, Vec<(f64, f64)>)> {
    runs.iter()
        .filter_map(|(label, records)| {
            let mut points: Vec<(f64, f64)> = records
                .iter()
                .filter_map(&point)
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            // A resumed run may log a step twice; sorting keeps the line from doubling back.
            points.sort_by(|left, right| left.0.total_cmp(&right.0));
            (!points.is_empty()).then(|| (label.clone(), downsample(points, MAX_POINTS)))
        })
        .collect()
}

/// Averages consecutive points in groups so at most `limit` remain.
fn downsample(points: Vec<(f64, f64)>, limit: usize) -> Vec<(f64, f64)> {
    if points.len() <= limit {
        return points;
    }
    let group = points.len().div_ceil(limit);
    points
        .chunks(group)
        .map(|chunk| {
            let count = chunk.len() as f64;
            let x = chunk.iter().map(|(x, _)| x).sum::<f64>() / count;
            let y = chunk.iter().map(|(_, y)| y).sum::<f64>() / count;
            (x, y)
        })
        .collect()
}

/// The largest magnitude an axis reaches: far beyond any loss worth reading, and small
/// enough that the margins and tick arithmetic of the chart stay finite.
const AXIS_LIMIT: f64 = 1e12;

/// A range covering the finite `values` with a 5% margin, widened when all values are equal.
/// Values beyond ±[`AXIS_LIMIT`] are drawn at the limit: a range spanning ±1e308 would
/// overflow to infinity, on which the chart's tick search never ends.
fn padded_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) = values
        .filter(|v| v.is_finite())
        .map(|v| v.clamp(-AXIS_LIMIT, AXIS_LIMIT))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), v| {
            (low.min(v), high.max(v))
        });
    if low > high {
        return 0.0..1.0;
    }
    let span = high - low;
    let margin = if span > 0.0 {
        span * 0.05
    } else {
        low.abs().max(1.0) * 0.05
    };
    (low - margin)..(high + margin)
}

/// Steps and epochs are whole numbers: print them without a trailing `.0`.
fn axis_number(value: &f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Draws `chart` on `root`; errors come back as text because each backend has its own type.
fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, chart: &Chart) -> Result<(), String> {
    let text = |error: DrawingAreaErrorKind<DB::ErrorType>| error.to_string();
    root.fill(&WHITE).map_err(text)?;
    let x_range = padded_range(
        chart
            .series
            .iter()
            .flat_map(|(_, points)| points.iter().map(|(x, _)| *x)),
    );
    let y_range = padded_range(
        chart
            .series
            .iter()
            .flat_map(|(_, points)| points.iter().map(|(_, y)| *y)),
    );
    let mut context = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 28))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x_range, y_range)
        .map_err(text)?;
    context
        .configure_mesh()
        .x_desc(chart.x_label)
        .x_label_formatter(&axis_number)
        .y_desc(chart.y_label)
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(text)?;
    for (index, (label, points)) in chart.series.iter().enumerate() {
        // Points are drawn within the axes' limits (pixel coordinates of a point at 1e308
        // overflow), and non-finite ones are left out, as the ranges leave them out.
        let points: Vec<(f64, f64)> = points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| {
                (
                    x.clamp(-AXIS_LIMIT, AXIS_LIMIT),
                    y.clamp(-AXIS_LIMIT, AXIS_LIMIT),
                )
            })
            .collect();
        let colour = Palette99::pick(index).to_rgba();
        let style = ShapeStyle::from(colour).stroke_width(2);
        let drawn = if points.len() == 1 {
            // A single point would be an invisible line; a dot shows it.
            context.draw_series(
                points
                    .iter()
                    .map(|&point| Circle::new(point, 4, style.filled())),
            )
        } else {
            context.draw_series(LineSeries::new(points.iter().copied(), style))
        }
        .map_err(text)?;
        drawn
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    context
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(text)?;
    root.present().map_err(text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_averages_groups_and_keeps_short_series() {
        let short = vec![(0.0, 1.0), (1.0, 3.0)];
        assert_eq!(downsample(short.clone(), 10), short);
        let long: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 2.0 * i as f64)).collect();
        assert_eq!(
            downsample(long, 5),
            vec![(0.5, 1.0), (2.5, 5.0), (4.5, 9.0), (6.5, 13.0), (8.5, 17.0)]
        );
    }

    #[test]
    fn ranges_have_margins_and_never_collapse() {
        let range = padded_range([0.0, 10.0].into_iter());
        assert_eq!(range, -0.5..10.5);
        let flat = padded_range([2.0, 2.0].into_iter());
        assert!(flat.start < 2.0 && flat.end > 2.0);
    }

    #[test]
    fn losses_spanning_the_whole_double_range_plot_in_finite_time() {
        let range = padded_range([-1e308, 1e308, f64::NAN, f64::INFINITY].into_iter());
        assert!(range.start.is_finite() && range.end.is_finite() && range.start < range.end);
        assert_eq!(padded_range(std::iter::empty()), 0.0..1.0);

        let records: Vec<Record> = [-1e308, 1e308, 0.5]
            .into_iter()
            .enumerate()
            .map(|(index, loss)| Record::Step {
                step: index as u64 + 1,
                epoch: 0,
                loss,
                terms: Default::default(),
                lr: 0.1,
                ema_momentum: None,
                images_per_s: 1.0,
                grad_norm: None,
                collapse_std: None,
                nn_label_match: None,
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_path_buf();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(plot_runs(&[("run".to_string(), records)], &out).is_ok());
        });
        let finished = receiver.recv_timeout(std::time::Duration::from_secs(60));
        assert_eq!(finished, Ok(true), "the plot ends");
    }
}
