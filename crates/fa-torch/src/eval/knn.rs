//! Weighted k-nearest-neighbour classification of L2-normalised features (InstDisc / DINO style).

use tch::{Kind, Tensor};

use super::{accuracy_of_scores, percentages, Accuracy};

/// Similarity-matrix entries per query chunk: 2^25 float32 values, 128 MiB, whatever the
/// size of the bank.
const CHUNK_ELEMENTS: i64 = 1 << 25;

/// L2-normalises rows in float32, as `F.normalize` does (norms clamped at 1e-12).
fn normalised(features: &Tensor) -> Tensor {
    let features = features.detach().to_kind(Kind::Float);
    let norms = features.norm_scalaropt_dim(2.0, [1], true).clamp_min(1e-12);
    features / norms
}

/// Class votes `[M, classes]` of the weighted kNN classifier for `queries` `[M, D]` against
/// the bank `train` `[N, D]` with labels `train_labels` `[N]` (values in `0..classes`).
///
/// Each query's `k` most cosine-similar bank entries (all `N` when `k > N`) vote for their
/// label with weight `exp(similarity / temperature)`; the votes of one class are summed.
/// Queries are processed in chunks so the similarity matrix never exceeds [`CHUNK_ELEMENTS`].
///
/// # Shapes
/// `train: [N, D]`, `train_labels: [N]`, `queries: [M, D]` → `[M, classes]` (float32, on the
/// queries' device).
pub fn knn_votes(
    train: &Tensor,
    train_labels: &Tensor,
    queries: &Tensor,
    k: usize,
    temperature: f64,
    classes: usize,
) -> Tensor {
    knn_votes_chunked(train, train_labels, queries, k, temperature, classes, None)
}

fn knn_votes_chunked(
    train: &Tensor,
    train_labels: &Tensor,
    queries: &Tensor,
    k: usize,
    temperature: f64,
    classes: usize,
    chunk: Option<i64>,
) -> Tensor {
    let device = queries.device();
    let bank = normalised(&train.to_device(device));
    let bank_labels = train_labels.to_device(device).to_kind(Kind::Int64);
    let queries = normalised(queries);
    let bank_size = bank.size()[0];
    let query_count = queries.size()[0];
    let classes = classes as i64;
    let k = (k as i64).min(bank_size);
    if k == 0 || query_count == 0 {
        return Tensor::zeros([query_count, classes], (Kind::Float, device));
    }
    let chunk = chunk.unwrap_or_else(|| (CHUNK_ELEMENTS / bank_size).max(1));
    let mut parts = Vec::new();
    let mut start = 0;
    while start < query_count {
        let length = chunk.min(query_count - start);
        let similarity = queries.narrow(0, start, length).matmul(&bank.tr());
        let (nearest, indices) = similarity.topk(k, 1, true, true);
        let labels = bank_labels
            .index_select(0, &indices.reshape([-1]))
            .reshape([length, k]);
        let weights = (nearest / temperature).exp();
        let votes = Tensor::zeros([length, classes], (Kind::Float, device))
            .scatter_add(1, &labels, &weights);
        parts.push(votes);
        start += length;
    }
    Tensor::cat(&parts, 0)
}

/// Weighted kNN accuracy (InstDisc/DINO style): cosine similarity of L2-normalised features,
/// the top-`k` neighbours in the training features (the bank) weighted by
/// `exp(similarity / temperature)`, class votes summed; test features are the queries.
/// Chunked over queries to bound memory. See [`knn_votes`] for the shapes.
pub fn knn(
    train: &Tensor,
    train_labels: &Tensor,
    test: &Tensor,
    test_labels: &Tensor,
    k: usize,
    temperature: f64,
    classes: usize,
) -> Accuracy {
    let _guard = tch::no_grad_guard();
    let votes = knn_votes(train, train_labels, test, k, temperature, classes);
    let total = test.size()[0];
    if total == 0 || classes == 0 {
        return percentages(0, 0, total);
    }
    let (top1, top5) = accuracy_of_scores(&votes, test_labels);
    percentages(top1, top5, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn chunking_does_not_change_the_votes() {
        tch::manual_seed(11);
        let train = Tensor::randn([37, 8], (Kind::Float, Device::Cpu));
        let labels = Tensor::randint(4, [37], (Kind::Int64, Device::Cpu));
        let queries = Tensor::randn([23, 8], (Kind::Float, Device::Cpu));
        let whole = knn_votes_chunked(&train, &labels, &queries, 5, 0.1, 4, Some(1000));
        for chunk in [1, 3, 22] {
            let chunked = knn_votes_chunked(&train, &labels, &queries, 5, 0.1, 4, Some(chunk));
            let difference = (&whole - &chunked).abs().max().double_value(&[]);
            assert!(
                whole.allclose(&chunked, 1e-5, 1e-5, false),
                "chunk {chunk}: largest difference {difference}"
            );
        }
    }
}
