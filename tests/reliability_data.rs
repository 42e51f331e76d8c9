//! Damaged datasets are refused with a message, never a panic or an aborted allocation
//! (docs/reliability.md): an IDX header declaring empty images, a tar member declaring a size
//! no image has.

use std::path::Path;

use fa_lang::ir::{DataConfig, DatasetFormat, Span};
use fa_torch::data::{load, DataError, LoadOptions};

fn config(format: DatasetFormat, channels: usize) -> DataConfig {
    DataConfig {
        format,
        path: "d".to_string(),
        train_split: "train".to_string(),
        test_split: "test".to_string(),
        image_size: 4,
        channels,
        batch_size: 8,
        limit: None,
        span: Span::default(),
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn an_idx_header_declaring_zero_by_zero_images_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vec![0, 0, 8, 3];
    for dim in [5u32, 0, 0] {
        bytes.extend_from_slice(&dim.to_be_bytes());
    }
    write(&dir.path().join("d/train-images-idx3-ubyte"), &bytes);
    let error = load(
        &config(DatasetFormat::Idx, 1),
        dir.path(),
        "train",
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(error, DataError::EmptyImages { .. }), "{error:?}");
    assert!(error.to_string().contains("0×0 images"), "{error}");
}

/// Sets the size field of the first tar header to `size` and recomputes its checksum.
fn declare_size(tar: &mut [u8], size: u64) {
    let field = format!("{size:011o}\0");
    tar[124..136].copy_from_slice(field.as_bytes());
    tar[148..156].copy_from_slice(b"        ");
    let sum: u32 = tar[..512].iter().map(|&byte| byte as u32).sum();
    tar[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

#[test]
fn a_tar_member_declaring_a_huge_size_is_refused_without_allocating_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "train/cat/a.png", &b"fake"[..])
        .unwrap();
    let mut tar = builder.into_inner().unwrap();
    declare_size(&mut tar, 0o77777777777);
    write(&dir.path().join("d/train.tar"), &tar);
    let error = load(
        &config(DatasetFormat::ImageFolder, 3),
        dir.path(),
        "train",
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(error, DataError::MemberTooLarge { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("train/cat/a.png"), "{error}");
}
