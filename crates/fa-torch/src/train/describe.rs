//! The few lines `fa train` prints about what it is about to train.

use fa_lang::valid::ValidModel;

/// A few lines describing what will be trained: modules, parameters, terms, schedule.
pub fn describe(valid: &ValidModel) -> String {
    let model = valid.model();
    let plan = fa_lang::plan::plan(valid);
    let data = &model.data;
    let optim = &model.optim;
    let mut lines =
        vec![
            format!(
                "  data     {:?} `{}` split {} (eval on {}), {}×{}×{}, batch {} × accumulate {}{}",
                data.format,
                data.path,
                data.train_split,
                data.test_split,
                data.channels,
                data.image_size,
                data.image_size,
                data.batch_size,
                optim.accumulate,
                data.limit
                    .map_or(String::new(), |limit| format!(", first {limit} images"))
            ),
            format!(
                "  modules  {} ({} trainable parameters)",
                model.modules.keys().cloned().collect::<Vec<_>>().join(", "),
                plan.trainable
            ),
            format!(
                "  loss     {} term(s) combined {:?}",
                valid.term_count(),
                model.combine
            ),
            format!(
            "  optim    {:?}, peak lr {}, momentum {}, weight decay {}, warm-up {} epochs, {:?}{}",
            optim.kind,
            optim.lr.derivation(data.batch_size, optim.accumulate),
            optim.momentum,
            optim.weight_decay,
            optim.warmup_epochs,
            optim.schedule,
            optim.clip_grad_norm.map_or(String::new(), |clip| format!(", clip {clip}"))
        ),
            format!(
                "  train    {} epochs, seed {}, {:?}",
                model.train.epochs, model.train.seed, model.train.precision
            ),
        ];
    if let Some(knn) = &model.eval.knn {
        lines.push(format!("  eval     kNN k {} T {}", knn.k, knn.temperature));
    }
    if let Some(linear) = &model.eval.linear {
        lines.push(format!(
            "  eval     linear probe {:?}, {} epochs, lr {}",
            linear.mode, linear.epochs, linear.lr
        ));
    }
    lines.join("\n")
}
