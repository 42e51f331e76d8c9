//! Dataset readers on generated files: IDX, CIFAR binary, image folders and archives, their
//! errors, and the data root. The real datasets are read in `data_real.rs`.

use std::io::Write;
mod support;

use std::path::{Path, PathBuf};

use fa_lang::ir::{DataConfig, DatasetFormat};
use fa_torch::data::{data_root, load, DataError, ImageSet, LoadOptions};
use flate2::write::GzEncoder;
use flate2::Compression;
use support::data::dataset_config as config;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, 3];
    for dim in [count, rows, cols] {
        bytes.extend_from_slice(&dim.to_be_bytes());
    }
    bytes.extend_from_slice(pixels);
    bytes
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, 1];
    bytes.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    bytes.extend_from_slice(labels);
    bytes
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Five 3×4 images whose pixel `k` of image `i` is `10·i + k`.
fn idx_pixels() -> Vec<u8> {
    (0..5u8)
        .flat_map(|i| (0..12u8).map(move |k| 10 * i + k))
        .collect()
}

#[test]
fn idx_reads_plain_and_gzipped_files_with_big_endian_dims() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    write(
        &base.join("train-images-idx3-ubyte"),
        &idx_images(5, 3, 4, &idx_pixels()),
    );
    write(
        &base.join("train-labels-idx1-ubyte"),
        &idx_labels(&[3, 1, 4, 1, 5]),
    );
    write(
        &base.join("t10k-images-idx3-ubyte.gz"),
        &gzip(&idx_images(5, 3, 4, &idx_pixels())),
    );
    write(
        &base.join("t10k-labels-idx1-ubyte.gz"),
        &gzip(&idx_labels(&[2, 7, 1, 8, 2])),
    );
    let cfg = config(DatasetFormat::Idx, "mnist", 3, 1);

    // Non-square 3×4 images are brought to the storage size 3×3 (centre square).
    let train = load(&cfg, dir.path(), "train", &LoadOptions::default()).unwrap();
    assert_eq!(
        (train.len, train.channels, train.height, train.width),
        (5, 1, 3, 3)
    );
    assert_eq!(train.labels.as_deref(), Some(&[3, 1, 4, 1, 5][..]));
    assert_eq!(train.classes.len(), 6);

    let test = load(
        &cfg,
        dir.path(),
        "test",
        &LoadOptions {
            limit: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(test.len, 2);
    assert_eq!(test.labels.as_deref(), Some(&[2, 7][..]));
    // The class count comes from all labels, not only the limited ones.
    assert_eq!(test.classes.len(), 9);
}

#[test]
fn idx_pixels_are_kept_exactly_at_native_size() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..2 * 4 * 4).map(|k| (k * 7) as u8).collect();
    write(
        &dir.path().join("d/train-images-idx3-ubyte.gz"),
        &gzip(&idx_images(2, 4, 4, &pixels)),
    );
    let set = load(
        &config(DatasetFormat::Idx, "d", 4, 1),
        dir.path(),
        "train",
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(set.images, pixels);
    // Without a labels file the set is unlabelled (enough for pre-training).
    assert_eq!(set.labels, None);
}

#[test]
fn idx_errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(DatasetFormat::Idx, "d", 4, 1);
    let base = dir.path().join("d");

    write(
        &base.join("train-images-idx3-ubyte"),
        &idx_labels(&[1, 2, 3]),
    );
    let error = load(&cfg, dir.path(), "train", &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(
            error,
            DataError::BadMagic {
                found: 0x801,
                expected: 0x803,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("train-images-idx3-ubyte"),
        "{error}"
    );

    let mut truncated = idx_images(3, 4, 4, &[0; 40]);
    truncated.truncate(4 + 12 + 40);
    write(&base.join("train-images-idx3-ubyte"), &truncated);
    let error = load(&cfg, dir.path(), "train", &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(
            error,
            DataError::Truncated {
                expected: 64,
                found: 56,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("truncated"), "{error}");

    // A header cut short is truncated too, not a panic.
    write(&base.join("train-images-idx3-ubyte"), &[0, 0, 8, 3, 0, 0]);
    assert!(matches!(
        load(&cfg, dir.path(), "train", &LoadOptions::default()),
        Err(DataError::Truncated { .. })
    ));

    write(
        &base.join("train-images-idx3-ubyte"),
        &idx_images(3, 4, 4, &[0; 48]),
    );
    write(&base.join("train-labels-idx1-ubyte"), &idx_labels(&[1, 2]));
    let error = load(&cfg, dir.path(), "train", &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(
            error,
            DataError::CountMismatch {
                images: 3,
                labels: 2,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("train-labels-idx1-ubyte"),
        "{error}"
    );

    let error = load(&cfg, dir.path(), "validation", &LoadOptions::default()).unwrap_err();
    assert!(matches!(error, DataError::MissingSplit { .. }), "{error:?}");
    assert!(
        error.to_string().contains("validation-images-idx3-ubyte"),
        "{error}"
    );
}

/// A PNG of `width`×`height` whose pixel (x, y) is `colour(x, y)`.
fn png(width: u32, height: u32, colour: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb(colour(x, y)));
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

fn grey_png(width: u32, height: u32, value: u8) -> Vec<u8> {
    let image = image::GrayImage::from_pixel(width, height, image::Luma([value]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

/// The files of a small two-class split: `zebra` (2 images) and `ant` (3 images), each
/// image a solid colour that encodes its class and number.
fn small_split() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for n in 0..3u8 {
        files.push((
            format!("ant/{n}.png"),
            png(4, 4, move |_, _| [10 + n, 20, 30]),
        ));
    }
    for n in 0..2u8 {
        files.push((
            format!("zebra/{n}.png"),
            png(4, 4, move |_, _| [200 + n, 100, 50]),
        ));
    }
    files
}

fn check_small_split(set: &ImageSet) {
    assert_eq!(set.classes, vec!["ant".to_string(), "zebra".to_string()]);
    assert_eq!((set.len, set.channels, set.height, set.width), (5, 3, 4, 4));
    assert_eq!(set.labels.as_deref(), Some(&[0, 0, 0, 1, 1][..]));
    // Planar layout: the whole red plane of image 1 is 11, then green 20, then blue 30.
    let image = set.image(1);
    assert!(
        image[..16].iter().all(|&v| v == 11)
            && image[16..32].iter().all(|&v| v == 20)
            && image[32..].iter().all(|&v| v == 30)
    );
    assert_eq!(set.image(4)[0], 201);
}

fn tar_of(files: &[(String, Vec<u8>)], prefix: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("{prefix}{name}"), bytes.as_slice())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn image_folders_and_archives_give_the_same_set() {
    let dir = tempfile::tempdir().unwrap();
    let files = small_split();
    for (name, bytes) in &files {
        write(&dir.path().join("folder/train").join(name), bytes);
    }
    write(
        &dir.path().join("gz/train.tar.gz"),
        &gzip(&tar_of(&files, "train/")),
    );
    write(&dir.path().join("plain/train.tar"), &tar_of(&files, "./"));
    for path in ["folder", "gz", "plain"] {
        let set = load(
            &config(DatasetFormat::ImageFolder, path, 4, 3),
            dir.path(),
            "train",
            &LoadOptions::default(),
        )
        .unwrap();
        check_small_split(&set);
    }
}

#[test]
fn image_folder_limit_keeps_every_class() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in small_split() {
        write(&dir.path().join("d/train").join(name), &bytes);
    }
    let set = load(
        &config(DatasetFormat::ImageFolder, "d", 4, 3),
        dir.path(),
        "train",
        &LoadOptions {
            limit: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(set.labels.as_deref(), Some(&[0, 1][..]));
}

#[test]
fn images_of_other_sizes_are_centre_cropped_then_resized() {
    let dir = tempfile::tempdir().unwrap();
    // 12 wide, 6 high: red in the outer three columns each side, blue in the centre
    // 6×6 square. Centre square then resize to 3 must be all blue.
    let wide = png(12, 6, |x, _| {
        if !(3..9).contains(&x) {
            [255, 0, 0]
        } else {
            [0, 0, 255]
        }
    });
    write(&dir.path().join("d/train/c/a.png"), &wide);
    let set = load(
        &config(DatasetFormat::ImageFolder, "d", 3, 3),
        dir.path(),
        "train",
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!((set.height, set.width), (3, 3));
    assert_eq!(
        set.images,
        [vec![0u8; 9], vec![0u8; 9], vec![255u8; 9]].concat()
    );
}

#[test]
fn greyscale_files_are_replicated_and_colour_files_refused_for_one_channel() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("d/train/c/grey.png"), &grey_png(4, 4, 77));
    let set = load(
        &config(DatasetFormat::ImageFolder, "d", 4, 3),
        dir.path(),
        "train",
        &LoadOptions::default(),
    )
    .unwrap();
    assert!(set.images.iter().all(|&v| v == 77) && set.images.len() == 48);
    let grey = load(
        &config(DatasetFormat::ImageFolder, "d", 4, 1),
        dir.path(),
        "train",
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(grey.images, vec![77u8; 16]);

    write(
        &dir.path().join("d/train/c/red.png"),
        &png(4, 4, |_, _| [255, 0, 0]),
    );
    let error = load(
        &config(DatasetFormat::ImageFolder, "d", 4, 1),
        dir.path(),
        "train",
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(error, DataError::ColourImage { .. }) && error.to_string().contains("red.png"),
        "{error}"
    );
}

#[test]
fn undecodable_archive_member_is_named_or_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = small_split();
    files.push((
        "zebra/broken.png".to_string(),
        b"\x89PNG\r\n\x1a\nnot really".to_vec(),
    ));
    write(
        &dir.path().join("d/train.tar.gz"),
        &gzip(&tar_of(&files, "train/")),
    );
    let cfg = config(DatasetFormat::ImageFolder, "d", 4, 3);
    let error = load(&cfg, dir.path(), "train", &LoadOptions::default()).unwrap_err();
    assert!(matches!(error, DataError::Decode { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("train.tar.gz:train/zebra/broken.png"),
        "{message}"
    );

    let set = load(
        &cfg,
        dir.path(),
        "train",
        &LoadOptions {
            skip_bad: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(set.skipped, 1);
    check_small_split(&set);
}

#[test]
fn empty_class_folder_and_missing_split_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in small_split() {
        write(&dir.path().join("d/train").join(name), &bytes);
    }
    std::fs::create_dir_all(dir.path().join("d/train/moth")).unwrap();
    let cfg = config(DatasetFormat::ImageFolder, "d", 4, 3);
    let error = load(&cfg, dir.path(), "train", &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(&error, DataError::EmptyClass { class, .. } if class == "moth"),
        "{error:?}"
    );
    assert!(error.to_string().contains("moth"));

    let error = load(&cfg, dir.path(), "test", &LoadOptions::default()).unwrap_err();
    assert!(matches!(error, DataError::MissingSplit { .. }), "{error:?}");
    assert!(error.to_string().contains("test.tar.gz"), "{error}");
}

/// CIFAR records: `label_bytes` label bytes (the last one is the label) then 3072 pixels.
fn cifar_records(labels: &[u8], label_bytes: usize, first_pixel: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, &label) in labels.iter().enumerate() {
        if label_bytes == 2 {
            bytes.push(label / 5); // a coarse label that must be ignored
        }
        bytes.push(label);
        bytes.extend((0..3072).map(|k| {
            first_pixel
                .wrapping_add(i as u8)
                .wrapping_add((k / 1024) as u8)
        }));
    }
    bytes
}

#[test]
fn cifar10_binary_batches_are_read_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("c10/cifar-10-batches-bin");
    for batch in 1..=5u8 {
        write(
            &base.join(format!("data_batch_{batch}.bin")),
            &cifar_records(&[batch, 9], 1, 10 * batch),
        );
    }
    write(
        &base.join("test_batch.bin"),
        &cifar_records(&[0, 1, 2], 1, 0),
    );
    let cfg = config(DatasetFormat::CifarBinary, "c10", 32, 3);
    let train = load(&cfg, dir.path(), "train", &LoadOptions::default()).unwrap();
    assert_eq!(
        (train.len, train.channels, train.height, train.width),
        (10, 3, 32, 32)
    );
    assert_eq!(
        train.labels.as_deref(),
        Some(&[1, 9, 2, 9, 3, 9, 4, 9, 5, 9][..])
    );
    assert_eq!(train.classes[0], "airplane");
    // Image 3 is the second record of batch 2: red plane 21, green 22, blue 23.
    assert_eq!(
        (
            train.image(3)[0],
            train.image(3)[1024],
            train.image(3)[2048]
        ),
        (21, 22, 23)
    );

    let limited = load(
        &cfg,
        dir.path(),
        "train",
        &LoadOptions {
            limit: Some(3),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(limited.labels.as_deref(), Some(&[1, 9, 2][..]));

    write(
        &base.join("test_batch.bin"),
        &cifar_records(&[0, 1, 2], 1, 0)[..3 * 3073 - 5],
    );
    let error = load(&cfg, dir.path(), "test", &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(error, DataError::Truncated { .. })
            && error.to_string().contains("test_batch.bin"),
        "{error}"
    );

    write(&base.join("test_batch.bin"), &cifar_records(&[0, 10], 1, 0));
    let error = load(&cfg, dir.path(), "test", &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(error, DataError::LabelOutOfRange { label: 10, .. }),
        "{error:?}"
    );

    // One channel cannot hold CIFAR's colour images.
    let error = load(
        &DataConfig { channels: 1, ..cfg },
        dir.path(),
        "test",
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(error, DataError::ChannelMismatch { .. }),
        "{error:?}"
    );
}

#[test]
fn cifar100_uses_the_fine_label() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("c100/cifar-100-binary");
    write(&base.join("train.bin"), &cifar_records(&[42, 99, 7], 2, 0));
    write(
        &base.join("fine_label_names.txt"),
        (0..100)
            .map(|c| format!("class{c}\n"))
            .collect::<String>()
            .as_bytes(),
    );
    let set = load(
        &config(DatasetFormat::CifarBinary, "c100", 32, 3),
        dir.path(),
        "train",
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(set.labels.as_deref(), Some(&[42, 99, 7][..]));
    assert_eq!(set.classes.len(), 100);
    assert_eq!(set.classes[42], "class42");
    assert_eq!(set.image(1)[0], 1);
    let error = load(
        &config(DatasetFormat::CifarBinary, "c100", 32, 3),
        dir.path(),
        "test",
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(error, DataError::MissingSplit { .. }), "{error:?}");
}

#[test]
fn impossible_configurations_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (size, channels) in [(0, 3), (32, 2)] {
        let error = load(
            &config(DatasetFormat::ImageFolder, "d", size, channels),
            dir.path(),
            "train",
            &LoadOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(error, DataError::InvalidConfig { .. }),
            "{error:?}"
        );
    }
}

/// Set in the child process that checks what the environment gives: the expected data root.
const EXPECTED_DATA_ROOT: &str = "FA_TEST_EXPECTED_DATA_ROOT";

#[test]
fn data_root_prefers_the_flag_then_the_environment() {
    // The child processes started below run this test again with the environment to check.
    if let Some(expected) = std::env::var_os(EXPECTED_DATA_ROOT) {
        assert_eq!(data_root(None), PathBuf::from(expected));
        assert_eq!(data_root(Some(Path::new("/x/y"))), PathBuf::from("/x/y"));
        return;
    }
    assert_eq!(data_root(Some(Path::new("/x/y"))), PathBuf::from("/x/y"));
    // Setting the variable here would race with other threads reading the environment.
    for (value, expected) in [(Some("/from/env"), "/from/env"), (None, "data")] {
        support::process::run_test_in_child(
            "data_root_prefers_the_flag_then_the_environment",
            &[
                ("FA_DATA_ROOT", value),
                (EXPECTED_DATA_ROOT, Some(expected)),
            ],
        );
    }
}
