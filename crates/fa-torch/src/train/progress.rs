//! Progress output of a run: an indicatif bar on a terminal, plain or JSON lines otherwise.

use crate::train::metrics::Record;

/// How `fa train` reports progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// A progress bar on a terminal, plain lines otherwise.
    Auto,
    /// Plain lines.
    Plain,
    /// One JSON object per line on stdout.
    Json,
    /// Nothing but errors.
    Quiet,
}

/// Progress output: an indicatif bar on a terminal, plain or JSON lines otherwise.
pub(crate) struct Progress {
    format: LogFormat,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub(crate) fn new(format: LogFormat, total: u64, position: u64) -> Progress {
        use std::io::IsTerminal;
        let format = match format {
            LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Auto,
            LogFormat::Auto => LogFormat::Plain,
            other => other,
        };
        let bar = (format == LogFormat::Auto).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} steps  {msg}  eta {eta}",
                )
                .expect("template is valid"),
            );
            bar.set_position(position);
            bar
        });
        Progress { format, bar }
    }

    pub(crate) fn step(&self, record: &Record) {
        let Record::Step {
            step,
            loss,
            terms,
            lr,
            images_per_s,
            ..
        } = record
        else {
            return;
        };
        match self.format {
            LogFormat::Auto => {
                if let Some(bar) = &self.bar {
                    bar.set_position(*step);
                    let terms: Vec<String> =
                        terms.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
                    bar.set_message(format!(
                        "loss {loss:.4} [{}] lr {lr:.4} {images_per_s:.0} img/s",
                        terms.join(", ")
                    ));
                }
            }
            LogFormat::Plain => {
                if *step % 50 == 0 || *step == 1 {
                    eprintln!(
                        "step {step:>7}  loss {loss:.4}  lr {lr:.5}  {images_per_s:.0} img/s"
                    );
                }
            }
            LogFormat::Json => println!(
                "{}",
                serde_json::to_string(record).expect("records serialise")
            ),
            LogFormat::Quiet => {}
        }
    }

    pub(crate) fn epoch(&self, record: &Record) {
        let Record::Epoch {
            epoch,
            loss,
            collapse_std,
            nn_label_match,
            knn_top1,
            seconds,
            ..
        } = record
        else {
            return;
        };
        let mut line = format!("epoch {epoch:>4}  loss {loss:.4}  {seconds:.1}s");
        if let Some(std) = collapse_std {
            line += &format!("  proj std {std:.4}");
        }
        if let Some(m) = nn_label_match {
            line += &format!("  nn label match {:.1}%", m * 100.0);
        }
        if let Some(k) = knn_top1 {
            line += &format!("  knn {k:.2}%");
        }
        match self.format {
            LogFormat::Auto => match &self.bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            },
            LogFormat::Plain => eprintln!("{line}"),
            LogFormat::Json => println!(
                "{}",
                serde_json::to_string(record).expect("records serialise")
            ),
            LogFormat::Quiet => {}
        }
    }

    pub(crate) fn warn(&self, line: &str) {
        match (&self.bar, self.format) {
            (Some(bar), _) => bar.println(line),
            (None, LogFormat::Json) => println!(
                "{}",
                serde_json::json!({ "kind": "warning", "message": line })
            ),
            _ => eprintln!("{line}"),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
