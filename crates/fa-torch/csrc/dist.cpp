// Data-parallel collectives from libtorch's c10d for fa's Rust code: a process group over a
// FileStore or TCPStore (Gloo for CPU tensors, and NCCL for CUDA tensors when this shim is
// built with FA_WITH_NCCL), the in-place collectives, and the autograd-aware all-gather.
//
// tch 0.24 has no distributed wrappers, so Rust reaches these functions with the `at::Tensor*`
// behind tch's `Tensor::as_mut_ptr()`. Every function catches C++ exceptions (a peer that died,
// a timeout, a shape mismatch) and reports them through `fa_dist_last_error`: a failed
// collective becomes a Rust error instead of aborting the process.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/GroupRegistry.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef FA_WITH_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

thread_local std::string last_error;

// Runs `body`, turning any exception into a message and the return value -1.
template <typename F>
int guarded(F&& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& error) {
    // libtorch's own errors: the message without the C++ backtrace.
    last_error = error.what_without_backtrace();
  } catch (const std::exception& error) {
    last_error = error.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return -1;
}

struct Group {
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  std::string name;
  // The group's store, for fa's own keys (each rank's last finished step).
  c10::intrusive_ptr<c10d::Store> store;
};

}  // namespace

extern "C" {

// The message of the last failure on this thread (valid until the next call).
const char* fa_dist_last_error() { return last_error.c_str(); }

// 1 when this shim was built with c10d's NCCL backend, else 0.
int fa_dist_nccl_built() {
#ifdef FA_WITH_NCCL
  return 1;
#else
  return 0;
#endif
}

// Creates a process group and registers it under `name` for the functional collectives.
// `backend` 0: Gloo for CPU tensors; 1: NCCL for CUDA tensors on device `cuda_device`
// (made this process's current device) and Gloo for CPU tensors and the barrier; 2: Gloo for
// CPU and CUDA tensors.
// `store_kind` 0: FileStore at `location`; 1: TCPStore at `location`:`port`, served by rank 0;
// 2: the same store served by the launcher (torchrun's agent), every rank a client.
// `hostname`: the address Gloo binds to; empty for the interface named by GLOO_SOCKET_IFNAME
// when set, else libtorch's default (this host's name, else loopback). `timeout_ms` bounds
// the rendezvous and every collective. Null on failure.
void* fa_dist_new_group(int backend_kind, int cuda_device, int store_kind, const char* location,
                        int port, int rank, int world, int64_t timeout_ms, const char* hostname,
                        const char* name) {
  Group* made = nullptr;
  guarded([&] {
#ifndef FA_WITH_NCCL
    if (backend_kind == 1) {
      throw std::runtime_error(
          "this fa was built without c10d's NCCL backend (the CUDA headers were missing at "
          "build time; see fa doctor)");
    }
#endif
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10::intrusive_ptr<c10d::Store> store;
    if (store_kind == 0) {
      store = c10::make_intrusive<c10d::FileStore>(std::string(location), world);
    } else {
      c10d::TCPStoreOptions options;
      options.port = static_cast<std::uint16_t>(port);
      options.isServer = store_kind == 1 && rank == 0;
      options.multiTenant = store_kind == 1;
      options.numWorkers = world;
      options.timeout = timeout;
      store = c10::make_intrusive<c10d::TCPStore>(std::string(location), options);
    }
    store->setTimeout(timeout);
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>(std::string(name), store);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    std::string host(hostname);
    const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
    if (!host.empty()) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(host));
    } else if (interface != nullptr && *interface != 0) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    options->threads = 1;
    // Each backend keys its rendezvous under its own prefix of the store.
    auto gloo_store = c10::make_intrusive<c10d::PrefixStore>("gloo", prefixed);
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(gloo_store, rank, world, options);
    auto group = c10::make_intrusive<c10d::ProcessGroup>(prefixed, rank, world);
    group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
    // The default backend serves the barrier, which then needs no device.
    group->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    if (backend_kind == 2) {
      group->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::GLOO, gloo);
    }
#ifdef FA_WITH_NCCL
    if (backend_kind == 1) {
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(cuda_device));
      auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
      nccl_options->timeout = timeout;
      auto nccl_store = c10::make_intrusive<c10d::PrefixStore>("nccl", prefixed);
      auto nccl =
          c10::make_intrusive<c10d::ProcessGroupNCCL>(nccl_store, rank, world, nccl_options);
      group->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, nccl);
    }
#else
    (void)cuda_device;
#endif
    group->setGroupName(name);
    c10d::register_process_group(name, group);
    auto own = c10::make_intrusive<c10d::PrefixStore>("fa", prefixed);
    made = new Group{group, std::string(name), own};
  });
  return made;
}

void fa_dist_free(void* handle) {
  auto* group = static_cast<Group*>(handle);
  if (group == nullptr) return;
  guarded([&] { c10d::unregister_process_group(group->name); });
  delete group;
}

// Sets `key` to `value` in the group's store.
int fa_dist_store_set(void* handle, const char* key, const char* value) {
  return guarded([&] {
    std::string text(value);
    std::vector<uint8_t> bytes(text.begin(), text.end());
    static_cast<Group*>(handle)->store->set(std::string(key), bytes);
  });
}

// Copies the value of `key` into `buffer` (at most `capacity` bytes, NUL-terminated) when the
// key is set; returns its length, -2 when it is not set, -1 on failure (the store waits at
// most `timeout_ms` for an answer).
int64_t fa_dist_store_get(void* handle, const char* key, int64_t timeout_ms, char* buffer,
                          int64_t capacity) {
  int64_t length = -2;
  int status = guarded([&] {
    auto& store = static_cast<Group*>(handle)->store;
    // The store is shared with the backends: libtorch's guard restores its own timeout.
    c10d::StoreTimeoutGuard guard(*store, std::chrono::milliseconds(timeout_ms));
    if (!store->check({std::string(key)})) return;
    auto bytes = store->get(std::string(key));
    length = std::min<int64_t>(static_cast<int64_t>(bytes.size()), capacity - 1);
    std::copy(bytes.begin(), bytes.begin() + length, buffer);
    buffer[length] = 0;
  });
  return status == 0 ? length : -1;
}

// Sums `tensor` over the ranks, in place.
int fa_dist_all_reduce_sum(void* handle, at::Tensor* tensor) {
  return guarded([&] {
    std::vector<at::Tensor> tensors{*tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    static_cast<Group*>(handle)->group->allreduce(tensors, options)->wait();
  });
}

// Sums each tensor of `tensors` over the ranks, in place, as one coalesced collective.
int fa_dist_all_reduce_sum_coalesced(void* handle, at::Tensor** tensors, int64_t count) {
  return guarded([&] {
    std::vector<at::Tensor> list;
    for (int64_t i = 0; i < count; ++i) list.push_back(*tensors[i]);
    c10d::AllreduceCoalescedOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    static_cast<Group*>(handle)->group->allreduce_coalesced(list, options)->wait();
  });
}

// Overwrites `tensor` on every rank with its value on rank `root`.
int fa_dist_broadcast(void* handle, at::Tensor* tensor, int root) {
  return guarded([&] {
    std::vector<at::Tensor> tensors{*tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    static_cast<Group*>(handle)->group->broadcast(tensors, options)->wait();
  });
}

int fa_dist_barrier(void* handle) {
  return guarded([&] { static_cast<Group*>(handle)->group->barrier()->wait(); });
}

// Writes the ranks' `input`s, concatenated along dimension 0 in rank order, into `output`
// (world × input rows). No gradient.
int fa_dist_all_gather(void* handle, at::Tensor* output, at::Tensor* input) {
  return guarded([&] {
    at::Tensor out = *output;
    at::Tensor in = input->contiguous();
    static_cast<Group*>(handle)->group->_allgather_base(out, in)->wait();
  });
}

// The ranks' `input`s concatenated along dimension 0 in rank order, with a gradient: the
// backward pass sums each slice's gradient over the ranks and returns it to its owner
// (a reduce-scatter). Null on failure; the caller owns the returned tensor.
at::Tensor* fa_dist_all_gather_autograd(void* handle, at::Tensor* input) {
  at::Tensor* result = nullptr;
  guarded([&] {
    auto* group = static_cast<Group*>(handle);
    static auto gather =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("_c10d_functional_autograd::all_gather_into_tensor", "")
            .typed<at::Tensor(const at::Tensor&, int64_t, const std::string&)>();
    static auto wait = c10::Dispatcher::singleton()
                           .findSchemaOrThrow("_c10d_functional::wait_tensor", "")
                           .typed<at::Tensor(const at::Tensor&)>();
    at::Tensor gathered =
        gather.call(input->contiguous(), group->group->getSize(), group->name);
    {
      // The wait has no derivative; below autograd it neither warns nor records anything.
      at::AutoDispatchBelowAutograd below;
      wait.call(gathered);
    }
    result = new at::Tensor(gathered);
  });
  return result;
}
}
