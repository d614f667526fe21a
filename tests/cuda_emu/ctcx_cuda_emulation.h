// CUDA on CPU threads, for tests: the kernels of csrc/cuda compile with the
// host compiler against this header (reached through csrc/cuda/launch.cuh and
// the stand-in <cuda_runtime.h> of tests/cuda_emu/include when
// CTCX_CUDA_EMULATION is defined) and run unchanged:
//
// - every thread of a block is an OS thread; blocks run one after another,
//   so static `__shared__` variables are block-wide storage;
// - __syncthreads() (and _or/_and/_count) is a barrier that reports threads
//   arriving from different call sites (file, line and caller), and a thread
//   that leaves the kernel while others wait at a barrier;
// - warp shuffles, votes and __syncwarp check that every lane named in the
//   mask takes part, at the same call site with the same mask, and that the
//   lane read from is one of them;
// - dynamic shared memory above 48 KiB without the opt-in attribute, or above
//   the emulated device's opt-in maximum, is an error; it starts full of
//   garbage, as every block's, and is an exact-size heap block, so
//   AddressSanitizer sees overruns;
// - a wait longer than kDeadlockSeconds is reported as a deadlock.
//
// Any violation prints "CUDA-EMU ERROR: ..." with the block and thread and
// ends the process with exit code 86. Run under ThreadSanitizer, a missing
// barrier between a write and a read of another thread shows as a data race.
// It does not model timing, the memory model's weak orderings beyond what
// the barriers give, or hardware limits other than shared memory.
#pragma once

#include <math.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// ------------------------------------------------------------ CUDA's words

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __shared__ static
#define __restrict__ __restrict

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
};
enum cudaFuncAttribute : int { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
struct CUstream_st;
using cudaStream_t = CUstream_st*;

inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};

namespace ctcx_emu {

constexpr size_t kDefaultSharedBytes = 48 * 1024;
constexpr size_t kOptinSharedBytes = 227 * 1024;  // H100/H200: cudaDevAttrMaxSharedMemoryPerBlockOptin
constexpr int kMaxThreadsPerBlock = 1024;
constexpr int kDeadlockSeconds = 120;
constexpr int kErrorExit = 86;

struct Site {
  const char* file;
  int line;
  const void* caller;
  bool operator==(const Site& o) const {
    return line == o.line && caller == o.caller && std::strcmp(file, o.file) == 0;
  }
  bool operator!=(const Site& o) const { return !(*this == o); }
};

#define CTCX_EMU_SITE (::ctcx_emu::Site{__FILE__, __LINE__, __builtin_return_address(0)})

inline std::mutex& report_mutex() {
  static std::mutex m;
  return m;
}

[[noreturn]] inline void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] inline void fail(const char* fmt, ...) {
  std::lock_guard<std::mutex> lock(report_mutex());
  std::fprintf(stderr, "CUDA-EMU ERROR: block (%u,%u,%u) thread (%u,%u,%u): ", blockIdx.x,
               blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z);
  va_list args;
  va_start(args, fmt);
  std::vfprintf(stderr, fmt, args);
  va_end(args);
  std::fputc('\n', stderr);
  std::fflush(stderr);
  std::fflush(stdout);
  std::_Exit(kErrorExit);
}

inline int linear_tid() {
  return static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
}

// Waits until done() (which reads atomics only), with `lock` released:
// yielding spins, far cheaper than sleeping and waking hundreds of threads at
// every barrier on a machine with few cores. Reports a deadlock after
// kDeadlockSeconds. Returns with `lock` held again.
template <typename Done>
void wait_or_fail(std::unique_lock<std::mutex>& lock, Done done, const char* what, const Site& site) {
  lock.unlock();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kDeadlockSeconds);
  for (unsigned spins = 1; !done(); ++spins) {
    std::this_thread::yield();
    if (spins % 4096 == 0 && std::chrono::steady_clock::now() > deadline) {
      fail("deadlock: waited %d s at %s (%s:%d)", kDeadlockSeconds, what, site.file, site.line);
    }
  }
  lock.lock();
}

// ----------------------------------------------------------------- a block

struct Warp {
  std::mutex mu;
  std::atomic<bool> reading{false};  // the slots of the current operation are being read
  unsigned arrived = 0;     // lanes that deposited a value for the current operation
  unsigned op_mask = 0;     // the mask of the current operation
  unsigned exited = 0;      // lanes that left the kernel
  unsigned lanes = 0;       // lanes that exist (a partial last warp has fewer)
  int readers = 0;
  std::atomic<long> generation{0};
  Site site{"", 0, nullptr};
  uint64_t slot[32] = {};
};

struct Block {
  int threads = 0;
  std::mutex mu;
  int arrived = 0;
  int exited = 0;
  std::atomic<long> generation{0};
  Site site{"", 0, nullptr};
  int or_acc = 0, and_acc = 1, count_acc = 0;
  int or_result = 0, and_result = 1, count_result = 0;
  std::vector<std::unique_ptr<Warp>> warps;
  // end of block: every thread has left the kernel
  int finished = 0;
  std::atomic<long> end_generation{0};

  void reset(int n) {
    threads = n;
    arrived = exited = finished = 0;
    or_acc = 0, and_acc = 1, count_acc = 0;
    const int nwarps = (n + 31) / 32;
    warps.clear();
    for (int w = 0; w < nwarps; ++w) {
      warps.emplace_back(new Warp());
      const int in_warp = std::min(32, n - 32 * w);
      warps.back()->lanes = in_warp == 32 ? ~0u : ((1u << in_warp) - 1);
    }
  }
};

struct Launch {
  Block block;
  unsigned char* dynamic_shared = nullptr;
  size_t dynamic_bytes = 0;
};

inline thread_local Launch* current = nullptr;

// __syncthreads and its reductions: one barrier of every thread of the block.
inline void block_barrier(const Site& site, int pred, int* or_out, int* and_out, int* count_out) {
  Block& b = current->block;
  std::unique_lock<std::mutex> lock(b.mu);
  if (b.exited > 0) {
    lock.unlock();
    fail("__syncthreads at %s:%d after %d thread(s) of the block left the kernel", site.file,
         site.line, b.exited);
  }
  if (b.arrived == 0) {
    b.site = site;
  } else if (b.site != site) {
    const Site first = b.site;
    lock.unlock();
    fail("__syncthreads from different call sites: %s:%d (caller %p) here, %s:%d (caller %p) "
         "for %d other thread(s)",
         site.file, site.line, site.caller, first.file, first.line, first.caller, b.arrived);
  }
  b.or_acc |= pred != 0;
  b.and_acc &= pred != 0;
  b.count_acc += pred != 0;
  if (++b.arrived == b.threads) {
    b.or_result = b.or_acc, b.and_result = b.and_acc, b.count_result = b.count_acc;
    b.or_acc = 0, b.and_acc = 1, b.count_acc = 0;
    b.arrived = 0;
    ++b.generation;
  } else {
    const long gen = b.generation;
    wait_or_fail(lock, [&] { return b.generation.load() != gen; }, "__syncthreads", site);
  }
  // Stable until this thread arrives at the next barrier.
  if (or_out) *or_out = b.or_result;
  if (and_out) *and_out = b.and_result;
  if (count_out) *count_out = b.count_result;
}

// A warp-wide exchange among the lanes of `mask`: every one deposits `value`;
// returns all 32 slots once every lane of the mask has arrived.
inline void warp_exchange(const Site& site, unsigned mask, uint64_t value, uint64_t out[32],
                          const char* what) {
  const int tid = linear_tid();
  const int lane = tid % 32;
  Warp& w = *current->block.warps[tid / 32];
  const unsigned bit = 1u << lane;
  std::unique_lock<std::mutex> lock(w.mu);
  if (!(mask & bit)) {
    lock.unlock();
    fail("%s at %s:%d: the calling lane %d is not in the mask 0x%08x", what, site.file, site.line,
         lane, mask);
  }
  if (mask & ~w.lanes) {
    lock.unlock();
    fail("%s at %s:%d: mask 0x%08x names lanes that do not exist (0x%08x)", what, site.file,
         site.line, mask, w.lanes);
  }
  if (mask & w.exited) {
    lock.unlock();
    fail("%s at %s:%d: mask 0x%08x names lanes that left the kernel (0x%08x)", what, site.file,
         site.line, mask, w.exited);
  }
  while (w.reading) wait_or_fail(lock, [&] { return !w.reading.load(); }, what, site);
  if (w.arrived == 0) {
    w.op_mask = mask;
    w.site = site;
  } else if (w.op_mask != mask || w.site != site) {
    const Site other = w.site;
    const unsigned other_mask = w.op_mask;
    lock.unlock();
    fail("%s at %s:%d (caller %p) with mask 0x%08x while lanes 0x%08x are at %s:%d (caller %p) "
         "with mask 0x%08x",
         what, site.file, site.line, site.caller, mask, w.arrived, other.file, other.line,
         other.caller, other_mask);
  }
  w.slot[lane] = value;
  w.arrived |= bit;
  if (w.arrived == mask) {
    w.reading = true;
    w.readers = __builtin_popcount(mask);
    ++w.generation;
  } else {
    const long gen = w.generation;
    wait_or_fail(lock, [&] { return w.generation.load() != gen; }, what, site);
  }
  std::memcpy(out, w.slot, sizeof w.slot);
  if (--w.readers == 0) {
    w.arrived = 0;
    w.reading = false;
  }
}

// A thread leaves the kernel: barriers and warp operations waiting for it fail.
inline void thread_exit() {
  const int tid = linear_tid();
  Block& b = current->block;
  {
    Warp& w = *b.warps[tid / 32];
    std::unique_lock<std::mutex> lock(w.mu);
    const unsigned bit = 1u << (tid % 32);
    w.exited |= bit;
    if (w.arrived && !w.reading && (w.op_mask & bit)) {
      const Site s = w.site;
      lock.unlock();
      fail("left the kernel while lanes 0x%08x of its warp wait for it at %s:%d", w.arrived,
           s.file, s.line);
    }
  }
  std::unique_lock<std::mutex> lock(b.mu);
  ++b.exited;
  if (b.arrived > 0) {
    const Site s = b.site;
    lock.unlock();
    fail("left the kernel while %d thread(s) wait at __syncthreads at %s:%d", b.arrived, s.file,
         s.line);
  }
}

template <typename T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffled type");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof v);
  return bits;
}

template <typename T>
T from_bits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

// Shuffle: the value of lane `src` (which must take part), or the caller's own
// when src < 0 (out of the segment for up/down).
template <typename T>
T shuffle(const Site& site, unsigned mask, T v, int src, const char* what) {
  uint64_t slots[32];
  warp_exchange(site, mask, to_bits(v), slots, what);
  if (src < 0) return v;
  if (!(mask & (1u << src))) {
    fail("%s at %s:%d reads lane %d, which is not in the mask 0x%08x", what, site.file, site.line,
         src, mask);
  }
  return from_bits<T>(slots[src]);
}

inline int lane_id() { return linear_tid() % 32; }

template <typename T>
T shfl(const Site& s, unsigned mask, T v, int src_lane, int width = 32) {
  const int lane = lane_id();
  return shuffle(s, mask, v, (lane / width) * width + ((src_lane % width + width) % width),
                 "__shfl_sync");
}
template <typename T>
T shfl_up(const Site& s, unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = lane_id();
  const int in_segment = lane % width;
  return shuffle(s, mask, v, in_segment >= static_cast<int>(delta) ? lane - static_cast<int>(delta) : -1,
                 "__shfl_up_sync");
}
template <typename T>
T shfl_down(const Site& s, unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = lane_id();
  const int in_segment = lane % width;
  return shuffle(s, mask, v,
                 in_segment + static_cast<int>(delta) < width ? lane + static_cast<int>(delta) : -1,
                 "__shfl_down_sync");
}
template <typename T>
T shfl_xor(const Site& s, unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = lane_id();
  const int src = lane ^ lane_mask;
  return shuffle(s, mask, v, src / width == lane / width ? src : -1, "__shfl_xor_sync");
}
inline unsigned ballot(const Site& s, unsigned mask, int pred) {
  uint64_t slots[32];
  warp_exchange(s, mask, pred != 0, slots, "__ballot_sync");
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= (mask >> i & 1u) && slots[i] ? 1u << i : 0u;
  return r;
}
inline void syncwarp(const Site& s, unsigned mask = 0xffffffffu) {
  uint64_t slots[32];
  warp_exchange(s, mask, 0, slots, "__syncwarp");
}

// ------------------------------------------------- launches and attributes

struct Attributes {
  std::mutex mu;
  std::map<const void*, size_t> max_dynamic_shared;
  std::vector<size_t> set_values;  // every value set, for tests
};
inline Attributes& attributes() {
  static Attributes a;
  return a;
}

struct LaunchStats {
  std::mutex mu;
  long launches = 0;
  long blocks = 0;
  int max_threads = 0;
  std::vector<std::pair<long, long>> shapes;  // (blocks, threads per block) of every launch
};
inline LaunchStats& stats() {
  static LaunchStats s;
  return s;
}

inline uint64_t garbage_word(uint64_t& state) {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

inline void fill_garbage(void* p, size_t bytes, uint64_t seed) {
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
  unsigned char* c = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < bytes; i += 8) {
    const uint64_t w = garbage_word(state);
    std::memcpy(c + i, &w, std::min<size_t>(8, bytes - i));
  }
}

// Persistent workers: thread i of every block of a launch is worker i.
class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    start_.notify_all();
    for (auto& t : workers_) t.join();
  }
  void run(int threads, const std::function<void(int)>& job) {
    std::unique_lock<std::mutex> lock(mu_);
    while (static_cast<int>(workers_.size()) < threads) {
      const int i = static_cast<int>(workers_.size());
      workers_.emplace_back([this, i] { work(i); });
    }
    job_ = &job;
    threads_ = threads;
    remaining_ = threads;
    ++generation_;
    start_.notify_all();
    done_.wait(lock, [&] { return remaining_ == 0; });
    job_ = nullptr;
  }

 private:
  void work(int i) {
    long seen = 0;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      start_.wait(lock, [&] { return stop_ || (generation_ != seen && i < threads_); });
      if (stop_) return;
      seen = generation_;
      const std::function<void(int)>* job = job_;
      lock.unlock();
      (*job)(i);
      lock.lock();
      if (--remaining_ == 0) done_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable start_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  int threads_ = 0, remaining_ = 0;
  long generation_ = 0;
  bool stop_ = false;
};

inline Pool& pool() {
  static Pool p;
  return p;
}

inline thread_local cudaError_t last_error = cudaSuccess;

template <typename... Params, typename... Args>
cudaError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                   Args&&... args) {
  const long threads = static_cast<long>(block.x) * block.y * block.z;
  if (threads < 1 || threads > kMaxThreadsPerBlock || grid.x < 1 || grid.y < 1 || grid.z < 1 ||
      grid.y > 65535 || grid.z > 65535) {
    std::fprintf(stderr, "CUDA-EMU ERROR: invalid launch configuration grid (%u,%u,%u) block (%u,%u,%u)\n",
                 grid.x, grid.y, grid.z, block.x, block.y, block.z);
    std::_Exit(kErrorExit);
  }
  size_t allowed = kDefaultSharedBytes;
  {
    Attributes& a = attributes();
    std::lock_guard<std::mutex> lock(a.mu);
    auto it = a.max_dynamic_shared.find(reinterpret_cast<const void*>(kernel));
    if (it != a.max_dynamic_shared.end()) allowed = std::max(allowed, it->second);
  }
  if (shared_bytes > allowed) {
    std::fprintf(stderr,
                 "CUDA-EMU ERROR: launch with %zu bytes of dynamic shared memory; the kernel "
                 "allows %zu (above %zu it needs cudaFuncAttributeMaxDynamicSharedMemorySize)\n",
                 shared_bytes, allowed, kDefaultSharedBytes);
    std::_Exit(kErrorExit);
  }
  {
    LaunchStats& s = stats();
    std::lock_guard<std::mutex> lock(s.mu);
    ++s.launches;
    s.blocks += static_cast<long>(grid.x) * grid.y * grid.z;
    s.max_threads = std::max(s.max_threads, static_cast<int>(threads));
    s.shapes.emplace_back(static_cast<long>(grid.x) * grid.y * grid.z, threads);
  }
  // Kernel parameters are copied once, as into the GPU's constant bank.
  const std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
  Launch state;
  std::unique_ptr<unsigned char[]> shared(new unsigned char[shared_bytes ? shared_bytes : 1]);
  state.dynamic_shared = shared.get();
  state.dynamic_bytes = shared_bytes;
  const long nblocks = static_cast<long>(grid.x) * grid.y * grid.z;
  state.block.reset(static_cast<int>(threads));
  fill_garbage(state.dynamic_shared, shared_bytes, 1);
  const std::function<void(int)> job = [&](int tid) {
    current = &state;
    blockDim = block;
    gridDim = grid;
    threadIdx = {static_cast<unsigned>(tid % block.x), static_cast<unsigned>(tid / block.x % block.y),
                 static_cast<unsigned>(tid / (block.x * block.y))};
    for (long b = 0; b < nblocks; ++b) {
      blockIdx = {static_cast<unsigned>(b % grid.x), static_cast<unsigned>(b / grid.x % grid.y),
                  static_cast<unsigned>(b / (static_cast<long>(grid.x) * grid.y))};
      std::apply(kernel, params);
      thread_exit();
      // End of the block: the last thread to leave readies the next block.
      Block& blk = state.block;
      std::unique_lock<std::mutex> lock(blk.mu);
      if (++blk.finished == blk.threads) {
        blk.reset(blk.threads);
        fill_garbage(state.dynamic_shared, shared_bytes, static_cast<uint64_t>(b) + 2);
        ++blk.end_generation;
      } else {
        const long gen = blk.end_generation;
        wait_or_fail(lock, [&] { return blk.end_generation.load() != gen; }, "the end of the block",
                     Site{__FILE__, __LINE__, nullptr});
      }
    }
    current = nullptr;
  };
  pool().run(static_cast<int>(threads), job);
  return cudaSuccess;
}

}  // namespace ctcx_emu

// ------------------------------------------------------- CUDA's built-ins

#define __syncthreads() ::ctcx_emu::block_barrier(CTCX_EMU_SITE, 0, nullptr, nullptr, nullptr)
#define __syncthreads_or(pred) ::ctcx_emu::syncthreads_reduce(CTCX_EMU_SITE, (pred), 0)
#define __syncthreads_and(pred) ::ctcx_emu::syncthreads_reduce(CTCX_EMU_SITE, (pred), 1)
#define __syncthreads_count(pred) ::ctcx_emu::syncthreads_reduce(CTCX_EMU_SITE, (pred), 2)
#define __shfl_sync(...) ::ctcx_emu::shfl(CTCX_EMU_SITE, __VA_ARGS__)
#define __shfl_up_sync(...) ::ctcx_emu::shfl_up(CTCX_EMU_SITE, __VA_ARGS__)
#define __shfl_down_sync(...) ::ctcx_emu::shfl_down(CTCX_EMU_SITE, __VA_ARGS__)
#define __shfl_xor_sync(...) ::ctcx_emu::shfl_xor(CTCX_EMU_SITE, __VA_ARGS__)
#define __ballot_sync(mask, pred) ::ctcx_emu::ballot(CTCX_EMU_SITE, (mask), (pred))
#define __syncwarp(...) ::ctcx_emu::syncwarp(CTCX_EMU_SITE __VA_OPT__(, ) __VA_ARGS__)

namespace ctcx_emu {
inline int syncthreads_reduce(const Site& site, int pred, int which) {
  int o = 0, a = 0, c = 0;
  block_barrier(site, pred, &o, &a, &c);
  return which == 0 ? o : (which == 1 ? a : c);
}
}  // namespace ctcx_emu

inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(static_cast<unsigned>(v)); }

inline cudaError_t cudaGetLastError() {
  const cudaError_t e = ctcx_emu::last_error;
  ctcx_emu::last_error = cudaSuccess;
  return e;
}
inline const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : "emulated CUDA error";
}

template <typename... Params>
cudaError_t cudaFuncSetAttribute(void (*kernel)(Params...), cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
  if (value < 0 || static_cast<size_t>(value) > ctcx_emu::kOptinSharedBytes) {
    std::fprintf(stderr, "CUDA-EMU ERROR: cudaFuncSetAttribute(MaxDynamicSharedMemorySize, %d) "
                 "exceeds the device's %zu bytes\n", value, ctcx_emu::kOptinSharedBytes);
    std::_Exit(ctcx_emu::kErrorExit);
  }
  ctcx_emu::Attributes& a = ctcx_emu::attributes();
  std::lock_guard<std::mutex> lock(a.mu);
  a.max_dynamic_shared[reinterpret_cast<const void*>(kernel)] = static_cast<size_t>(value);
  a.set_values.push_back(static_cast<size_t>(value));
  return cudaSuccess;
}

// ------------------------------------------------------------- the seam

namespace ctcx {
namespace cuda {

template <typename... Params, typename... Args>
inline cudaError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                          cudaStream_t /*stream*/, Args&&... args) {
  return ::ctcx_emu::launch(kernel, grid, block, shared_bytes, std::forward<Args>(args)...);
}

template <typename T>
inline T* dynamic_smem() {
  return reinterpret_cast<T*>(::ctcx_emu::current->dynamic_shared);
}

template <typename... Params>
inline cudaError_t allow_dynamic_smem(void (*kernel)(Params...), size_t bytes) {
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(bytes));
}

}  // namespace cuda
}  // namespace ctcx
