// fa's allocator for the host memory of libtorch's CPU tensors: a size-class cache in front
// of the C library, so the blocks a training step frees are handed to the next step instead
// of going back to the kernel (src/host_memory.rs says why and what it measured).
//
// Every block carries a 64-byte header in front of the tensor's bytes, holding its size
// class (0 for a block below kCachedFrom or above kCachedUpTo, which goes straight back to
// the C library), so one deleter serves every block and libtorch's raw allocation interface
// works. Blocks between the two bounds are rounded up to one of eight classes per doubling
// (at most 12.5% above the request) and, when freed, kept on their class's list while the
// cached total stays under the limit; above it they are freed. When the C library refuses a
// block, every cached block is released and the request tried once more; then libtorch's
// out-of-memory error is raised.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace {

constexpr size_t kAlignment = 64;         // c10's CPU alignment (AVX-512 loads)
constexpr size_t kHeader = kAlignment;    // keeps the tensor's bytes aligned
constexpr size_t kCachedFrom = 1u << 16;  // smaller blocks are the C library's to recycle
constexpr size_t kCachedUpTo = size_t{1} << 40;  // larger requests are not cached (nor real)

// The size class of a request of n bytes (n >= kCachedFrom): eight classes between each
// power of two and the next.
size_t size_class(size_t n) {
  size_t power = kCachedFrom;
  while (power < n) power <<= 1;
  const size_t step = power / 16;
  return (n + step - 1) / step * step;
}

struct Cache {
  std::mutex mutex;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // class → block bases
  size_t cached_bytes = 0;
  size_t live_bytes = 0;  // cached-class blocks in use
  size_t limit = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;

  // Frees every cached block; the caller holds the mutex.
  void release_locked() {
    for (auto& entry : free_blocks) {
      for (void* base : entry.second) std::free(base);
    }
    free_blocks.clear();
    cached_bytes = 0;
  }
};

// Never destroyed: tensors may be freed while static objects are being destroyed at exit.
Cache& cache() {
  static Cache* instance = new Cache();
  return *instance;
}

void* aligned_block(size_t bytes) {
  void* base = nullptr;
  return posix_memalign(&base, kAlignment, bytes) == 0 ? base : nullptr;
}

void delete_block(void* data) {
  if (data == nullptr) return;
  void* base = static_cast<char*>(data) - kHeader;
  const size_t klass = *static_cast<size_t*>(base);
  if (klass == 0) {
    std::free(base);
    return;
  }
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.live_bytes -= klass;
    if (c.cached_bytes + klass <= c.limit) {
      c.free_blocks[klass].push_back(base);
      c.cached_bytes += klass;
      return;
    }
  }
  std::free(base);
}

struct CachingHostAllocator final : public c10::Allocator {
  c10::DataPtr allocate(size_t n) override {
    if (n == 0) return {nullptr, nullptr, &delete_block, c10::Device(c10::DeviceType::CPU)};
    TORCH_CHECK_WITH(OutOfMemoryError, n <= SIZE_MAX - kHeader,
                     "fa's host allocator: a request of ", n, " bytes");
    const size_t klass = n >= kCachedFrom && n <= kCachedUpTo ? size_class(n) : 0;
    void* base = nullptr;
    if (klass != 0) {
      Cache& c = cache();
      std::lock_guard<std::mutex> lock(c.mutex);
      auto found = c.free_blocks.find(klass);
      if (found != c.free_blocks.end() && !found->second.empty()) {
        base = found->second.back();
        found->second.pop_back();
        c.cached_bytes -= klass;
        ++c.hits;
      } else {
        ++c.misses;
      }
      c.live_bytes += klass;
    }
    if (base == nullptr) {
      const size_t bytes = kHeader + (klass != 0 ? klass : n);
      base = aligned_block(bytes);
      if (base == nullptr) {
        {
          Cache& c = cache();
          std::lock_guard<std::mutex> lock(c.mutex);
          c.release_locked();
        }
        base = aligned_block(bytes);
      }
      if (base == nullptr) {
        if (klass != 0) {
          Cache& c = cache();
          std::lock_guard<std::mutex> lock(c.mutex);
          c.live_bytes -= klass;
        }
        TORCH_CHECK_WITH(OutOfMemoryError, false, "fa's host allocator: out of memory allocating ",
                         n, " bytes");
      }
    }
    *static_cast<size_t*>(base) = klass;
    void* data = static_cast<char*>(base) + kHeader;
    return {data, data, &delete_block, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &delete_block; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
};

}  // namespace

extern "C" {

// Makes the caching allocator libtorch's CPU allocator, keeping at most `limit` bytes of
// freed blocks. Blocks allocated before keep their own deleters. Returns 1; a second call
// only changes the limit (and returns 0).
int fa_host_cache_install(uint64_t limit) {
  static std::once_flag once;
  int installed = 0;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    c.limit = static_cast<size_t>(limit);
  }
  std::call_once(once, [&] {
    // libtorch takes ownership; the allocator lives as long as the process.
    c10::SetCPUAllocator(new CachingHostAllocator(), /*priority=*/1);
    installed = 1;
  });
  return installed;
}

// Frees every cached block (blocks in use stay).
void fa_host_cache_release() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.release_locked();
}

// [bytes in use in cached classes, bytes cached, limit, hits, misses].
void fa_host_cache_stats(uint64_t* out) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  out[0] = c.live_bytes;
  out[1] = c.cached_bytes;
  out[2] = c.limit;
  out[3] = c.hits;
  out[4] = c.misses;
}

// The size class of a request (for the tests): n itself below the cached sizes.
uint64_t fa_host_cache_class(uint64_t n) {
  return n >= kCachedFrom && n <= kCachedUpTo ? size_class(static_cast<size_t>(n)) : n;
}

}  // extern "C"
