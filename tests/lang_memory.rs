//! The memory estimate of `fa check` against a small model worked out by hand, and its
//! scaling with the batch and the bank.

use fa_lang::driver::compile_source;
use fa_lang::plan::{memory_estimate, MemoryEstimate};

fn estimate(batch: usize, bank: usize) -> MemoryEstimate {
    let source = format!(
        r#"model m
data {{ format: idx, path: "fashion-mnist", limit: 1000, batch: {batch} }}
pipeline p = [crop]
encoder f = convnet(8)
projector g = mlp(16, norm: none)
anchor = view(p) -> f -> g
positive = view(p) -> f -> g -> stopgrad -> fa nn(bank: {bank})
loss infonce(tau: 0.2) {{ anchor ~ positive }}
"#
    );
    let compiled = compile_source("m.fa", &source, &[])
        .unwrap_or_else(|report| panic!("{}", fa_lang::diag::render(&report, 100, false)));
    memory_estimate(&compiled.cells[0].1)
}

#[test]
fn a_small_model_matches_the_count_by_hand() {
    let m = estimate(32, 100);
    // Trainable: conv 8·1·3·3 = 72, BN 8 + 8, linear 16·8 = 128 and its bias 16: 232 scalars,
    // each with a gradient and a momentum buffer, 4 bytes each.
    assert_eq!(m.parameters, 232 * 3 * 4);
    // BN running mean 8, variance 8, counter 1.
    assert_eq!(m.buffers, 17 * 4);
    // Bank: 100 × 16 features (f32), 100 indices (i64), a pointer.
    assert_eq!(m.banks, 100 * 16 * 4 + 100 * 8 + 4);
    // Two views of 1 × 28 × 28 images, 32 of each.
    assert_eq!(m.batch, 2 * 28 * 28 * 32 * 4);
    // Per image and branch: conv, BN, ReLU at 8 × 28 × 28, pooled 8 × 14 × 14; the MLP's
    // three outputs of 16; the neighbour (16); InfoNCE logits and softmax, 32 × 32 each.
    let per_image = 2 * (3 * 8 * 28 * 28 + 8 * 14 * 14 + 3 * 16) + 16;
    assert_eq!(m.activations, (per_image * 32 + 2 * 32 * 32) * 4);
    assert_eq!(
        m.device,
        m.parameters + m.buffers + m.banks + m.batch + m.activations
    );
    assert_eq!(m.dataset, Some(1000 * 28 * 28));
}

#[test]
fn the_estimate_grows_with_the_batch_and_the_bank_as_it_should() {
    let small = estimate(32, 100);
    let double = estimate(64, 100);
    assert_eq!(double.parameters, small.parameters);
    assert_eq!(double.batch, 2 * small.batch);
    // Linear in the batch, plus the quadratic logits.
    assert_eq!(
        double.activations - 2 * small.activations,
        2 * 64 * 64 * 4 - 2 * 2 * 32 * 32 * 4
    );
    let big_bank = estimate(32, 1_000_100);
    assert_eq!(big_bank.banks - small.banks, 1_000_000 * (16 * 4 + 8));
}
