//! The library API the CLI uses: overrides, sweeps, cell names, `fa none` as the identity,
//! I/O errors, and the values validation records for lowering.

mod support;

use fa_lang::driver::{compile_file, compile_source};
use fa_lang::ir::{Combine, FaMethod, LrScaling, NodeKind};
use fa_lang::resolve::Override;
use std::path::Path;

fn set(text: &str) -> Override {
    text.parse().expect("well-formed override")
}

#[test]
fn override_parsing() {
    assert_eq!(
        set("optim.lr=0.3"),
        Override {
            key: "optim.lr".into(),
            value: "0.3".into()
        }
    );
    assert_eq!(
        set("eval.knn.k = 20"),
        Override {
            key: "eval.knn.k".into(),
            value: "20".into()
        }
    );
    assert!("optim.lr".parse::<Override>().is_err());
    assert!("=3".parse::<Override>().is_err());
    assert!("a=".parse::<Override>().is_err());
}

#[test]
fn overrides_change_the_model() {
    support::enter_project_root();
    let overrides = [
        set("optim.lr=0.3"),
        set("train.epochs=1"),
        set("data.limit=512"),
        set("data.batch=64"),
        set("eval.knn.k=7"),
        set("g.norm=none"),
    ];
    let compiled = compile_file(Path::new("models/quickstart.fa"), &overrides).expect("valid");
    let model = &compiled.cells[0].0.model;
    assert_eq!(model.optim.lr.value, 0.3);
    assert_eq!(model.optim.lr.scaling, LrScaling::Absolute);
    assert_eq!(model.train.epochs, 1);
    assert_eq!(model.data.limit, Some(512));
    assert_eq!(model.data.batch_size, 64);
    assert_eq!(model.eval.knn.as_ref().expect("knn").k, 7);
    assert!(matches!(
        model.modules["g"].kind,
        fa_lang::ir::ModuleKind::Mlp {
            norm: fa_lang::ir::Norm::None,
            last_norm: false,
            ..
        }
    ));
    // Overrides are validated like the file.
    let report = compile_file(Path::new("models/quickstart.fa"), &[set("train.epochs=0")])
        .expect_err("out of range");
    assert_eq!(report.codes(), vec!["fa::resolve::range"]);
}

#[test]
fn missing_file_is_an_io_error() {
    let report = compile_file(Path::new("models/does_not_exist.fa"), &[]).expect_err("missing");
    assert!(report.io_error().is_some());
    assert!(report.has_errors());
}

#[test]
fn table_one_rows_have_six_cells_and_no_fa_is_the_baseline() {
    support::enter_project_root();
    let compiled =
        compile_file(Path::new("models/table1/parallel_predictor.fa"), &[]).expect("valid");
    let names: Vec<&str> = compiled
        .cells
        .iter()
        .map(|(c, _)| c.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "parallel_predictor[fa=none]",
            "parallel_predictor[fa=mask]",
            "parallel_predictor[fa=nn]",
            "parallel_predictor[fa=nn_noise]",
            "parallel_predictor[fa=batch_noise]",
            "parallel_predictor[fa=gaussian_noise]"
        ]
    );
    let (cell, none) = &compiled.cells[0];
    assert_eq!(cell.labels, vec![("fa".to_string(), "none".to_string())]);
    assert_eq!(
        none.terms().len(),
        1,
        "the FA term duplicates the original one and is dropped"
    );
    assert!(!none
        .model()
        .graph
        .node_weights()
        .any(|n| matches!(n.kind, NodeKind::FeatureAug(_))));
    let nn = &compiled.cells[2].1;
    assert_eq!(nn.term_count(), 2);
    // A sweep axis can be pinned from the command line.
    let one = compile_file(
        Path::new("models/table1/parallel_predictor.fa"),
        &[set("fa=mask")],
    )
    .expect("valid");
    assert_eq!(one.cells.len(), 1);
    assert!(one.cells[0].0.model.graph.node_weights().any(|n| matches!(&n.kind, NodeKind::FeatureAug(fa) if matches!(fa.method, FaMethod::Mask { .. }))));
}

#[test]
fn post_predictor_nn_term_is_gradient_free() {
    support::enter_project_root();
    let compiled = compile_file(
        Path::new("models/table1/post_predictor.fa"),
        &[set("fa=nn")],
    )
    .expect("valid with warnings");
    let valid = &compiled.cells[0].1;
    let free: Vec<bool> = valid.terms().iter().map(|t| t.gradient_free).collect();
    assert_eq!(free, vec![true, false]);
    assert!(compiled
        .report
        .codes()
        .contains(&"fa::valid::gradient_free_term"));
    // With mask the same term carries gradient.
    let mask = compile_file(
        Path::new("models/table1/post_predictor.fa"),
        &[set("fa=mask")],
    )
    .expect("valid");
    assert!(mask.cells[0].1.terms().iter().all(|t| !t.gradient_free));
}

#[test]
fn byol_four_samples_free_loss() {
    support::enter_project_root();
    let compiled = compile_file(
        Path::new("models/table4/byol_fa.fa"),
        &[set("samples=4"), set("combine=free"), set("fa=nn")],
    )
    .expect("valid");
    assert_eq!(compiled.cells.len(), 1);
    let (cell, valid) = &compiled.cells[0];
    assert_eq!(cell.name, "byol_fa[samples=4,combine=free,fa=nn]");
    assert_eq!(valid.model().combine, Combine::Free);
    let multiplicities: Vec<usize> = valid.terms().iter().map(|t| t.multiplicity).collect();
    assert_eq!(multiplicities, vec![1, 4]);
    assert_eq!(
        valid.term_count(),
        5,
        "free = 5× the averaged loss for k = 4"
    );
    assert!(valid
        .model()
        .graph
        .node_weights()
        .any(|n| matches!(n.kind, NodeKind::Apply { ref module } if module == "t")));
}

#[test]
fn shapes_and_order() {
    support::enter_project_root();
    let compiled = compile_file(Path::new("models/quickstart.fa"), &[]).expect("valid");
    let valid = &compiled.cells[0].1;
    assert_eq!(valid.views().len(), 2);
    let anchor = valid.node_by_name("anchor").expect("anchor");
    assert_eq!(
        valid.shape(anchor),
        fa_lang::ir::FeatureShape::Vector {
            width: 128,
            samples: 1
        }
    );
    let position = |n| {
        valid
            .order()
            .iter()
            .position(|x| *x == n)
            .expect("in order")
    };
    for term in valid.terms() {
        assert!(
            position(term.left) < position(term.node) && position(term.right) < position(term.node)
        );
    }
    assert!(!valid.carries_gradient(valid.node_by_name("positive").expect("positive")));
    assert!(valid.carries_gradient(anchor));
}

#[test]
fn use_paths_are_relative_to_the_using_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("lib")).expect("mkdir");
    std::fs::write(
        dir.path().join("lib/a.fa"),
        "use \"b.fa\"\npipeline p = [crop]\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("lib/b.fa"), "encoder f = convnet(8, 16)\n").expect("write");
    let main = "model m\nuse \"lib/a.fa\"\ndata { path: \"x\" }\nprojector g = mlp(16)\nx = view(p) -> f -> g\ny = view(p) -> f -> g -> stopgrad\nloss infonce { x ~ y }\n";
    std::fs::write(dir.path().join("main.fa"), main).expect("write");
    let compiled = compile_file(&dir.path().join("main.fa"), &[]).expect("valid");
    assert_eq!(compiled.cells[0].0.name, "m");
    assert_eq!(compiled.sources().files.len(), 3);
}

#[test]
fn errors_are_sorted_and_all_reported() {
    let text = "model m\ndata { path: \"x\", batch: 0 }\npipeline p = [crop(scale: (2, 1))]\nencoder f = convnet(0)\nx = view(p) -> f\nloss infonce(tau: -1) { x ~ nothing }\n";
    let report = compile_source("m.fa", text, &[]).expect_err("invalid");
    let starts: Vec<usize> = report.diagnostics.iter().map(|d| d.span.start).collect();
    let mut sorted = starts.clone();
    sorted.sort();
    assert_eq!(starts, sorted);
    assert!(report.error_count() >= 4, "{:?}", report.codes());
}

#[test]
fn dot_marks_stopgrad_fa_and_ema() {
    support::enter_project_root();
    let compiled = compile_file(Path::new("models/quickstart.fa"), &[]).expect("valid");
    let dot = fa_lang::graph::to_dot(&compiled.cells[0].1);
    assert!(dot.starts_with("digraph \"quickstart\" {"));
    assert!(
        dot.contains("\"positive.3\" -> \"augmented\" [style=dashed"),
        "{dot}"
    );
    assert!(dot.contains("\"augmented\" [label=") && dot.contains("shape=diamond"));
    let byol = compile_file(Path::new("models/baselines/byol.fa"), &[]).expect("valid");
    let dot = fa_lang::graph::to_dot(&byol.cells[0].1);
    assert!(dot.contains("shape=doubleoctagon"), "{dot}");
}
