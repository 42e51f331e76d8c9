//! TensorBoard's events file, written beside `metrics.jsonl`: the same records as scalars
//! (and the augmentation grid as an image), so a run can be watched in TensorBoard (or
//! imported by tools that read its logs).
//!
//! The format is TFRecord framing around `Event` protocol buffers, written here by hand:
//! each record is the data's length (u64, little-endian), a masked CRC32C of those 8 bytes,
//! the data, and a masked CRC32C of the data. The few `Event` fields used:
//!
//! ```text
//! Event   { wall_time: double = 1, step: int64 = 2, file_version: string = 3, summary = 5 }
//! Summary { value: repeated Value = 1 }
//! Value   { tag: string = 1, simple_value: float = 2, image: Image = 4 }
//! Image   { height: int32 = 1, width: int32 = 2, colorspace: int32 = 3, encoded_image_string: bytes = 4 }
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::train::metrics::Record;

/// The events file's name in the run folder; TensorBoard reads every file whose name holds
/// `tfevents`. One fixed name, so a resumed run continues the same file.
pub const EVENTS_FILE: &str = "events.out.tfevents.fa";

/// The tags of evaluation records, which a resumed run writes again.
const EVAL_PREFIX: &str = "eval/";

/// Why the events file could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("cannot write TensorBoard events file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TensorBoard events file {path}: record at byte {offset} is corrupt ({what})")]
    Corrupt {
        path: PathBuf,
        offset: usize,
        what: &'static str,
    },
}

/// TFRecord's masking of a CRC32C, so that a CRC stored inside data that is itself
/// checksummed does not make the outer CRC degenerate.
pub fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One framed record around `data`.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, (field << 3) | wire);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A summary value: a scalar or an encoded image.
pub enum Value<'a> {
    Scalar(f32),
    Png {
        png: &'a [u8],
        width: u32,
        height: u32,
    },
}

/// An `Event` holding a summary of `values` at `step`.
pub fn summary_event(wall_time: f64, step: u64, values: &[(String, Value)]) -> Vec<u8> {
    let mut summary = Vec::new();
    for (tag, value) in values {
        let mut encoded = Vec::new();
        bytes_field(&mut encoded, 1, tag.as_bytes());
        match value {
            Value::Scalar(number) => {
                key(&mut encoded, 2, 5);
                encoded.extend_from_slice(&number.to_le_bytes());
            }
            Value::Png { png, width, height } => {
                let mut image = Vec::new();
                key(&mut image, 1, 0);
                varint(&mut image, u64::from(*height));
                key(&mut image, 2, 0);
                varint(&mut image, u64::from(*width));
                // 3 = RGB.
                key(&mut image, 3, 0);
                varint(&mut image, 3);
                bytes_field(&mut image, 4, png);
                bytes_field(&mut encoded, 4, &image);
            }
        }
        bytes_field(&mut summary, 1, &encoded);
    }
    let mut event = event_header(wall_time, step);
    bytes_field(&mut event, 5, &summary);
    event
}

/// The first event of every file: its format version.
pub fn version_event(wall_time: f64) -> Vec<u8> {
    let mut event = Vec::new();
    key(&mut event, 1, 1);
    event.extend_from_slice(&wall_time.to_le_bytes());
    bytes_field(&mut event, 3, b"brain.Event:2");
    event
}

fn event_header(wall_time: f64, step: u64) -> Vec<u8> {
    let mut event = Vec::new();
    key(&mut event, 1, 1);
    event.extend_from_slice(&wall_time.to_le_bytes());
    key(&mut event, 2, 0);
    varint(&mut event, step);
    event
}

/// The scalars of one metrics record with their tags, and the step they belong to
/// (`steps_per_epoch` places an epoch's record at its last step).
pub fn scalars(record: &Record, steps_per_epoch: u64) -> (u64, Vec<(String, Value<'static>)>) {
    let mut values = Vec::new();
    let mut put = |tag: String, value: Option<f64>| {
        if let Some(value) = value.filter(|v| v.is_finite()) {
            values.push((tag, Value::Scalar(value as f32)));
        }
    };
    let step = match record {
        Record::Step {
            step,
            loss,
            terms,
            lr,
            ema_momentum,
            images_per_s,
            grad_norm,
            ..
        } => {
            put("loss/total".into(), Some(*loss));
            for (name, value) in terms {
                put(format!("loss/{name}"), Some(*value));
            }
            put("lr".into(), Some(*lr));
            put("ema_momentum".into(), *ema_momentum);
            put("images_per_s".into(), Some(*images_per_s));
            put("grad_norm".into(), *grad_norm);
            *step
        }
        Record::Epoch {
            epoch,
            loss,
            collapse_std,
            nn_label_match,
            knn_top1,
            seconds,
            peak_memory,
        } => {
            put("epoch/loss".into(), Some(*loss));
            put("epoch/seconds".into(), Some(*seconds));
            put("collapse/std".into(), *collapse_std);
            put("collapse/nn_label_match".into(), *nn_label_match);
            put("knn/top1".into(), *knn_top1);
            if let Some(peak) = peak_memory {
                put("memory/peak_rss_mib".into(), peak.rss_mib);
                put("memory/peak_cuda_mib".into(), peak.cuda_mib);
            }
            epoch * steps_per_epoch
        }
        Record::Eval {
            step,
            knn_top1,
            knn_top5,
            linear_top1,
            linear_top5,
            random_init_knn_top1,
            random_init_linear_top1,
            pixels_knn_top1,
            peak_memory: _,
        } => {
            put(format!("{EVAL_PREFIX}knn_top1"), *knn_top1);
            put(format!("{EVAL_PREFIX}knn_top5"), *knn_top5);
            put(format!("{EVAL_PREFIX}linear_top1"), *linear_top1);
            put(format!("{EVAL_PREFIX}linear_top5"), *linear_top5);
            put(
                format!("{EVAL_PREFIX}random_init_knn_top1"),
                *random_init_knn_top1,
            );
            put(
                format!("{EVAL_PREFIX}random_init_linear_top1"),
                *random_init_linear_top1,
            );
            put(format!("{EVAL_PREFIX}pixels_knn_top1"), *pixels_knn_top1);
            step.unwrap_or(0)
        }
    };
    (step, values)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// Appends events to a run's events file, one flushed record at a time.
#[derive(Debug)]
pub struct EventsWriter {
    path: PathBuf,
    file: std::fs::File,
    steps_per_epoch: u64,
}

impl EventsWriter {
    /// Opens the events file of `run`. A fresh run starts it; a resumed run from `resumed`
    /// keeps the events up to that step (evaluations dropped, as in `metrics.jsonl`) and
    /// continues after them, so no step appears twice.
    pub fn open(
        run: &Path,
        resumed: Option<u64>,
        steps_per_epoch: u64,
    ) -> Result<EventsWriter, EventsError> {
        let path = run.join(EVENTS_FILE);
        let io_error = |source| EventsError::Io {
            path: path.clone(),
            source,
        };
        let mut kept = Vec::new();
        if let (Some(step), true) = (resumed, path.exists()) {
            let bytes = std::fs::read(&path).map_err(io_error)?;
            // The events file only mirrors metrics.jsonl: a damaged record does not stop the
            // run from resuming. The records before it are kept; those after it up to the
            // resumed step are lost from the events file (metrics.jsonl still has them).
            let (records, _damage) = scan(&bytes);
            for event in records {
                let parsed = parse_event(&event);
                if parsed.step <= step && !parsed.tags.iter().any(|t| t.starts_with(EVAL_PREFIX)) {
                    kept.extend(frame(&event));
                }
            }
        }
        if kept.is_empty() {
            kept = frame(&version_event(now()));
        }
        fa_base::fsio::write_file_atomically(&path, &kept).map_err(io_error)?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_error)?;
        Ok(EventsWriter {
            path,
            file,
            steps_per_epoch,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the scalars of a metrics record.
    pub fn record(&mut self, record: &Record) -> Result<(), EventsError> {
        let (step, values) = scalars(record, self.steps_per_epoch);
        if values.is_empty() {
            return Ok(());
        }
        self.write(&summary_event(now(), step, &values))
    }

    /// Writes a PNG image under `tag` at `step`.
    pub fn image(
        &mut self,
        tag: &str,
        step: u64,
        png: &[u8],
        width: u32,
        height: u32,
    ) -> Result<(), EventsError> {
        let value = Value::Png { png, width, height };
        self.write(&summary_event(now(), step, &[(tag.to_string(), value)]))
    }

    fn write(&mut self, event: &[u8]) -> Result<(), EventsError> {
        self.file
            .write_all(&frame(event))
            .and_then(|()| self.file.flush())
            .map_err(|source| EventsError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// The data of every record of an events file, checksums verified. A record cut short at
/// the end (a crash while writing) is dropped; a checksum that does not match is an error.
pub fn read_records(path: &Path, bytes: &[u8]) -> Result<Vec<Vec<u8>>, EventsError> {
    match scan(bytes) {
        (records, None) => Ok(records),
        (_, Some((offset, what))) => Err(EventsError::Corrupt {
            path: path.to_path_buf(),
            offset,
            what,
        }),
    }
}

/// The records up to the first damaged one, and where and how that one is damaged.
fn scan(bytes: &[u8]) -> (Vec<Vec<u8>>, Option<(usize, &'static str)>) {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset + 12 <= bytes.len() {
        let length_bytes = &bytes[offset..offset + 8];
        let stored =
            u32::from_le_bytes(bytes[offset + 8..offset + 12].try_into().expect("4 bytes"));
        if stored != masked_crc(length_bytes) {
            return (records, Some((offset, "length checksum")));
        }
        let length = u64::from_le_bytes(length_bytes.try_into().expect("8 bytes")) as usize;
        let start = offset + 12;
        let Some(end) = start
            .checked_add(length)
            .filter(|end| end + 4 <= bytes.len())
        else {
            break;
        };
        let stored = u32::from_le_bytes(bytes[end..end + 4].try_into().expect("4 bytes"));
        if stored != masked_crc(&bytes[start..end]) {
            return (records, Some((offset, "data checksum")));
        }
        records.push(bytes[start..end].to_vec());
        offset = end + 4;
    }
    (records, None)
}

/// What the resume filter needs of an event: its step and the tags of its values.
#[derive(Debug, Default, PartialEq)]
pub struct EventInfo {
    pub step: u64,
    pub tags: Vec<String>,
}

/// Reads the step and summary tags of an encoded `Event` (unknown fields skipped).
pub fn parse_event(event: &[u8]) -> EventInfo {
    let mut info = EventInfo::default();
    for (field, value) in fields(event) {
        match (field, value) {
            (2, Field::Varint(step)) => info.step = step,
            (5, Field::Bytes(summary)) => {
                for (field, value) in fields(summary) {
                    if let (1, Field::Bytes(entry)) = (field, value) {
                        for (field, value) in fields(entry) {
                            if let (1, Field::Bytes(tag)) = (field, value) {
                                info.tags.push(String::from_utf8_lossy(tag).into_owned());
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    info
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The top-level fields of a protocol buffer message; stops at the first malformed one.
fn fields(mut bytes: &[u8]) -> Vec<(u64, Field<'_>)> {
    fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Some(key) = read_varint(&mut bytes) else {
            break;
        };
        let field = key >> 3;
        let value = match key & 7 {
            0 => match read_varint(&mut bytes) {
                Some(value) => Field::Varint(value),
                None => break,
            },
            1 | 5 => {
                let size = if key & 7 == 1 { 8 } else { 4 };
                if bytes.len() < size {
                    break;
                }
                bytes = &bytes[size..];
                Field::Fixed
            }
            2 => {
                let Some(length) = read_varint(&mut bytes) else {
                    break;
                };
                let length = length as usize;
                if bytes.len() < length {
                    break;
                }
                let (inner, rest) = bytes.split_at(length);
                bytes = rest;
                Field::Bytes(inner)
            }
            _ => break,
        };
        out.push((field, value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_crc_is_crc32c_masked_as_tfrecord_does() {
        // CRC-32C's check value for "123456789" is 0xE3069283. Masked: rotate right by 15,
        // 0xE3069283 → 0x2507C60D, plus 0xA282EAD8 → 0xC78AB0E5 (mod 2^32).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(0xe306_9283u32.rotate_right(15), 0x2507_c60d);
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn a_version_record_matches_tensorboards_own_writer_byte_for_byte() {
        // The bytes TensorBoard's Python RecordWriter writes for
        // Event(wall_time=1.5, step=0, file_version="brain.Event:2").
        let event = version_event(1.5);
        assert_eq!(
            hex(&event),
            "09000000000000f83f1a0d627261696e2e4576656e743a32"
        );
        assert_eq!(
            hex(&frame(&event)),
            "1800000000000000a37f4b22\
             09000000000000f83f1a0d627261696e2e4576656e743a32\
             2a28646c"
        );
    }

    #[test]
    fn a_scalar_event_matches_the_protobuf_encoding_and_reads_back() {
        // Event(wall_time=2.0, step=7, summary=Summary(value=[Value(tag="loss",
        // simple_value=0.25)])).SerializeToString(), from TensorBoard's protobuf classes.
        let event = summary_event(2.0, 7, &[("loss".into(), Value::Scalar(0.25))]);
        assert_eq!(
            hex(&event),
            "09000000000000004010072a0d0a0b0a046c6f7373150000803e"
        );
        let info = parse_event(&event);
        assert_eq!(
            info,
            EventInfo {
                step: 7,
                tags: vec!["loss".into()]
            }
        );
        let mut file = frame(&version_event(1.0));
        file.extend(frame(&event));
        let records = read_records(Path::new("x"), &file).unwrap();
        assert_eq!(records, vec![version_event(1.0), event.clone()]);
        // A record cut short is dropped; a flipped byte is an error naming its offset.
        let cut = &file[..file.len() - 3];
        assert_eq!(read_records(Path::new("x"), cut).unwrap().len(), 1);
        let mut flipped = file.clone();
        let last = flipped.len() - 6;
        flipped[last] ^= 1;
        let error = read_records(Path::new("x"), &flipped)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("data checksum") && error.contains("byte 40"),
            "{error}"
        );
    }

    #[test]
    fn every_field_of_a_record_becomes_a_tagged_scalar_at_its_step() {
        let record = Record::Step {
            step: 3,
            epoch: 0,
            loss: 1.5,
            terms: [("anchor~positive".to_string(), 1.25)]
                .into_iter()
                .collect(),
            lr: 0.1,
            ema_momentum: Some(0.99),
            images_per_s: 100.0,
            grad_norm: None,
            collapse_std: None,
            nn_label_match: None,
        };
        let (step, values) = scalars(&record, 10);
        assert_eq!(step, 3);
        let tags: Vec<&str> = values.iter().map(|(tag, _)| tag.as_str()).collect();
        assert_eq!(
            tags,
            [
                "loss/total",
                "loss/anchor~positive",
                "lr",
                "ema_momentum",
                "images_per_s"
            ]
        );
        let Value::Scalar(momentum) = values[3].1 else {
            panic!()
        };
        assert_eq!(momentum, 0.99f32);
        // An epoch's record sits at the epoch's last step; a diverged loss is left out.
        let epoch = Record::Epoch {
            epoch: 2,
            loss: f64::NAN,
            collapse_std: Some(0.05),
            nn_label_match: None,
            knn_top1: Some(71.5),
            seconds: 4.0,
            peak_memory: None,
        };
        let (step, values) = scalars(&epoch, 10);
        assert_eq!(step, 20);
        let tags: Vec<&str> = values.iter().map(|(tag, _)| tag.as_str()).collect();
        assert_eq!(tags, ["epoch/seconds", "collapse/std", "knn/top1"]);
    }

    #[test]
    fn a_resume_keeps_the_events_up_to_its_step_and_drops_evaluations() {
        let run = tempfile::tempdir().unwrap();
        let step = |step: u64| Record::Step {
            step,
            epoch: 0,
            loss: step as f64,
            terms: Default::default(),
            lr: 0.1,
            ema_momentum: None,
            images_per_s: 1.0,
            grad_norm: None,
            collapse_std: None,
            nn_label_match: None,
        };
        let mut writer = EventsWriter::open(run.path(), None, 4).unwrap();
        for number in 1..=6 {
            writer.record(&step(number)).unwrap();
        }
        writer
            .record(&Record::Eval {
                step: Some(6),
                knn_top1: Some(50.0),
                knn_top5: None,
                linear_top1: None,
                linear_top5: None,
                random_init_knn_top1: None,
                random_init_linear_top1: None,
                pixels_knn_top1: None,
                peak_memory: None,
            })
            .unwrap();
        drop(writer);
        let steps = |path: &Path| -> Vec<u64> {
            let bytes = std::fs::read(path).unwrap();
            read_records(path, &bytes).unwrap()[1..]
                .iter()
                .map(|e| parse_event(e).step)
                .collect()
        };
        let path = run.path().join(EVENTS_FILE);
        assert_eq!(steps(&path), [1, 2, 3, 4, 5, 6, 6]);
        // Resumed from step 4: steps 5, 6 and the evaluation go; 5 and 6 come again.
        let mut writer = EventsWriter::open(run.path(), Some(4), 4).unwrap();
        writer.record(&step(5)).unwrap();
        writer.record(&step(6)).unwrap();
        drop(writer);
        assert_eq!(steps(&path), [1, 2, 3, 4, 5, 6]);
        // A damaged record (a flipped byte in step 3's event) keeps the records before it.
        let mut bytes = std::fs::read(&path).unwrap();
        let records = read_records(&path, &bytes).unwrap();
        let third = records[..3].iter().map(|r| r.len() + 16).sum::<usize>() + 14;
        bytes[third] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_records(&path, &bytes).is_err());
        EventsWriter::open(run.path(), Some(4), 4).unwrap();
        assert_eq!(steps(&path), [1, 2]);
    }
}
