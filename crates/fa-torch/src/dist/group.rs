//! A safe handle on a c10d process group (`csrc/dist.cpp`: Gloo, and NCCL for CUDA tensors
//! where the shim was built with it) and its collectives.

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tch::{Kind, Tensor};

use super::DistError;

extern "C" {
    fn fa_dist_last_error() -> *const c_char;
    fn fa_dist_nccl_built() -> i32;
    fn fa_dist_new_group(
        backend: i32,
        cuda_device: i32,
        store_kind: i32,
        location: *const c_char,
        port: i32,
        rank: i32,
        world: i32,
        timeout_ms: i64,
        hostname: *const c_char,
        name: *const c_char,
    ) -> *mut c_void;
    fn fa_dist_free(handle: *mut c_void);
    fn fa_dist_store_set(handle: *mut c_void, key: *const c_char, value: *const c_char) -> i32;
    fn fa_dist_store_get(
        handle: *mut c_void,
        key: *const c_char,
        timeout_ms: i64,
        buffer: *mut c_char,
        capacity: i64,
    ) -> i64;
    fn fa_dist_all_reduce_sum(handle: *mut c_void, tensor: *mut c_void) -> i32;
    fn fa_dist_all_reduce_sum_coalesced(
        handle: *mut c_void,
        tensors: *const *mut c_void,
        count: i64,
    ) -> i32;
    fn fa_dist_broadcast(handle: *mut c_void, tensor: *mut c_void, root: i32) -> i32;
    fn fa_dist_barrier(handle: *mut c_void) -> i32;
    fn fa_dist_all_gather(handle: *mut c_void, output: *mut c_void, input: *mut c_void) -> i32;
    fn fa_dist_all_gather_autograd(handle: *mut c_void, input: *mut c_void) -> *mut c_void;
}

/// Where the ranks meet to exchange addresses before the first collective.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rendezvous {
    /// A file every rank can reach (one machine, or a shared file system): tests and `--nproc`.
    File(PathBuf),
    /// A TCP store at this address and port (torchrun's MASTER_ADDR and MASTER_PORT),
    /// served by rank 0, or by the launcher when `launcher_serves` (torchrun's agent store,
    /// `TORCHELASTIC_USE_AGENT_STORE=True`), every rank then being a client.
    Tcp {
        host: String,
        port: u16,
        launcher_serves: bool,
    },
}

/// Which c10d backend carries the collectives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Gloo for every tensor (CPU training).
    Gloo,
    /// NCCL for CUDA tensors on this CUDA device (made the process's current device), Gloo
    /// for CPU tensors and the barrier.
    Nccl { device: usize },
    /// Gloo for CUDA tensors too (`--dist-backend gloo` on a GPU: staged through the host,
    /// slower than NCCL, but needs no NCCL).
    GlooCuda { device: usize },
}

/// Whether this build of fa has c10d's NCCL backend, or why not.
pub fn nccl_available() -> Result<(), String> {
    // SAFETY: reads a constant of the shim.
    if unsafe { fa_dist_nccl_built() } == 1 {
        Ok(())
    } else {
        Err(env!("FA_NCCL_MISSING").to_string())
    }
}

/// How to form a group: the backend, the rendezvous, this process's rank, the number of ranks, and how
/// long any rendezvous or collective may wait for a peer before it fails.
#[derive(Clone, Debug)]
pub struct GroupOptions {
    pub backend: Backend,
    pub rendezvous: Rendezvous,
    pub rank: usize,
    pub world: usize,
    pub timeout: Duration,
    /// The address Gloo's sockets bind to; `None` for libtorch's choice (this host's name,
    /// else loopback). Local jobs use 127.0.0.1.
    pub bind: Option<String>,
}

/// A process group: every collective must be called by every rank, in the same order.
#[derive(Debug)]
pub struct ProcessGroup {
    handle: *mut c_void,
    rank: usize,
    world: usize,
}

// SAFETY: the handle owns a reference-counted c10d group, whose collectives c10d lets any
// thread call (each enqueues work on the backend's own threads). The order of collectives
// must match across ranks, which fa keeps by calling them from the training thread only.
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

/// Each group of a process gets its own name in c10d's registry and its own key prefix in
/// the store.
static GROUPS: AtomicUsize = AtomicUsize::new(0);

fn last_error(what: &'static str) -> DistError {
    // SAFETY: the shim returns a pointer to a thread-local, NUL-terminated string.
    let message = unsafe { CStr::from_ptr(fa_dist_last_error()) }
        .to_string_lossy()
        .trim()
        .to_string();
    DistError::Collective { what, message }
}

fn check(what: &'static str, code: i32) -> Result<(), DistError> {
    if code == 0 {
        Ok(())
    } else {
        Err(last_error(what))
    }
}

/// The `at::Tensor*` behind a tch tensor, as the shim takes it.
fn raw(tensor: &Tensor) -> *mut c_void {
    tensor.as_ptr() as *mut c_void
}

impl ProcessGroup {
    /// Joins the group: blocks until all `world` ranks have met or the timeout has passed.
    pub fn new(options: &GroupOptions) -> Result<ProcessGroup, DistError> {
        if options.world == 0 || options.rank >= options.world {
            return Err(DistError::BadRank {
                rank: options.rank,
                world: options.world,
            });
        }
        let (kind, location, port) = match &options.rendezvous {
            Rendezvous::File(path) => (0, path.to_string_lossy().into_owned(), 0),
            Rendezvous::Tcp {
                host,
                port,
                launcher_serves,
            } => (
                if *launcher_serves { 2 } else { 1 },
                host.clone(),
                i32::from(*port),
            ),
        };
        let text = |value: &str| {
            CString::new(value).map_err(|_| DistError::Nul {
                value: value.to_string(),
            })
        };
        let location = text(&location)?;
        let bind = text(options.bind.as_deref().unwrap_or(""))?;
        let name = text(&format!("fa{}", GROUPS.fetch_add(1, Ordering::SeqCst)))?;
        // SAFETY: the strings outlive the call; the shim copies what it keeps.
        let (backend, cuda_device) = match options.backend {
            Backend::Gloo => (0, 0),
            Backend::Nccl { device } => (1, device as i32),
            Backend::GlooCuda { device } => (2, device as i32),
        };
        let handle = unsafe {
            fa_dist_new_group(
                backend,
                cuda_device,
                kind,
                location.as_ptr(),
                port,
                options.rank as i32,
                options.world as i32,
                options.timeout.as_millis().min(i64::MAX as u128) as i64,
                bind.as_ptr(),
                name.as_ptr(),
            )
        };
        if handle.is_null() {
            let DistError::Collective { message, .. } = last_error("rendezvous") else {
                unreachable!("last_error makes a collective error")
            };
            return Err(DistError::Rendezvous {
                rendezvous: format!("{:?}", options.rendezvous),
                message,
            });
        }
        Ok(ProcessGroup {
            handle,
            rank: options.rank,
            world: options.world,
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.world
    }

    /// Marks in the group's store that this rank gave up waiting in a collective, so that
    /// the ranks that waited can tell themselves apart from one that never came
    /// ([`ProcessGroup::marked_failed`]).
    pub fn mark_failed(&self) -> Result<(), DistError> {
        let key = CString::new(format!("failed/{}", self.rank)).expect("no NUL");
        // SAFETY: the handle is live and the strings outlive the call.
        check("store write", unsafe {
            fa_dist_store_set(self.handle, key.as_ptr(), c"1".as_ptr())
        })
    }

    /// Whether `rank` has marked itself failed (`None`: the store did not answer within
    /// `timeout`).
    pub fn marked_failed(&self, rank: usize, timeout: Duration) -> Option<bool> {
        let key = CString::new(format!("failed/{rank}")).expect("no NUL");
        let mut buffer = [0 as c_char; 8];
        // SAFETY: the handle is live; the buffer outlives the call and its size is passed.
        let length = unsafe {
            fa_dist_store_get(
                self.handle,
                key.as_ptr(),
                timeout.as_millis().min(i64::MAX as u128) as i64,
                buffer.as_mut_ptr(),
                buffer.len() as i64,
            )
        };
        match length {
            -2 => Some(false),
            length if length >= 0 => Some(true),
            _ => None,
        }
    }

    /// After a collective timed out on this rank: the other ranks that did not time out
    /// too within `wait` (each waiting rank marks itself, [`ProcessGroup::mark_failed`]),
    /// so the ones that stalled or were lost. Ranks whose state the store cannot tell are
    /// left out.
    pub fn ranks_that_never_came(&self, wait: Duration) -> Vec<usize> {
        let _ = self.mark_failed();
        let deadline = std::time::Instant::now() + wait;
        loop {
            let missing: Vec<usize> = (0..self.world)
                .filter(|&rank| rank != self.rank)
                .filter(|&rank| self.marked_failed(rank, Duration::from_secs(2)) == Some(false))
                .collect();
            if missing.is_empty() || std::time::Instant::now() >= deadline {
                return missing;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sums `tensor` over the ranks, in place (a contiguous CPU tensor).
    pub fn all_reduce_sum(&self, tensor: &Tensor) -> Result<(), DistError> {
        // SAFETY: the handle is live and the tensor pointer valid for the call.
        check("all-reduce", unsafe {
            fa_dist_all_reduce_sum(self.handle, raw(tensor))
        })
    }

    /// Sums each tensor over the ranks, in place, in one coalesced collective (tensors of
    /// one dtype).
    pub fn all_reduce_sum_coalesced(&self, tensors: &[Tensor]) -> Result<(), DistError> {
        let pointers: Vec<*mut c_void> = tensors.iter().map(raw).collect();
        // SAFETY: as above; the pointer array outlives the call.
        check("coalesced all-reduce", unsafe {
            fa_dist_all_reduce_sum_coalesced(self.handle, pointers.as_ptr(), pointers.len() as i64)
        })
    }

    /// Overwrites `tensor` on every rank with its value on rank `root`.
    pub fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<(), DistError> {
        // SAFETY: as above.
        check("broadcast", unsafe {
            fa_dist_broadcast(self.handle, raw(tensor), root as i32)
        })
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<(), DistError> {
        // SAFETY: as above.
        check("barrier", unsafe { fa_dist_barrier(self.handle) })
    }

    /// The ranks' `input`s concatenated along dimension 0 in rank order; no gradient. Every
    /// rank must pass the same shape.
    ///
    /// # Shapes
    /// `[n, …]` to `[world · n, …]`.
    pub fn all_gather(&self, input: &Tensor) -> Result<Tensor, DistError> {
        let mut shape = input.size();
        if shape.is_empty() {
            shape.push(1);
        }
        shape[0] *= self.world as i64;
        let output = Tensor::empty(shape, (input.kind(), input.device()));
        let input = input.detach().contiguous();
        // SAFETY: as above; the output has room for every rank's rows.
        check("all-gather", unsafe {
            fa_dist_all_gather(self.handle, raw(&output), raw(&input))
        })?;
        Ok(output)
    }

    /// As [`ProcessGroup::all_gather`], with a gradient: the backward pass sums each rank's
    /// slice of the incoming gradient over the ranks and hands it back to the slice's owner,
    /// so a loss over gathered features trains every rank's encoder. Every rank must run the
    /// backward pass.
    ///
    /// # Shapes
    /// `[n, …]` to `[world · n, …]`.
    pub fn all_gather_autograd(&self, input: &Tensor) -> Result<Tensor, DistError> {
        // SAFETY: as above; the shim returns a new `at::Tensor*` that tch takes ownership of.
        let pointer = unsafe { fa_dist_all_gather_autograd(self.handle, raw(input)) };
        if pointer.is_null() {
            return Err(last_error("all-gather with gradient"));
        }
        // SAFETY: a heap `at::Tensor` made by `new`, as tch's own C API returns them.
        Ok(unsafe { Tensor::from_ptr(pointer as *mut torch_sys::C_tensor) })
    }

    /// Replaces each gradient by its mean over the ranks, summing in flattened buckets of
    /// about `bucket_bytes` (one collective per bucket rather than per tensor). Tensors
    /// without a gradient are skipped; every rank must pass the same list.
    pub fn average_gradients(
        &self,
        parameters: &[Tensor],
        bucket_bytes: usize,
    ) -> Result<(), DistError> {
        let grads: Vec<Tensor> = parameters
            .iter()
            .map(Tensor::grad)
            .filter(Tensor::defined)
            .collect();
        let mut start = 0;
        while start < grads.len() {
            let kind = grads[start].kind();
            let mut end = start;
            let mut bytes = 0;
            while end < grads.len()
                && grads[end].kind() == kind
                && (end == start || bytes < bucket_bytes)
            {
                bytes += grads[end].numel() * kind.elt_size_in_bytes();
                end += 1;
            }
            let bucket = &grads[start..end];
            let flat = Tensor::cat(
                &bucket.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(),
                0,
            );
            self.all_reduce_sum(&flat)?;
            let flat = flat / self.world as f64;
            let mut offset = 0;
            tch::no_grad(|| {
                for grad in bucket {
                    let n = grad.numel() as i64;
                    grad.shallow_clone()
                        .copy_(&flat.narrow(0, offset, n).view_as(grad));
                    offset += n;
                }
            });
            start = end;
        }
        Ok(())
    }

    /// Overwrites every tensor with rank `root`'s value (parameters and buffers at the
    /// start of a run).
    pub fn broadcast_all(&self, tensors: &[Tensor], root: usize) -> Result<(), DistError> {
        tch::no_grad(|| {
            for tensor in tensors {
                // Gloo broadcasts contiguous tensors; a copy goes back into a strided one.
                if tensor.is_contiguous() {
                    self.broadcast(tensor, root)?;
                } else {
                    let copy = tensor.contiguous();
                    self.broadcast(&copy, root)?;
                    tensor.shallow_clone().copy_(&copy);
                }
            }
            Ok(())
        })
    }

    /// The logical "or" of `flag` over the ranks (a stop request, a failure).
    pub fn any(&self, flag: bool) -> Result<bool, DistError> {
        let value = Tensor::from_slice(&[i64::from(flag)]);
        self.all_reduce_sum(&value)?;
        Ok(value.int64_value(&[0]) > 0)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: the handle came from `fa_dist_new_gloo` and is freed once.
        unsafe { fa_dist_free(self.handle) }
    }
}

/// Kinds the collectives are tested with (`tests/dist_collectives.rs`): every dtype fa's
/// parameters, buffers, bank indices and images use.
pub const TESTED_KINDS: [Kind; 4] = [Kind::Float, Kind::Double, Kind::Int64, Kind::Uint8];
