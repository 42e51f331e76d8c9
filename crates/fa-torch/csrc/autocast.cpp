// The one piece of libtorch that tch 0.24 does not expose: the dtype autocast casts to.
// tch's `autocast` always uses libtorch's default for CUDA (float16); bfloat16 needs no loss
// scaling, so fa sets it here before entering autocast.
#include <ATen/autocast_mode.h>

extern "C" {

// Sets the CUDA autocast dtype: 1 for bfloat16, 0 for float16.
void fa_set_cuda_autocast_bf16(int bf16) {
  at::autocast::set_autocast_dtype(at::kCUDA, bf16 ? at::kBFloat16 : at::kHalf);
}

// 1 when the CUDA autocast dtype is bfloat16, 0 when float16, -1 otherwise.
int fa_cuda_autocast_is_bf16() {
  auto dtype = at::autocast::get_autocast_dtype(at::kCUDA);
  if (dtype == at::kBFloat16) return 1;
  if (dtype == at::kHalf) return 0;
  return -1;
}
}

extern "C" {

// Enters CPU autocast in bfloat16 (evaluation's feature extraction on CPUs with bfloat16
// instructions); returns whether CPU autocast was enabled before, for `fa_cpu_autocast_exit`.
int fa_cpu_autocast_enter() {
  bool before = at::autocast::is_autocast_enabled(at::kCPU);
  at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCPU, true);
  at::autocast::increment_nesting();
  return before ? 1 : 0;
}

// Leaves CPU autocast: drops the cast weights when the outermost region ends and restores the
// state `fa_cpu_autocast_enter` returned.
void fa_cpu_autocast_exit(int before) {
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(at::kCPU, before != 0);
}
}
