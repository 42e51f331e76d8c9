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

/// A `.tar.gz` with a flipped byte fails with a message in plain text: the archive's name and
/// what is wrong, no binary junk from the damaged stream.
#[test]
fn a_damaged_tar_gz_is_refused_in_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    for index in 0..4 {
        let mut header = tar::Header::new_gnu();
        let bytes = vec![index as u8; 2000];
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("train/cat/{index}.png"), &bytes[..])
            .unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, &tar).unwrap();
    let gz = encoder.finish().unwrap();
    for position in [gz.len() / 3, gz.len() / 2, gz.len() - 6] {
        let mut damaged = gz.clone();
        damaged[position] ^= 0x5a;
        write(&dir.path().join("d/train.tar.gz"), &damaged);
        let error = load(
            &config(DatasetFormat::ImageFolder, 3),
            dir.path(),
            "train",
            &LoadOptions::default(),
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("train.tar.gz"),
            "byte {position}: {message}"
        );
        assert!(
            message
                .chars()
                .all(|c| !c.is_control()
                    && (c.is_ascii() || c.is_alphanumeric() || "×—–…’".contains(c))),
            "byte {position}: {message:?}"
        );
    }
}

/// A dataset that is not where the data root says names the paths tried and the ways to
/// point fa at the data.
#[test]
fn a_missing_dataset_says_how_to_point_fa_at_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let error = load(
        &config(DatasetFormat::Idx, 1),
        dir.path(),
        "train",
        &LoadOptions::default(),
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, DataError::MissingSplit { .. }), "{error:?}");
    assert!(
        message.contains("--data-root") && message.contains("FA_DATA_ROOT"),
        "{message}"
    );
}
