//! One training step from Rust: build a model, lower it, run forward, backward and an SGD step.
//!
//! The model is built in code (a tiny Parallel-predictor-FA network with NN augmentation);
//! once the front end lands, `fa_lang::resolve` can compile `models/quickstart.fa` instead.
//! Run with `cargo run --example step [-- --device cpu|cuda]`.

use fa_lang::plan::plan;
use fa_lang::testing::{architecture, nn, Architecture, Widths};
use fa_torch::lower::{parse_device, Network};
use tch::nn::OptimizerConfig;
use tch::{Kind, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let device = match args.iter().position(|a| a == "--device") {
        Some(i) => parse_device(args.get(i + 1).map(String::as_str).unwrap_or("auto"))?,
        None => parse_device("auto")?,
    };
    tch::manual_seed(0);
    let valid = architecture(
        Architecture::ParallelPredictor,
        &Widths::tiny(),
        Some((nn(256), 1)),
    );
    println!("{}", plan(&valid));

    let store = tch::nn::VarStore::new(device);
    let mut network = Network::new(&store.root(), &valid)?;
    let mut optimiser = tch::nn::Sgd {
        momentum: 0.9,
        ..Default::default()
    }
    .build(&store, 0.05)?;

    let data = &valid.model().data;
    let batch = data.batch_size as i64;
    let shape = [
        batch,
        data.channels as i64,
        data.image_size as i64,
        data.image_size as i64,
    ];
    // Stand-ins for the data module's two augmented views of one batch.
    let views: Vec<Tensor> = valid
        .views()
        .iter()
        .map(|_| Tensor::randn(shape, (Kind::Float, device)))
        .collect();
    let indices = Tensor::arange(batch, (Kind::Int64, device));

    let output = network.forward(&views, &indices, true);
    optimiser.backward_step(&output.total);
    let momentum = network.update_targets(1.0 / 100.0);
    println!("\ndevice {device:?}");
    println!("total loss {:.4}", output.total.double_value(&[]));
    for (name, value) in &output.terms {
        println!("  {name}: {:.4}", value.double_value(&[]));
    }
    println!("ema momentum {momentum:?}");
    Ok(())
}
