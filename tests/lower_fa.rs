//! Properties of the feature-augmentation operators and the feature bank.

use fa_torch::lower::fa::{
    apply_mask, draw_gaussian, draw_lambda, draw_mask, draw_other, l2_normalize, mixup,
    straight_through, Bank,
};
use tch::{Device, Kind, Tensor};

fn unit_rows(rows: i64, width: i64) -> Tensor {
    l2_normalize(&Tensor::randn([rows, width], (Kind::Float, Device::Cpu)))
}

#[test]
fn mask_zeroes_exactly_round_rate_d_and_never_rescales() {
    tch::manual_seed(1);
    for (width, rate) in [(256usize, 0.2), (10, 0.25), (7, 0.5), (16, 0.0), (5, 1.0)] {
        let unit = unit_rows(32, width as i64);
        let mask = draw_mask(32, width, rate, Device::Cpu);
        let masked = apply_mask(&unit, &mask);
        let expected = (rate * width as f64).round() as i64;
        let zeros = masked
            .eq(0.0)
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Int64);
        assert_eq!(
            Vec::<i64>::try_from(&zeros).unwrap(),
            vec![expected; 32],
            "width {width} rate {rate}"
        );
        // Kept components hold exactly their old value.
        let kept = masked.ne(0.0);
        assert!(masked
            .masked_select(&kept)
            .equal(&unit.masked_select(&kept)));
    }
    // Different rows draw different masks.
    let mask = draw_mask(64, 256, 0.2, Device::Cpu);
    assert!(!mask.get(0).equal(&mask.get(1)));
}

#[test]
fn nn_returns_stored_vectors_in_rank_order() {
    // Bank entries at known angles to the query e₀: entry i has cosine cos_i with it.
    let cosines = [0.1f32, 0.9, -0.5, 0.7, 0.3];
    let rows: Vec<f32> = cosines
        .iter()
        .flat_map(|&c| [c, (1.0 - c * c).sqrt(), 0.0])
        .collect();
    let features = Tensor::from_slice(&rows).view([5, 3]);
    let bank = Bank::from_tensors(
        features.copy(),
        Tensor::from_slice(&[10i64, 11, 12, 13, 14]),
        0,
    );
    let query = Tensor::from_slice(&[1.0f32, 0.0, 0.0]).view([1, 3]);
    let found = bank.lookup(&query, &Tensor::from_slice(&[99i64]), 3, true);
    assert_eq!(
        Vec::<i64>::try_from(&found.indices.flatten(0, -1)).unwrap(),
        vec![11, 13, 14]
    );
    for (j, entry) in [1i64, 3, 4].iter().enumerate() {
        assert!(found.features[j].get(0).equal(&features.get(*entry)));
    }
}

#[test]
fn nn_never_returns_self_with_exclude_self() {
    tch::manual_seed(2);
    let stored = unit_rows(16, 8);
    let bank = Bank::from_tensors(
        stored.copy(),
        Tensor::arange(16, (Kind::Int64, Device::Cpu)),
        0,
    );
    // Each query is exactly a stored vector, so without exclusion it finds itself.
    let queries = stored.narrow(0, 0, 6);
    let own = Tensor::arange(6, (Kind::Int64, Device::Cpu));
    let with_self = bank.lookup(&queries, &own, 1, false);
    assert!(with_self.indices.flatten(0, -1).equal(&own));
    let without = bank.lookup(&queries, &own, 2, true);
    let picked = Vec::<i64>::try_from(&without.indices.flatten(0, -1)).unwrap();
    for (row, pair) in picked.chunks(2).enumerate() {
        assert!(
            !pair.contains(&(row as i64)),
            "row {row} found itself: {pair:?}"
        );
    }
}

#[test]
fn fifo_pointer_wraps() {
    let mut bank = Bank::from_tensors(
        Tensor::zeros([5, 2], (Kind::Float, Device::Cpu)),
        Tensor::full([5], -1, (Kind::Int64, Device::Cpu)),
        3,
    );
    let batch = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, -1.0, 0.0]).view([3, 2]);
    bank.enqueue(&batch, &Tensor::from_slice(&[7i64, 8, 9]));
    assert_eq!(bank.pointer(), 1);
    assert_eq!(
        Vec::<i64>::try_from(&bank.indices).unwrap(),
        vec![9, -1, -1, 7, 8]
    );
    assert!(bank.features.get(0).equal(&batch.get(2)));
    assert!(bank.features.get(3).equal(&batch.get(0)));
    // A batch larger than the bank keeps its newest rows.
    let big = Tensor::arange(14, (Kind::Float, Device::Cpu)).view([7, 2]);
    bank.enqueue(&big, &Tensor::arange(7, (Kind::Int64, Device::Cpu)));
    assert_eq!(bank.pointer(), 1);
    assert_eq!(
        Vec::<i64>::try_from(&bank.indices).unwrap(),
        vec![6, 2, 3, 4, 5]
    );
}

#[test]
fn mixup_lies_on_the_segment_between_feature_and_noise() {
    tch::manual_seed(3);
    let unit = unit_rows(64, 16);
    let noise = draw_gaussian(&unit, 0.2);
    let lambda = draw_lambda(64, 0.85, Device::Cpu);
    let lambdas = Vec::<f32>::try_from(&lambda).unwrap();
    assert!(lambdas.iter().all(|l| (0.85..=1.0).contains(l)));
    let mixed = mixup(&unit, &noise, &lambda);
    // mixed − noise = λ (f − noise): parallel, with the ratio λ ∈ [0.85, 1].
    let along = &mixed - &noise;
    let direction = &unit - &noise;
    let ratio = along.sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
        / direction.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    assert!(ratio.allclose(&lambda, 1e-4, 1e-5, false));
    let residual = &along - direction * lambda.unsqueeze(1);
    assert!(residual.abs().max().double_value(&[]) < 1e-6);
}

#[test]
fn batch_partner_is_always_another_sample() {
    tch::manual_seed(4);
    for rows in [2usize, 3, 17] {
        let other = Vec::<i64>::try_from(&draw_other(rows, Device::Cpu)).unwrap();
        for (row, partner) in other.iter().enumerate() {
            assert_ne!(*partner, row as i64);
            assert!((0..rows as i64).contains(partner));
        }
    }
}

#[test]
fn straight_through_forwards_the_neighbour_and_back_propagates_to_the_feature() {
    let feature = Tensor::from_slice(&[0.6f32, 0.8])
        .view([1, 2])
        .set_requires_grad(true);
    let neighbour = Tensor::from_slice(&[1.0f32, 0.0]).view([1, 2]);
    let out = straight_through(&feature, &neighbour);
    assert!(out.detach().equal(&neighbour));
    (out * Tensor::from_slice(&[2.0f32, 3.0]).view([1, 2]))
        .sum(Kind::Float)
        .backward();
    assert!(feature
        .grad()
        .equal(&Tensor::from_slice(&[2.0f32, 3.0]).view([1, 2])));
}
