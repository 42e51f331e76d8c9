//! The `fa augment` preview grid.

mod support;

use fa_torch::data::{byol_pipelines, preview_grid, ImageSet};

/// Eight 32×32 colour images of smooth gradients (deterministic).
fn gradients() -> ImageSet {
    let mut images = Vec::new();
    for n in 0..8usize {
        for c in 0..3usize {
            for y in 0..32usize {
                for x in 0..32usize {
                    images.push(((x * (c + 1) * 3 + y * 5 + n * 29) % 256) as u8);
                }
            }
        }
    }
    ImageSet {
        images,
        labels: None,
        len: 8,
        channels: 3,
        height: 32,
        width: 32,
        classes: vec![],
        skipped: 0,
    }
}

#[test]
fn grid_has_the_stated_size_and_views_differ_from_originals() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("grid.png");
    let (strong, light) = byol_pipelines(32);
    let pipelines = [
        ("strong".to_string(), &strong),
        ("light".to_string(), &light),
    ];
    let (count, views) = (3usize, 2usize);
    let (width, height) =
        preview_grid(&gradients(), &pipelines, 3, count, views, 42, &out).unwrap();

    // Tiles of 32 pixels magnified ×3 to 96, 4-pixel gaps around every tile; one original
    // plus two views of each of two pipelines per row.
    let columns = 1 + 2 * views as u32;
    assert_eq!(
        (width, height),
        (
            columns * 96 + (columns + 1) * 4,
            count as u32 * 96 + (count as u32 + 1) * 4
        )
    );
    let png = image::open(&out).unwrap().into_rgb8();
    assert_eq!(png.dimensions(), (width, height));

    // Each view tile differs from its row's original tile.
    let tile = |row: u32, column: u32| -> Vec<u8> {
        let (x0, y0) = (4 + column * 100, 4 + row * 100);
        let png = &png;
        (0..96)
            .flat_map(|y| (0..96).flat_map(move |x| png.get_pixel(x0 + x, y0 + y).0))
            .collect()
    };
    for row in 0..count as u32 {
        let original = tile(row, 0);
        for column in 1..columns {
            let view = tile(row, column);
            let differing = original.iter().zip(&view).filter(|(a, b)| a != b).count();
            assert!(
                differing > original.len() / 10,
                "row {row} column {column}: only {differing} values differ"
            );
        }
    }
}

#[test]
fn grid_refuses_an_empty_set() {
    let dir = tempfile::tempdir().unwrap();
    let empty = ImageSet {
        images: vec![],
        labels: None,
        len: 0,
        channels: 3,
        height: 32,
        width: 32,
        classes: vec![],
        skipped: 0,
    };
    let (strong, _) = byol_pipelines(32);
    assert!(preview_grid(
        &empty,
        &[("s".to_string(), &strong)],
        3,
        4,
        2,
        0,
        &dir.path().join("g.png")
    )
    .is_err());
}

/// Regenerates `docs/augment-cifar10.png`:
/// `cargo test --test data_preview -- --ignored write_docs_preview`.
#[test]
#[ignore = "writes docs/augment-cifar10.png from the shared CIFAR-10 archive"]
fn write_docs_preview() {
    use fa_lang::ir::DatasetFormat;
    use fa_torch::data::{load, LoadOptions};

    let root = support::data::cifar10_root();
    let cfg = support::data::dataset_config(DatasetFormat::ImageFolder, "cifar10", 32, 3);
    let set = load(&cfg, &root, "test", &LoadOptions::default()).unwrap();
    let (strong, light) = byol_pipelines(32);
    let out = support::project_path("docs/augment-cifar10.png");
    let (width, height) = preview_grid(
        &set,
        &[
            ("byol_strong".to_string(), &strong),
            ("byol_light".to_string(), &light),
        ],
        3,
        8,
        4,
        2024,
        &out,
    )
    .unwrap();
    println!("wrote {} ({width}x{height})", out.display());
}
