//! Feature-augmentation operators on L2-normalised features, with their random draws passed in so tests can fix them.
//!
//! The operators themselves are deterministic functions of their tensor arguments (mask,
//! λ, partner indices, noise); the `draw_*` functions make the random arguments. The
//! network draws and applies; the fixtures pass PyTorch's draws to the same operators.

use tch::{nn, Device, Kind, Tensor};

/// `x / max(‖x‖₂, 1e-12)` row-wise, as `torch.nn.functional.normalize`.
///
/// # Shapes
/// `[N, D]` to `[N, D]`.
pub fn l2_normalize(xs: &Tensor) -> Tensor {
    let norm = xs.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-12);
    xs / norm
}

/// A float mask with exactly `round(rate · width)` zeros per row at random positions.
///
/// # Shapes
/// Returns `[rows, width]` of zeros and ones.
pub fn draw_mask(rows: usize, width: usize, rate: f64, device: Device) -> Tensor {
    let zeros = (rate * width as f64).round() as i64;
    // The rank of each component in a random permutation of its row; the `zeros` lowest
    // ranks are dropped, which zeroes exactly that many components per row.
    let ranks = Tensor::rand([rows as i64, width as i64], (Kind::Float, device))
        .argsort(1, false)
        .argsort(1, false);
    ranks.ge(zeros).to_kind(Kind::Float)
}

/// The masked feature: components where `mask` is 0 are zeroed, the others kept (no rescale).
///
/// # Shapes
/// `[N, D]` and `[N, D]` to `[N, D]`.
pub fn apply_mask(unit: &Tensor, mask: &Tensor) -> Tensor {
    unit * mask.to_kind(unit.kind())
}

/// λ ~ U(alpha, 1) per row.
///
/// # Shapes
/// Returns `[rows]`.
pub fn draw_lambda(rows: usize, alpha: f64, device: Device) -> Tensor {
    Tensor::empty([rows as i64], (Kind::Float, device)).uniform_(alpha, 1.0)
}

/// `λ f + (1 − λ) noise`, λ per row.
///
/// # Shapes
/// `[N, D]`, `[N, D]` and `[N]` to `[N, D]`.
pub fn mixup(unit: &Tensor, noise: &Tensor, lambda: &Tensor) -> Tensor {
    let lambda = lambda.to_kind(unit.kind()).unsqueeze(1);
    &lambda * unit + (1.0 - &lambda) * noise.to_kind(unit.kind())
}

/// For each row, the index of a uniformly chosen other row of the batch (itself only when
/// the batch has a single row).
///
/// # Shapes
/// Returns int64 `[rows]`.
pub fn draw_other(rows: usize, device: Device) -> Tensor {
    let options = (Kind::Int64, device);
    if rows < 2 {
        return Tensor::zeros([rows as i64], options);
    }
    // A non-zero offset modulo the batch size never lands on the row itself.
    let offsets = Tensor::randint_low(1, rows as i64, [rows as i64], options);
    (Tensor::arange(rows as i64, options) + offsets).remainder(rows as i64)
}

/// Gaussian noise N(0, σ²) per component.
///
/// # Shapes
/// Returns a tensor shaped like `like`.
pub fn draw_gaussian(like: &Tensor, sigma: f64) -> Tensor {
    like.randn_like() * sigma
}

/// `f + sg(nn − f)`: the forward value is the neighbour, the gradient reaches `f`.
///
/// # Shapes
/// `[N, D]` and `[N, D]` to `[N, D]`.
pub fn straight_through(unit: &Tensor, neighbour: &Tensor) -> Tensor {
    unit + (neighbour - unit).detach()
}

/// A FIFO bank of unit features with the dataset index each came from.
#[derive(Debug)]
pub struct Bank {
    /// `[size, D]` unit vectors; random unit vectors before they are first overwritten.
    pub features: Tensor,
    /// int64 `[size]`; −1 for the random initial entries.
    pub indices: Tensor,
    /// int64 `[1]`; the slot the next enqueued feature goes to. Kept as a tensor so a
    /// checkpoint of the VarStore restores it.
    pub ptr: Tensor,
}

/// The result of a bank lookup.
#[derive(Debug)]
pub struct Neighbours {
    /// The j-th most similar stored feature, for j in 0..k; each `[N, D]`.
    pub features: Vec<Tensor>,
    /// The stored dataset indices of the neighbours, int64 `[N, k]`.
    pub indices: Tensor,
}

impl Bank {
    /// Registers a bank of `size` entries of width `width` under `path` (never trainable).
    pub fn new(path: &nn::Path, size: usize, width: usize) -> Bank {
        let device = path.device();
        let random = l2_normalize(&Tensor::randn(
            [size as i64, width as i64],
            (Kind::Float, device),
        ));
        Bank {
            features: path.add("features", random, false),
            indices: path.add(
                "indices",
                Tensor::full([size as i64], -1, (Kind::Int64, device)),
                false,
            ),
            ptr: path.add("ptr", Tensor::zeros([1], (Kind::Int64, device)), false),
        }
    }

    /// A bank holding the given tensors (tests and fixtures).
    pub fn from_tensors(features: Tensor, indices: Tensor, ptr: i64) -> Bank {
        let device = features.device();
        Bank {
            features,
            indices,
            ptr: Tensor::from_slice(&[ptr]).to_device(device),
        }
    }

    pub fn size(&self) -> usize {
        self.features.size()[0] as usize
    }

    pub fn pointer(&self) -> i64 {
        self.ptr.int64_value(&[0])
    }

    /// The `k` stored features most similar (cosine) to each unit query, most similar first.
    /// With `exclude_self`, entries holding the query's own dataset index are skipped.
    ///
    /// # Shapes
    /// `query` `[N, D]` unit vectors, `query_indices` int64 `[N]`.
    pub fn lookup(
        &self,
        query: &Tensor,
        query_indices: &Tensor,
        k: usize,
        exclude_self: bool,
    ) -> Neighbours {
        tch::no_grad(|| {
            let query = query.detach().to_kind(self.features.kind());
            let mut similarity = query.matmul(&self.features.tr());
            if exclude_self {
                let own = self
                    .indices
                    .unsqueeze(0)
                    .eq_tensor(&query_indices.unsqueeze(1));
                similarity = similarity.masked_fill(&own, f64::NEG_INFINITY);
            }
            let (_, positions) = similarity.topk(k as i64, 1, true, true);
            let features = (0..k as i64)
                .map(|j| self.features.index_select(0, &positions.select(1, j)))
                .collect();
            let indices = self
                .indices
                .index_select(0, &positions.flatten(0, -1))
                .view([-1, k as i64]);
            Neighbours { features, indices }
        })
    }

    /// Writes `unit` (detached) and its dataset indices at the pointer, wrapping around, and
    /// advances the pointer. A batch larger than the bank keeps its last `size` rows.
    ///
    /// # Shapes
    /// `unit` `[N, D]`, `indices` int64 `[N]`.
    pub fn enqueue(&mut self, unit: &Tensor, indices: &Tensor) {
        tch::no_grad(|| {
            let size = self.size() as i64;
            let mut rows = unit.size()[0];
            let mut unit = unit.detach().to_kind(self.features.kind());
            let mut indices = indices.to_kind(Kind::Int64);
            if rows > size {
                unit = unit.narrow(0, rows - size, size);
                indices = indices.narrow(0, rows - size, size);
                rows = size;
            }
            let start = self.pointer();
            let slots =
                (Tensor::arange(rows, (Kind::Int64, unit.device())) + start).remainder(size);
            let _ = self.features.index_copy_(0, &slots, &unit);
            let _ = self
                .indices
                .index_copy_(0, &slots, &indices.to_device(self.indices.device()));
            let _ = self.ptr.fill_((start + rows) % size);
        })
    }
}
