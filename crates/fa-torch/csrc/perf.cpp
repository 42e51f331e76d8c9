// The libtorch calls behind fa's performance paths that tch 0.24 does not expose: the
// channels_last memory format, the multi-tensor (`_foreach_*`) operations the optimisers
// use, and the peak memory of a CUDA device.
//
// Tensors cross the boundary as tch does it: a `torch::Tensor*` (tch's `C_tensor`) that the
// Rust side owns; every tensor returned here is a new heap object the Rust side wraps with
// `Tensor::from_ptr` and frees. No C++ exception may cross into Rust: every entry point
// catches them and reports failure through its return value, and the last error message is
// kept for the caller (`fa_perf_last_error`).
#include <ATen/ATen.h>
#include <ATen/DeviceAccelerator.h>

#include <exception>
#include <string>
#include <vector>

namespace {

thread_local std::string last_error;

std::vector<at::Tensor> gather(at::Tensor** tensors, int count) {
  std::vector<at::Tensor> list;
  list.reserve(count);
  for (int i = 0; i < count; ++i) list.push_back(*tensors[i]);
  return list;
}

void scatter(const std::vector<at::Tensor>& list, at::Tensor** out) {
  for (size_t i = 0; i < list.size(); ++i) out[i] = new at::Tensor(list[i]);
}

// Runs `body`, turning an exception into a return value of 0 and the kept message.
template <typename Body>
int guarded(Body body) {
  try {
    body();
    return 1;
  } catch (const std::exception& error) {
    last_error = error.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return 0;
}

}  // namespace

extern "C" {

// The message of the last failed call on this thread ("" when none failed).
const char* fa_perf_last_error() { return last_error.c_str(); }

// A 4-D tensor in the channels_last memory format (a view of the same values, NHWC in
// memory); other tensors come back as they are. Null on failure.
at::Tensor* fa_channels_last(const at::Tensor* tensor) {
  at::Tensor* result = nullptr;
  guarded([&] {
    result = new at::Tensor(tensor->dim() == 4
                                ? tensor->contiguous(at::MemoryFormat::ChannelsLast)
                                : *tensor);
  });
  return result;
}

// 1 when the tensor is 4-D and laid out channels_last, else 0.
int fa_is_channels_last(const at::Tensor* tensor) {
  return tensor->dim() == 4 && tensor->is_contiguous(at::MemoryFormat::ChannelsLast) ? 1 : 0;
}

// out[i] = self[i] * scalar.
int fa_foreach_mul_scalar(at::Tensor** self, int count, double scalar, at::Tensor** out) {
  return guarded([&] { scatter(at::_foreach_mul(gather(self, count), scalar), out); });
}

// self[i] *= scalar, in place.
int fa_foreach_mul_scalar_(at::Tensor** self, int count, double scalar) {
  return guarded([&] { at::_foreach_mul_(gather(self, count), scalar); });
}

// self[i] *= other[i], in place (other[i] may be a 0-D tensor).
int fa_foreach_mul_list_(at::Tensor** self, at::Tensor** other, int count) {
  return guarded([&] { at::_foreach_mul_(gather(self, count), gather(other, count)); });
}

// out[i] = self[i] + other[i].
int fa_foreach_add_list(at::Tensor** self, at::Tensor** other, int count, at::Tensor** out) {
  return guarded(
      [&] { scatter(at::_foreach_add(gather(self, count), gather(other, count)), out); });
}

// self[i] += other[i], in place.
int fa_foreach_add_list_(at::Tensor** self, at::Tensor** other, int count) {
  return guarded([&] { at::_foreach_add_(gather(self, count), gather(other, count)); });
}

// self[i] -= other[i], in place.
int fa_foreach_sub_list_(at::Tensor** self, at::Tensor** other, int count) {
  return guarded([&] { at::_foreach_sub_(gather(self, count), gather(other, count)); });
}

// out[i] = a copy of self[i] (same values, a new tensor).
int fa_foreach_copy(at::Tensor** self, int count, at::Tensor** out) {
  return guarded([&] {
    std::vector<at::Tensor> copies;
    copies.reserve(count);
    for (int i = 0; i < count; ++i) copies.push_back(self[i]->clone());
    scatter(copies, out);
  });
}

// out[i] = the L2 norm of self[i], a 0-D tensor.
int fa_foreach_norm(at::Tensor** self, int count, at::Tensor** out) {
  return guarded([&] { scatter(at::_foreach_norm(gather(self, count), 2), out); });
}

// SGD with momentum over every tensor in one fused kernel per tensor (libtorch's
// `_fused_sgd_`, what `torch.optim.SGD(fused=True)` runs): d = g + wd·p; buf = μ·buf + d
// (buf = d when `first_step`); p −= lr·buf. `bufs` is null when μ = 0 (p −= lr·d).
int fa_fused_sgd_(at::Tensor** params, at::Tensor** grads, at::Tensor** bufs, int count,
                  double weight_decay, double momentum, double lr, int first_step) {
  return guarded([&] {
    std::vector<at::Tensor> buffers;
    if (bufs != nullptr) buffers = gather(bufs, count);
    at::_fused_sgd_(gather(params, count), gather(grads, count), buffers, weight_decay,
                    momentum, lr, /*dampening=*/0.0, /*nesterov=*/false, /*maximize=*/false,
                    first_step != 0);
  });
}

// Drops the tensor's gradient, as PyTorch's `zero_grad(set_to_none=True)`: the next backward
// pass stores its gradient instead of adding it to zeros.
int fa_clear_grad(at::Tensor* tensor) {
  return guarded([&] { tensor->mutable_grad().reset(); });
}

// The peak bytes the caching allocator of CUDA device `index` has held since the start or
// the last reset; -1 when there is no CUDA device (or no CUDA build of libtorch).
long long fa_cuda_peak_bytes(int index) {
  long long peak = -1;
  guarded([&] {
    if (!at::hasCUDA()) return;
    auto stats = at::getDeviceAllocator(at::kCUDA)->getDeviceStats(
        static_cast<c10::DeviceIndex>(index));
    peak = static_cast<long long>(
        stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)]
            .peak);
  });
  return peak;
}
}
