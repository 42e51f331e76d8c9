//! Training metrics as JSON Lines in the run folder: one record per step, epoch or evaluation.
//!
//! Each line is one [`Record`], tagged by `kind`. The writer flushes after every line, so a
//! crash loses at most the line being written; the reader skips such an unterminated last
//! line instead of refusing the whole file. Non-finite numbers (a diverged loss) are written
//! as `null` and read back as NaN, because JSON has no NaN.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::train::memory::PeakMemory;

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// One optimiser step.
    Step {
        step: u64,
        epoch: u64,
        #[serde(with = "nullable")]
        loss: f64,
        /// Each loss term's value by the term's name.
        #[serde(default, with = "nullable_map")]
        terms: BTreeMap<String, f64>,
        #[serde(with = "nullable")]
        lr: f64,
        #[serde(default)]
        ema_momentum: Option<f64>,
        #[serde(with = "nullable")]
        images_per_s: f64,
        #[serde(default)]
        grad_norm: Option<f64>,
        /// The step's collapse statistic and NN label match, kept so that a resumed run's
        /// epoch record still averages every step of the epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        collapse_std: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nn_label_match: Option<f64>,
    },
    /// The end of one epoch.
    Epoch {
        epoch: u64,
        /// Mean loss over the epoch.
        #[serde(with = "nullable")]
        loss: f64,
        /// Standard deviation of L2-normalised projections (about 1/√d healthy, 0 collapsed).
        #[serde(default)]
        collapse_std: Option<f64>,
        /// How often a nearest-neighbour FA sample has the anchor's label, in percent.
        #[serde(default)]
        nn_label_match: Option<f64>,
        #[serde(default)]
        knn_top1: Option<f64>,
        #[serde(with = "nullable")]
        seconds: f64,
        /// The process's peak memory so far.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peak_memory: Option<PeakMemory>,
    },
    /// A final or on-demand evaluation; accuracies in percent.
    Eval {
        #[serde(default)]
        step: Option<u64>,
        #[serde(default)]
        knn_top1: Option<f64>,
        #[serde(default)]
        knn_top5: Option<f64>,
        #[serde(default)]
        linear_top1: Option<f64>,
        #[serde(default)]
        linear_top5: Option<f64>,
        /// The same encoder at random initialisation.
        #[serde(default)]
        random_init_knn_top1: Option<f64>,
        #[serde(default)]
        random_init_linear_top1: Option<f64>,
        /// kNN on raw pixels.
        #[serde(default)]
        pixels_knn_top1: Option<f64>,
        /// The process's peak memory after the evaluation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peak_memory: Option<PeakMemory>,
    },
}

/// Serialises a non-finite `f64` as `null` and reads `null` back as NaN.
mod nullable {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_f64(*value)
        } else {
            serializer.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
    }
}

/// [`nullable`] for the values of a map.
mod nullable_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<String, f64>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let converted: BTreeMap<&String, Option<f64>> = map
            .iter()
            .map(|(key, value)| (key, value.is_finite().then_some(*value)))
            .collect();
        converted.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<String, f64>, D::Error> {
        let raw = BTreeMap::<String, Option<f64>>::deserialize(deserializer)?;
        Ok(raw
            .into_iter()
            .map(|(key, value)| (key, value.unwrap_or(f64::NAN)))
            .collect())
    }
}

/// Why metrics could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot access metrics file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics file {path}, line {line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Appends records to a JSON Lines file, one flushed line per record.
#[derive(Debug)]
pub struct MetricsWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsWriter {
    /// Opens `path` for appending (a resumed run continues its file), creating it and its
    /// folder when missing.
    pub fn open(path: &Path) -> Result<MetricsWriter, MetricsError> {
        let io_error = |source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_error)?;
        Ok(MetricsWriter {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The file this writer appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one record as one line and flushes it.
    pub fn write(&mut self, record: &Record) -> Result<(), MetricsError> {
        let mut line = serde_json::to_string(record).expect("metrics records always serialise");
        line.push('\n');
        // One `write_all` of the whole line keeps concurrent readers from seeing half a record
        // in the common case; the file is unbuffered, so the line is handed to the OS here.
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| MetricsError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// Reads every record of a metrics file. Blank lines are skipped, and so is a last line
/// without a newline that does not parse (a write cut short by a crash); any other line
/// that does not parse is an error naming its line number.
pub fn read_metrics(path: &Path) -> Result<Vec<Record>, MetricsError> {
    let io_error = |source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let mut reader = std::io::BufReader::new(file);
    let mut records = Vec::new();
    let mut line = String::new();
    let mut number = 0;
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(io_error)?;
        if read == 0 {
            break;
        }
        number += 1;
        let complete = line.ends_with('\n');
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(text) {
            Ok(record) => records.push(record),
            Err(_) if !complete => break,
            Err(error) => {
                return Err(MetricsError::Parse {
                    path: path.to_path_buf(),
                    line: number,
                    message: error.to_string(),
                })
            }
        }
    }
    Ok(records)
}
