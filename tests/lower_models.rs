//! The lowering of every file in `models/`: the plan of every sweep cell is pinned by a
//! snapshot, and every cell takes one forward and backward step on the CPU.

mod support;

use support::models::cells;
use support::{is_library, model_files};

/// Operations and totals of every cell; the full parameter table of the file's first cell
/// (the cells of one file share their modules and differ in FA nodes and banks, which the
/// operations and totals show).
#[test]
fn the_plan_of_every_model_and_sweep_cell() {
    insta::glob!("../models", "**/*.fa", |path| {
        if is_library(path) {
            return;
        }
        let mut text = String::new();
        for (index, (name, valid)) in cells(path, &[]).iter().enumerate() {
            let plan = fa_lang::plan::plan(valid).to_string();
            text += &format!("# {name}\n");
            if index == 0 {
                text += &plan;
            } else {
                let operations = plan.split("\nparameters:").next().unwrap_or(&plan);
                let totals = plan
                    .split("\ntrainable parameters:")
                    .nth(1)
                    .map(|rest| format!("\ntrainable parameters:{rest}"))
                    .unwrap_or_default();
                text += operations;
                text += &totals;
            }
            text += "\n\n";
        }
        insta::assert_snapshot!(text);
    });
}
#[test]
fn every_model_and_sweep_cell_takes_a_finite_forward_and_backward_step() {
    use tch::{nn, Device, Kind, Tensor};
    let files = model_files();
    let mut stepped = 0;
    for path in files.iter().filter(|p| !is_library(p)) {
        // Small images and batches keep ResNet-50 cheap; the widths are the file's own.
        for (name, valid) in cells(path, &["data.image_size=32", "data.batch=4"]) {
            tch::manual_seed(0);
            let vs = nn::VarStore::new(Device::Cpu);
            let mut network = fa_torch::lower::Network::new(&vs.root(), &valid)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let channels = valid.model().data.channels as i64;
            let views: Vec<Tensor> = valid
                .views()
                .iter()
                .map(|_| Tensor::randn([4, channels, 32, 32], (Kind::Float, Device::Cpu)))
                .collect();
            let indices = Tensor::arange(4, (Kind::Int64, Device::Cpu));
            let output = network.forward(&views, &indices, true);
            let total = output.total.double_value(&[]);
            assert!(total.is_finite(), "{name}: loss {total}");
            if output.total.requires_grad() {
                output.total.backward();
            }
            network.update_targets(0.5);
            stepped += 1;
        }
    }
    assert!(stepped >= 100, "only {stepped} cells stepped");
}
