//! The readers on the real datasets: Fashion-MNIST from Debian (installed by `./dev`) and
//! CIFAR-10 from `../shared/datasets` (not installed by `./dev`, so run with `--ignored`).

mod support;

use fa_lang::ir::DatasetFormat;
use fa_torch::data::{load, LoadOptions};
use support::data::{cifar10_root, dataset_config as config, fashion_root};

#[test]
#[ignore = "needs CIFAR-10 from ../shared/datasets, which ./dev does not install; run with --ignored"]
fn real_cifar10_test_archive() {
    let root = cifar10_root();
    let set = load(
        &config(DatasetFormat::ImageFolder, "cifar10", 32, 3),
        &root,
        "test",
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(
        (set.len, set.channels, set.height, set.width, set.skipped),
        (10_000, 3, 32, 32, 0)
    );
    assert_eq!(
        set.classes,
        [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck"
        ]
    );
    let labels = set.labels.as_ref().unwrap();
    for class in 0..10 {
        assert_eq!(labels.iter().filter(|&&l| l == class).count(), 1000);
    }
    // Real photographs: pixels spread over the range, not a constant fill.
    let mean = set.images.iter().map(|&v| v as f64).sum::<f64>() / set.images.len() as f64;
    assert!((90.0..160.0).contains(&mean), "mean pixel {mean}");
}

#[test]
fn real_fashion_mnist() {
    let root = fashion_root();
    let cfg = config(DatasetFormat::Idx, "fashion-mnist", 28, 1);
    let train = load(&cfg, &root, "train", &LoadOptions::default()).unwrap();
    let test = load(&cfg, &root, "test", &LoadOptions::default()).unwrap();
    assert_eq!(
        (train.len, train.channels, train.height, train.width),
        (60_000, 1, 28, 28)
    );
    assert_eq!(test.len, 10_000);
    assert_eq!(train.classes.len(), 10);
    let labels = test.labels.as_ref().unwrap();
    for class in 0..10 {
        assert_eq!(labels.iter().filter(|&&l| l == class).count(), 1000);
    }
}
