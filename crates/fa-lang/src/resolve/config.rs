//! The configuration sections (`data`, `optim`, `train`, `eval`): merging blocks and recipes
//! in statement order, then reading them into the IR's config structs with their defaults.

use std::collections::BTreeMap;

use super::params::{
    callee, check_usize, choice, quote_list, type_error, unknown_name, Params, Range,
};
use super::program::{ConfigSource, Program};
use super::vocabulary::{OPTIMISERS, SECTIONS, SECTION_BLOCKS};
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::*;
use crate::syntax::ast::{Expr, ExprKind, Record};

/// The merged sections: each a record, later entries overriding earlier ones key by key.
pub fn merge(program: &Program, diags: &mut Vec<Diagnostic>) -> BTreeMap<String, Record> {
    let mut sections: BTreeMap<String, Record> = BTreeMap::new();
    for source in &program.config {
        match source {
            ConfigSource::Block { section, body } => {
                let target = sections
                    .entry(section.text.clone())
                    .or_insert_with(|| Record {
                        entries: Vec::new(),
                        span: body.span,
                    });
                target.span = body.span;
                duplicate_keys(body, diags);
                merge_into(target, body);
            }
            ConfigSource::Recipe(name) => {
                let Some(recipe) = program.recipes.get(&name.text) else {
                    let diagnostic = Diagnostic::error(
                        "fa::resolve::unknown_recipe",
                        name.span,
                        format!("no recipe named `{}`", name.text),
                        "unknown recipe",
                    );
                    let help = did_you_mean(&name.text, program.recipes.keys().map(String::as_str))
                        .unwrap_or_else(|| "define it with `recipe NAME { optim { ... } }`, or `use` the file that does".into());
                    diags.push(diagnostic.with_help(help));
                    continue;
                };
                duplicate_keys(&recipe.value, diags);
                for entry in &recipe.value.entries {
                    let ExprKind::Record(body) = &entry.value.kind else {
                        diags.push(type_error(&entry.value, "a section block `{ ... }`"));
                        continue;
                    };
                    if !SECTIONS.contains(&entry.key.text) {
                        let diagnostic = Diagnostic::error(
                            "fa::resolve::unknown_param",
                            entry.key.span,
                            format!(
                                "a recipe holds sections, and `{}` is not one",
                                entry.key.text
                            ),
                            "unknown section",
                        );
                        let help =
                            did_you_mean(&entry.key.text, SECTIONS.names()).unwrap_or_else(|| {
                                format!("sections are {}", quote_list(&SECTIONS.names()))
                            });
                        diags.push(diagnostic.with_help(help));
                        continue;
                    }
                    let target = sections
                        .entry(entry.key.text.clone())
                        .or_insert_with(|| Record {
                            entries: Vec::new(),
                            span: body.span,
                        });
                    merge_into(target, body);
                }
            }
        }
    }
    sections
}

/// A key written twice in one record (`batch: 32` then `batch: 64`) is an error: later
/// blocks and recipes override earlier ones, but inside one block a repeat is a slip.
/// Nested records are checked too; the nested records of a recipe are its section blocks.
fn duplicate_keys(record: &Record, diags: &mut Vec<Diagnostic>) {
    let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
    for entry in &record.entries {
        if let Some(&first) = seen.get(entry.key.text.as_str()) {
            diags.push(
                Diagnostic::error(
                    "fa::resolve::duplicate_param",
                    entry.key.span,
                    format!("`{}` is given twice in this block", entry.key.text),
                    "given again here",
                )
                .with_related(first, "first given here")
                .with_help("remove one of them; to override a value, write it in a later block or a recipe"),
            );
        } else {
            seen.insert(&entry.key.text, entry.key.span);
        }
        if let ExprKind::Record(inner) = &entry.value.kind {
            duplicate_keys(inner, diags);
        }
    }
}

fn merge_into(target: &mut Record, source: &Record) {
    for entry in &source.entries {
        match target
            .entries
            .iter_mut()
            .find(|e| e.key.text == entry.key.text)
        {
            Some(existing) => match (&mut existing.value.kind, &entry.value.kind) {
                (ExprKind::Record(old), ExprKind::Record(new)) => {
                    merge_into(old, new);
                    existing.key = entry.key.clone();
                }
                _ => *existing = entry.clone(),
            },
            None => target.entries.push(entry.clone()),
        }
    }
}

fn params<'a>(
    what: &str,
    record: Option<&'a Record>,
    fallback: Span,
    diags: &mut Vec<Diagnostic>,
) -> Params<'a> {
    let allowed = SECTIONS.params(what);
    match record {
        Some(record) => Params::of_record(format!("the `{what}` block"), record, allowed, diags),
        None => Params::empty(format!("the `{what}` block"), fallback, allowed),
    }
}

pub fn data(record: Option<&Record>, fallback: Span, diags: &mut Vec<Diagnostic>) -> DataConfig {
    let defaults = DataConfig::default();
    let mut p = params("data", record, fallback, diags);
    let format = p.choice(
        "format",
        defaults.format,
        &[
            ("idx", DatasetFormat::Idx),
            ("cifar_binary", DatasetFormat::CifarBinary),
            ("image_folder", DatasetFormat::ImageFolder),
        ],
        diags,
    );
    let path = p.string("path", diags);
    if path.is_none() && p.get("path").is_none() {
        diags.push(
            Diagnostic::error(
                "fa::resolve::missing_param",
                p.span,
                "the `data` block needs a `path`",
                "no `path` here",
            )
            .with_help(
                "add `path: \"fashion-mnist\"`: the dataset folder relative to the data root",
            ),
        );
    }
    if let Some(path) = &path {
        if path.starts_with('/') {
            let expr = p.get("path").expect("path was read");
            diags.push(
                Diagnostic::error(
                    "fa::resolve::absolute_path",
                    expr.span,
                    "`path` must be relative to the data root",
                    "absolute path",
                )
                .with_help("give the folder under the data root (`--data-root` or FA_DATA_ROOT)"),
            );
        }
    }
    let (default_size, default_channels, default_test) = format.defaults();
    let train_split = p
        .string("train_split", diags)
        .unwrap_or(defaults.train_split);
    let test_split = p
        .string("test_split", diags)
        .unwrap_or_else(|| default_test.into());
    let image_size = p.usize("image_size", default_size, 8, diags);
    let channels = match p.get("channels") {
        Some(expr) => match check_usize(expr, "channels", 1, diags) {
            Some(c @ (1 | 3)) => c,
            Some(c) => {
                // Not a range: 2 lies inside [1, 3] and is still wrong.
                diags.push(
                    Diagnostic::error(
                        "fa::resolve::range",
                        expr.span,
                        format!("`channels` must be 1 or 3, found {c}"),
                        "not 1 or 3",
                    )
                    .with_help("images have 1 (grey) or 3 (colour) channels"),
                );
                default_channels
            }
            None => default_channels,
        },
        None => default_channels,
    };
    let batch_size = p.usize("batch", defaults.batch_size, 1, diags);
    let limit = p.opt_usize("limit", defaults.limit, 1, diags);
    let span = p.span;
    p.finish(diags);
    DataConfig {
        format,
        path: path.unwrap_or_default(),
        train_split,
        test_split,
        image_size,
        channels,
        batch_size,
        limit,
        span,
    }
}

pub fn optim(record: Option<&Record>, fallback: Span, diags: &mut Vec<Diagnostic>) -> OptimConfig {
    let defaults = OptimConfig::default();
    let mut p = params("optim", record, fallback, diags);
    let kind = match p.get("method") {
        None => defaults.kind,
        Some(expr) => optim_kind(expr, diags),
    };
    let mut lr = match p.get("lr") {
        None => defaults.lr,
        Some(expr) => learning_rate(expr, diags),
    };
    lr.basis = p.choice(
        "lr_basis",
        defaults.lr.basis,
        &[("effective", LrBasis::Effective), ("batch", LrBasis::Batch)],
        diags,
    );
    let momentum = p.f64(
        "momentum",
        defaults.momentum,
        Range {
            min: 0.0,
            min_inclusive: true,
            max: 1.0,
            max_inclusive: false,
        },
        diags,
    );
    let weight_decay = p.f64(
        "weight_decay",
        defaults.weight_decay,
        Range::NON_NEGATIVE,
        diags,
    );
    let warmup_epochs = p.f64("warmup", defaults.warmup_epochs, Range::NON_NEGATIVE, diags);
    let schedule = p.choice(
        "schedule",
        defaults.schedule,
        &[
            ("cosine", Schedule::Cosine),
            ("constant", Schedule::Constant),
        ],
        diags,
    );
    let accumulate = p.usize("accumulate", defaults.accumulate, 1, diags);
    let clip_grad_norm = match p.get("clip") {
        None => defaults.clip_grad_norm,
        Some(expr) if matches!(&expr.kind, ExprKind::Name(n) if n == "none") => None,
        Some(expr) => match &expr.kind {
            ExprKind::Number { value, .. } if *value > 0.0 && value.is_finite() => Some(*value),
            ExprKind::Number { value, .. } => {
                diags.push(super::params::range_error(
                    expr,
                    "clip",
                    *value,
                    Range::POSITIVE,
                    None,
                ));
                None
            }
            _ => {
                diags.push(type_error(expr, "a positive number or `none`"));
                None
            }
        },
    };
    let span = p.span;
    p.finish(diags);
    OptimConfig {
        kind,
        lr,
        momentum,
        weight_decay,
        warmup_epochs,
        schedule,
        accumulate,
        clip_grad_norm,
        span,
    }
}

fn optim_kind(expr: &Expr, diags: &mut Vec<Diagnostic>) -> OptimKind {
    let Some((name, args, span)) = callee(expr, "`sgd` or `lars(...)`", diags) else {
        return OptimKind::Sgd;
    };
    match name {
        "sgd" => {
            Params::of_call("`sgd`", span, args, OPTIMISERS.params("sgd"), diags).finish(diags);
            OptimKind::Sgd
        }
        "lars" => {
            let mut p = Params::of_call("`lars`", span, args, OPTIMISERS.params("lars"), diags);
            let trust = p.f64("trust", LARS_TRUST, Range::POSITIVE, diags);
            let clip = p.bool("clip", false, diags);
            p.finish(diags);
            OptimKind::Lars { trust, clip }
        }
        other => {
            diags.push(unknown_name(
                "fa::resolve::unknown_choice",
                span,
                (format!("unknown optimiser `{other}`"), "unknown optimiser"),
                other,
                &OPTIMISERS.names(),
                || "use `sgd` or `lars(trust: 0.001)`".into(),
            ));
            OptimKind::Sgd
        }
    }
}

fn learning_rate(expr: &Expr, diags: &mut Vec<Diagnostic>) -> LearningRate {
    let fallback = LearningRate::default();
    let (value_expr, scaling) = match &expr.kind {
        ExprKind::Number { .. } => (expr, LrScaling::Absolute),
        ExprKind::Per { value, per } => {
            if !matches!(&per.kind, ExprKind::Number { value, .. } if *value == 256.0) {
                diags.push(
                    Diagnostic::error(
                        "fa::resolve::lr_scaling",
                        per.span,
                        "only `per 256` scaling is supported",
                        "not 256",
                    )
                    .with_help(
                        "write the rate per 256 images, e.g. `0.3 per 256`, or an absolute rate",
                    ),
                );
                return fallback;
            }
            (&**value, LrScaling::Per256)
        }
        _ => {
            diags.push(type_error(expr, "a learning rate (`0.4` or `0.4 per 256`)"));
            return fallback;
        }
    };
    let ExprKind::Number { value, .. } = &value_expr.kind else {
        return fallback;
    };
    if !Range::POSITIVE.contains(*value) {
        diags.push(super::params::range_error(
            value_expr,
            "lr",
            *value,
            Range::POSITIVE,
            None,
        ));
        return fallback;
    }
    LearningRate {
        value: *value,
        scaling,
        ..fallback
    }
}

pub fn train(record: Option<&Record>, fallback: Span, diags: &mut Vec<Diagnostic>) -> TrainConfig {
    let defaults = TrainConfig::default();
    let mut p = params("train", record, fallback, diags);
    let epochs = p.usize("epochs", defaults.epochs, 1, diags);
    let seed = p.usize("seed", defaults.seed as usize, 0, diags) as u64;
    let precision = p.choice(
        "precision",
        defaults.precision,
        &[
            ("f32", Precision::F32),
            // f16 is not offered: every device refuses it (see fa_torch::train::precision).
            ("bf16", Precision::Bf16),
        ],
        diags,
    );
    let checkpoint_every = p.usize("checkpoint_every", defaults.checkpoint_every, 1, diags);
    let knn_every = p.usize("knn_every", defaults.knn_every, 0, diags);
    let keep_checkpoints = p.usize("keep_checkpoints", defaults.keep_checkpoints, 1, diags);
    let sync_batch_norm = p.bool("sync_batch_norm", defaults.sync_batch_norm, diags);
    let span = p.span;
    p.finish(diags);
    TrainConfig {
        epochs,
        seed,
        precision,
        checkpoint_every,
        knn_every,
        keep_checkpoints,
        sync_batch_norm,
        span,
    }
}

/// `eval { knn { ... } linear { ... } }`; without an `eval` block, kNN with its defaults.
/// `knn: none` or `linear: none` turns one off (useful over a recipe).
pub fn eval(record: Option<&Record>, fallback: Span, diags: &mut Vec<Diagnostic>) -> EvalConfig {
    let Some(record) = record else {
        return EvalConfig {
            knn: Some(KnnConfig {
                span: fallback,
                ..KnnConfig::default()
            }),
            ..EvalConfig::default()
        };
    };
    let mut p = Params::of_record("the `eval` block", record, SECTIONS.params("eval"), diags);
    let knn = p
        .get("knn")
        .and_then(|expr| sub_record(expr, diags))
        .map(|knn| {
            let mut q = Params::of_record("`knn`", knn, SECTION_BLOCKS.params("knn"), diags);
            let defaults = KnnConfig::default();
            let k = q.usize("k", defaults.k, 1, diags);
            let temperature = q.f64("tau", defaults.temperature, Range::POSITIVE, diags);
            q.finish(diags);
            KnnConfig {
                k,
                temperature,
                span: knn.span,
            }
        });
    let linear = p
        .get("linear")
        .and_then(|expr| sub_record(expr, diags))
        .map(|linear| {
            let mut q =
                Params::of_record("`linear`", linear, SECTION_BLOCKS.params("linear"), diags);
            let defaults = LinearConfig::default();
            let epochs = q.usize("epochs", defaults.epochs, 1, diags);
            let lr = q.f64("lr", defaults.lr, Range::POSITIVE, diags);
            let batch_size = q.usize("batch", defaults.batch_size, 1, diags);
            let momentum = q.f64(
                "momentum",
                defaults.momentum,
                Range {
                    min: 0.0,
                    min_inclusive: true,
                    max: 1.0,
                    max_inclusive: false,
                },
                diags,
            );
            let weight_decay = q.f64(
                "weight_decay",
                defaults.weight_decay,
                Range::NON_NEGATIVE,
                diags,
            );
            let milestones = match q.get("milestones") {
                None => defaults
                    .milestones
                    .into_iter()
                    .filter(|m| *m < epochs)
                    .collect(),
                Some(expr) => milestones(expr, epochs, diags),
            };
            let mode = q.choice(
                "mode",
                defaults.mode,
                &[
                    ("augmented", LinearMode::Augmented),
                    ("features", LinearMode::Features),
                ],
                diags,
            );
            q.finish(diags);
            LinearConfig {
                epochs,
                lr,
                batch_size,
                momentum,
                weight_decay,
                milestones,
                mode,
                span: linear.span,
            }
        });
    p.finish(diags);
    EvalConfig { knn, linear }
}

fn sub_record<'a>(expr: &'a Expr, diags: &mut Vec<Diagnostic>) -> Option<&'a Record> {
    match &expr.kind {
        ExprKind::Record(record) => Some(record),
        ExprKind::Name(name) if name == "none" => None,
        _ => {
            diags.push(type_error(expr, "a block `{ ... }` or `none`"));
            None
        }
    }
}

fn milestones(expr: &Expr, epochs: usize, diags: &mut Vec<Diagnostic>) -> Vec<usize> {
    let ExprKind::List(items) = &expr.kind else {
        diags.push(type_error(expr, "a list of epochs `[40, 50, 55]`"));
        return Vec::new();
    };
    let mut out: Vec<usize> = Vec::new();
    for item in items {
        let Some(value) = check_usize(item, "milestones", 1, diags) else {
            continue;
        };
        if value >= epochs {
            diags.push(
                Diagnostic::error(
                    "fa::resolve::range",
                    item.span,
                    format!("milestone {value} is not before the last epoch ({epochs})"),
                    "never reached",
                )
                .with_help("milestones are epochs at which the rate is divided by 10"),
            );
            continue;
        }
        if out.last().is_some_and(|last| *last >= value) {
            diags.push(Diagnostic::error(
                "fa::resolve::range",
                item.span,
                "milestones must increase",
                "not after the previous one",
            ));
            continue;
        }
        out.push(value);
    }
    out
}

/// Reads a combine mode.
pub fn combine(expr: &Expr, diags: &mut Vec<Diagnostic>) -> Option<Combine> {
    choice(
        expr,
        "combine",
        &[("mean", Combine::Mean), ("free", Combine::Free)],
        diags,
    )
}
