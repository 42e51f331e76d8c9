//! Checkpoints: exact round trip, refusal of truncated, corrupt and foreign files, crash
//! safety of the atomic write, and `latest`.

use std::collections::BTreeMap;
use std::path::Path;

use fa_torch::train::checkpoint::{
    check_compatible, checkpoint_path, fingerprint, latest, load, read_meta, save, Checkpoint,
    CheckpointError, CheckpointMeta, TensorMismatch, FORMAT_VERSION,
};
use tch::{Device, Kind, Tensor};

fn meta(step: u64) -> CheckpointMeta {
    CheckpointMeta {
        format_version: FORMAT_VERSION,
        model_name: "tiny".to_string(),
        step,
        epoch: 2,
        position: 384,
        seed: 7,
        source: "model tiny { }\n".to_string(),
        fingerprint: fingerprint(&[("encoder.weight".to_string(), vec![4, 3])]),
        extra: BTreeMap::from([("world_size".to_string(), serde_json::json!(2))]),
    }
}

/// Deterministic values of varied sign and magnitude, without libtorch's global generator
/// (tests run in parallel threads and would race on it).
fn values(shape: &[i64], kind: Kind, offset: f64) -> Tensor {
    let count: i64 = shape.iter().product();
    let angles = Tensor::arange(count, (Kind::Double, Device::Cpu)) * 1.7 + offset;
    (angles.sin() * 3.0).reshape(shape).to_kind(kind)
}

/// Tensors of several element types, including a non-contiguous view, a 0-D scalar and a
/// negative zero.
fn tensors() -> Vec<(String, Tensor)> {
    vec![
        (
            "encoder.weight".to_string(),
            values(&[4, 3], Kind::Float, 0.1),
        ),
        ("encoder.bias".to_string(), values(&[4], Kind::Double, 0.2)),
        (
            "projector.weight".to_string(),
            values(&[3, 5], Kind::Float, 0.3).transpose(0, 1),
        ),
        (
            "bank.indices".to_string(),
            Tensor::arange(6, (Kind::Int64, Device::Cpu)),
        ),
        ("bank.full".to_string(), Tensor::from(true)),
        ("half".to_string(), values(&[2, 2], Kind::Half, 0.4)),
        (
            "negative_zero".to_string(),
            Tensor::from_slice(&[-0.0f32, 0.0]),
        ),
        (
            "optim/encoder.weight".to_string(),
            values(&[4, 3], Kind::Float, 0.5),
        ),
    ]
}

fn raw_bytes(tensor: &Tensor) -> Vec<u8> {
    let tensor = tensor.contiguous();
    let mut bytes = vec![0u8; tensor.numel() * tensor.kind().elt_size_in_bytes()];
    tensor.copy_data_u8(&mut bytes, tensor.numel());
    bytes
}

fn saved(dir: &Path, step: u64) -> std::path::PathBuf {
    let path = checkpoint_path(dir, step);
    save(
        &path,
        &Checkpoint {
            tensors: tensors(),
            meta: meta(step),
        },
    )
    .unwrap();
    path
}

#[test]
fn round_trip_is_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path(), 12);
    assert!(path.ends_with("checkpoints/step-000000012.safetensors"));
    let loaded = load(&path, Device::Cpu).unwrap();
    assert_eq!(loaded.meta, meta(12));
    let original: BTreeMap<String, Tensor> = tensors().into_iter().collect();
    assert_eq!(loaded.tensors.len(), original.len());
    for (name, tensor) in &loaded.tensors {
        let expected = &original[name];
        assert_eq!(tensor.kind(), expected.kind(), "{name}");
        assert_eq!(tensor.size(), expected.size(), "{name}");
        // Raw bytes, not values: value equality would let -0.0 stand for 0.0.
        assert_eq!(raw_bytes(tensor), raw_bytes(expected), "{name} differs");
    }
    assert_eq!(read_meta(&path).unwrap(), meta(12));
}

#[test]
fn a_checkpoint_of_another_run_format_is_refused_with_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = checkpoint_path(dir.path(), 5);
    let mut old = meta(5);
    old.format_version = FORMAT_VERSION - 1;
    save(
        &path,
        &Checkpoint {
            tensors: tensors(),
            meta: old,
        },
    )
    .unwrap();
    let error = load(&path, Device::Cpu).unwrap_err();
    assert!(matches!(error, CheckpointError::Format { found, .. } if found == FORMAT_VERSION - 1));
    let message = error.to_string();
    assert!(
        message.contains(&format!("run format {}", FORMAT_VERSION - 1)),
        "{message}"
    );
    assert!(
        message.contains(&format!("reads format {FORMAT_VERSION}")),
        "{message}"
    );
}

#[test]
fn truncated_files_are_refused_as_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path(), 1);
    let bytes = std::fs::read(&path).unwrap();
    for keep in [bytes.len() - 1, bytes.len() / 2, 40, 3] {
        std::fs::write(&path, &bytes[..keep]).unwrap();
        let error = load(&path, Device::Cpu).unwrap_err();
        assert!(
            matches!(error, CheckpointError::Truncated { .. }),
            "keeping {keep} bytes: {error}"
        );
        assert!(error.to_string().contains("is truncated"), "{error}");
    }
}

#[test]
fn a_flipped_byte_in_the_tensor_data_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let error = load(&path, Device::Cpu).unwrap_err();
    match &error {
        CheckpointError::Corrupt {
            expected, found, ..
        } => assert_ne!(expected, found),
        other => panic!("expected a corrupt checkpoint, got {other}"),
    }
    assert!(error.to_string().contains("is corrupt"), "{error}");
}

#[test]
fn an_edited_metadata_value_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path(), 1);
    let bytes = std::fs::read(&path).unwrap();
    // Changing the stored seed keeps the JSON valid and the length equal; only the checksum
    // can notice it.
    let needle = br#"\"seed\":7"#;
    let at = bytes
        .windows(needle.len())
        .position(|window| window == needle)
        .expect("seed in header");
    let mut edited = bytes.clone();
    edited[at + needle.len() - 1] = b'8';
    std::fs::write(&path, &edited).unwrap();
    assert!(matches!(
        load(&path, Device::Cpu).unwrap_err(),
        CheckpointError::Corrupt { .. }
    ));
}

#[test]
fn other_files_are_not_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.safetensors");
    Tensor::write_safetensors(
        &[("w", Tensor::zeros([2], (Kind::Float, Device::Cpu)))],
        &path,
    )
    .unwrap();
    let error = load(&path, Device::Cpu).unwrap_err();
    assert!(
        matches!(error, CheckpointError::NotACheckpoint { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("has no `fa.meta` entry"),
        "{error}"
    );

    let text = dir.path().join("notes.safetensors");
    std::fs::write(&text, b"these are not tensors at all, just text").unwrap();
    assert!(matches!(
        load(&text, Device::Cpu).unwrap_err(),
        CheckpointError::NotACheckpoint { .. }
    ));

    let missing = load(&dir.path().join("missing.safetensors"), Device::Cpu).unwrap_err();
    assert!(matches!(missing, CheckpointError::Io { .. }), "{missing}");
}

#[test]
fn a_checkpoint_of_another_model_names_every_differing_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = load(&saved(dir.path(), 1), Device::Cpu).unwrap();
    let mut expected: Vec<(String, Vec<i64>)> = ckpt
        .tensors
        .iter()
        .filter(|(name, _)| !name.starts_with("optim/"))
        .map(|(name, tensor)| (name.clone(), tensor.size()))
        .collect();
    check_compatible(&ckpt, &expected).unwrap();

    for (name, shape) in &mut expected {
        if name == "encoder.weight" {
            *shape = vec![8, 3];
        }
    }
    expected.retain(|(name, _)| name != "half");
    expected.push(("predictor.weight".to_string(), vec![2, 2]));
    let error = check_compatible(&ckpt, &expected).unwrap_err();
    let CheckpointError::Mismatch { problems } = &error else {
        panic!("{error}")
    };
    assert!(problems.contains(&TensorMismatch::Shape {
        name: "encoder.weight".to_string(),
        expected: vec![8, 3],
        found: vec![4, 3]
    }));
    assert!(problems.contains(&TensorMismatch::Missing {
        name: "predictor.weight".to_string()
    }));
    assert!(problems.contains(&TensorMismatch::Unexpected {
        name: "half".to_string()
    }));
    assert_eq!(problems.len(), 3);
    let message = error.to_string();
    assert!(
        message.starts_with("checkpoint does not match the model: "),
        "{message}"
    );
    assert!(message.contains(
        "tensor `encoder.weight` has shape [4, 3] in the checkpoint but the model expects [8, 3]"
    ));
}

#[test]
fn an_interrupted_save_never_replaces_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let good = saved(dir.path(), 5);
    // A crash while writing step 10 leaves only its temporary file behind.
    let folder = good.parent().unwrap();
    std::fs::write(
        folder.join(".step-000010.safetensors.999.tmp"),
        b"half a checkp",
    )
    .unwrap();
    assert_eq!(latest(dir.path()).as_deref(), Some(good.as_path()));
    assert_eq!(load(&good, Device::Cpu).unwrap().meta.step, 5);

    // Overwriting an existing checkpoint goes through a rename too: the old file is either
    // fully there or fully replaced, and no temporary file of ours is left behind.
    let mut replacement = meta(5);
    replacement.position = 0;
    save(
        &good,
        &Checkpoint {
            tensors: tensors(),
            meta: replacement.clone(),
        },
    )
    .unwrap();
    assert_eq!(load(&good, Device::Cpu).unwrap().meta, replacement);
    let leftovers: Vec<_> = std::fs::read_dir(folder)
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".tmp") && !name.contains(".999."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn latest_picks_the_highest_step() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(latest(dir.path()), None);
    for step in [3, 120, 45] {
        saved(dir.path(), step);
    }
    // A seven-digit step sorts after six-digit ones by number, not by name.
    let big = saved(dir.path(), 1_000_000);
    std::fs::write(dir.path().join("checkpoints/notes.txt"), b"x").unwrap();
    assert_eq!(latest(dir.path()), Some(big));
    std::fs::remove_file(checkpoint_path(dir.path(), 1_000_000)).unwrap();
    assert_eq!(latest(dir.path()), Some(checkpoint_path(dir.path(), 120)));
}
