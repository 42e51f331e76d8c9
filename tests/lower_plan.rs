//! The lowering plan, without libtorch: parameter tables, counts and the printed form.

use fa_lang::ir::{ModuleKind, ModuleRole, Norm, Stem};
use fa_lang::plan::{module_params, thousands};
use fa_lang::plan::{plan, ParamKind};
use fa_lang::testing::{architecture, every_fa_method, Architecture, ModelBuilder, Widths};

fn trainable_count(kind: ModuleKind, channels: usize) -> usize {
    let input = fa_lang::ir::FeatureShape::Image {
        channels,
        height: 32,
        width: 32,
    };
    module_params(&kind, input)
        .iter()
        .filter(|(_, _, buffer)| !buffer)
        .map(|(_, shape, _)| shape.iter().product::<usize>())
        .sum()
}

#[test]
fn resnet_trainable_counts_match_torchvision_without_classifier() {
    let resnet = |depth, stem| ModuleKind::ResNet { depth, stem };
    assert_eq!(trainable_count(resnet(18, Stem::Imagenet), 3), 11_176_512);
    assert_eq!(trainable_count(resnet(18, Stem::Cifar), 3), 11_168_832);
    assert_eq!(trainable_count(resnet(50, Stem::Imagenet), 3), 23_508_032);
    assert_eq!(trainable_count(resnet(50, Stem::Cifar), 3), 23_500_352);
    // torchvision resnet34 has 21,797,672 parameters, 513,000 of them in the classifier.
    assert_eq!(
        trainable_count(resnet(34, Stem::Imagenet), 3),
        21_797_672 - 513_000
    );
}

#[test]
fn resnet_names_are_torchvision_state_dict_keys() {
    let input = fa_lang::ir::FeatureShape::Image {
        channels: 3,
        height: 32,
        width: 32,
    };
    let params = module_params(
        &ModuleKind::ResNet {
            depth: 50,
            stem: Stem::Imagenet,
        },
        input,
    );
    let names: Vec<&str> = params.iter().map(|(name, _, _)| name.as_str()).collect();
    for expected in [
        "conv1.weight",
        "bn1.running_mean",
        "bn1.num_batches_tracked",
        "layer1.0.conv3.weight",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.running_var",
        "layer4.2.bn3.bias",
    ] {
        assert!(names.contains(&expected), "{expected} missing");
    }
    assert!(!names.contains(&"layer1.1.downsample.0.weight"));
    // torchvision's resnet50 state_dict has 320 entries; fc.weight and fc.bias are dropped.
    assert_eq!(names.len(), 318);
}

#[test]
fn mlp_bias_only_without_batch_norm_after_it() {
    let kind = ModuleKind::Mlp {
        widths: vec![64, 16],
        norm: Norm::Batch,
        last_norm: false,
    };
    let params = module_params(
        &kind,
        fa_lang::ir::FeatureShape::Vector {
            width: 32,
            samples: 1,
        },
    );
    let names: Vec<&str> = params.iter().map(|(name, _, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "layers.0.linear.weight",
            "layers.0.bn.weight",
            "layers.0.bn.bias",
            "layers.0.bn.running_mean",
            "layers.0.bn.running_var",
            "layers.0.bn.num_batches_tracked",
            "layers.1.linear.weight",
            "layers.1.linear.bias",
        ]
    );
    assert_eq!(params[0].1, vec![64, 32]);
}

#[test]
fn plan_lists_ema_copies_and_banks_separately() {
    let (_, method) = every_fa_method(128)
        .into_iter()
        .find(|(name, _)| *name == "nn")
        .unwrap();
    let valid = architecture(Architecture::Byol, &Widths::tiny(), Some((method, 2)));
    let plan = plan(&valid);
    let online: usize = plan
        .params
        .iter()
        .filter(|p| p.name.starts_with("f.") || p.name.starts_with("g."))
        .map(|p| p.numel())
        .sum();
    // The target copies f and g, buffers included.
    assert_eq!(plan.ema, online);
    assert!(plan
        .params
        .iter()
        .all(|p| (p.kind == ParamKind::Ema) == p.name.starts_with("ema.target.")));
    let bank: Vec<_> = plan
        .params
        .iter()
        .filter(|p| p.kind == ParamKind::Bank)
        .collect();
    assert_eq!(bank.len(), 3);
    assert_eq!(bank[0].name, "bank.augmented.features");
    assert_eq!(bank[0].shape, vec![128, 16]);
    assert_eq!(plan.bank, 128 * 16 + 128 + 1);
}

#[test]
fn plan_shapes_carry_fa_samples() {
    let (_, method) = every_fa_method(64)
        .into_iter()
        .find(|(name, _)| *name == "mask")
        .unwrap();
    let valid = architecture(
        Architecture::PrePredictor,
        &Widths::tiny(),
        Some((method, 4)),
    );
    let plan = plan(&valid);
    let op = plan
        .ops
        .iter()
        .find(|op| op.node == "augmented_prediction")
        .unwrap();
    assert_eq!(op.inputs[0].shape, "4×[N,16]");
    assert_eq!(op.output.as_deref(), Some("4×[N,16]"));
    let loss = plan.ops.iter().find(|op| op.node == "fa_term").unwrap();
    assert!(loss.config.contains("×4"), "{}", loss.config);
}

#[test]
fn plan_prints_operations_and_parameter_table() {
    // Built in code rather than from a `.fa` fixture: the snapshot names the loss term
    // `term`, and a `.fa` file names each term after its two sides (`za~positive`).
    let valid = ModelBuilder::new("small", 1, 28)
        .module(
            "f",
            ModuleRole::Encoder,
            ModuleKind::ConvNet { widths: vec![4] },
        )
        .module(
            "g",
            ModuleRole::Projector,
            ModuleKind::Mlp {
                widths: vec![8],
                norm: Norm::None,
                last_norm: false,
            },
        )
        .view("a", "weak")
        .view("b", "weak")
        .apply("ha", "f", "a")
        .apply("za", "g", "ha")
        .apply("hb", "f", "b")
        .apply("zb", "g", "hb")
        .stopgrad("positive", "zb")
        .loss(
            "term",
            fa_lang::ir::LossKind::InfoNce {
                tau: 0.2,
                negatives: fa_lang::ir::Negatives::Positives,
            },
            false,
            "za",
            "positive",
        )
        .validate();
    insta::assert_snapshot!(plan(&valid).to_string());
}

#[test]
fn thousands_groups_digits() {
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(1000), "1,000");
    assert_eq!(thousands(11_168_832), "11,168,832");
}
