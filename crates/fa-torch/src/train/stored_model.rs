//! The resolved model a run folder stores (`model.json`), with the run-folder format version,
//! and the identity of a configuration: what makes two stored models the same run.

use fa_lang::ir::Model;

use super::checkpoint::FORMAT_VERSION;

/// Why a stored model cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum StoredModelError {
    #[error("it is not a stored model: {0}")]
    NotAModel(#[from] serde_json::Error),
    #[error("it was written in run format {found}; this fa reads format {FORMAT_VERSION} (docs/randomness.md) and would not resume or evaluate it the same way: train into a new folder, or use the fa that wrote it")]
    Format { found: u64 },
}

/// `model.json`: the run-folder format and the resolved model.
pub fn to_json(model: &Model) -> String {
    let envelope = serde_json::json!({ "format": FORMAT_VERSION, "model": model });
    serde_json::to_string_pretty(&envelope).expect("models serialise")
}

/// Reads `model.json` back; a run of another format (or from before formats were recorded,
/// when the file was the bare model) is refused.
pub fn from_json(text: &str) -> Result<Model, StoredModelError> {
    let mut value: serde_json::Value = serde_json::from_str(text)?;
    let found = value
        .get("format")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1);
    if found != u64::from(FORMAT_VERSION) {
        return Err(StoredModelError::Format { found });
    }
    let model = value
        .get_mut("model")
        .map(serde_json::Value::take)
        .unwrap_or_default();
    Ok(serde_json::from_value(model)?)
}

/// Whether two stored models (as [`to_json`] writes them, or any JSON) describe the same
/// configuration: equal once byte spans are left out, so that a comment or a blank line
/// added to the `.fa` file does not make a run another configuration.
pub fn same_configuration(a: &str, b: &str) -> bool {
    let parse = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text).map(|mut value| {
            strip_spans(&mut value);
            value
        })
    };
    match (parse(a), parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Removes every `span` field, however deep: spans move when a comment is added.
pub(crate) fn strip_spans(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("span");
            map.values_mut().for_each(strip_spans);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_spans),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(source: &str) -> Model {
        fa_lang::driver::compile_source("m.fa", source, &[])
            .unwrap_or_else(|report| panic!("{}", fa_lang::diag::render(&report, 100, false)))
            .cells
            .remove(0)
            .0
            .model
    }

    const SOURCE: &str = "model m\ndata { format: idx, path: \"x\", image_size: 8, channels: 1 }\npipeline p = [flip]\nencoder f = convnet(4)\nprojector g = mlp(8)\na = view(p) -> f -> g\nb = view(p) -> f -> g\nloss infonce { a ~ b }\n";

    #[test]
    fn comments_and_spacing_do_not_change_the_configuration() {
        let plain = to_json(&model(SOURCE));
        let commented = to_json(&model(&format!("// a comment\n\n{SOURCE}")));
        assert_ne!(plain, commented, "the spans differ");
        assert!(same_configuration(&plain, &commented));
        let other = to_json(&model(&SOURCE.replace("convnet(4)", "convnet(8)")));
        assert!(!same_configuration(&plain, &other));
    }

    #[test]
    fn a_stored_model_round_trips_and_other_formats_are_refused() {
        let stored = to_json(&model(SOURCE));
        assert_eq!(from_json(&stored).unwrap().name, "m");
        // A run written before formats were recorded held the bare model.
        let bare = serde_json::to_string(&model(SOURCE)).unwrap();
        let error = from_json(&bare).unwrap_err();
        assert!(
            matches!(error, StoredModelError::Format { found: 1 }),
            "{error}"
        );
        assert!(error.to_string().contains("run format 1"));
        let future = stored.replace(&format!("\"format\": {FORMAT_VERSION}"), "\"format\": 99");
        assert!(matches!(
            from_json(&future),
            Err(StoredModelError::Format { found: 99 })
        ));
    }
}
