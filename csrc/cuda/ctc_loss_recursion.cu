// The dtype-independent kernels of the CUDA CTC loss (see ctc_loss_kernel.cuh):
// the per-sample layout, and the alpha/beta recursions, which only see the
// gathered emissions in the accumulation type (float or double).
//
// The recursions run in log space. Each row is stored relative to the largest
// value of the row before it (Rabiner-style scaling, in logs): the stored
// values stay near 0, where float has its finest absolute resolution, instead
// of drifting to -T * (a few nats), and the offsets are summed in double.
// The offset of step t is the previous row's maximum, which every thread reads
// from per-warp partial maxima after the barrier that ends the step anyway, so
// the scaling costs no extra synchronization.
#include "ctc_loss_kernel.cuh"

namespace ctcx {
namespace cuda {
namespace {

constexpr int kPrepareThreads = 512;
constexpr int kPrepareWarps = kPrepareThreads / kWarpSize;
constexpr int kMaxRecursionThreads = 512;
constexpr int kMaxRecursionWarps = kMaxRecursionThreads / kWarpSize;

// Lengths -> SampleMeta, by block-wide exclusive prefix sums over the batch.
__global__ void __launch_bounds__(kPrepareThreads) ctc_prepare_kernel(PrepareParams p) {
  constexpr int kSums = 3;  // labels, frames * (labels + 1), frames * (2 labels + 1)
  __shared__ int64_t warp_total[kSums][kPrepareWarps];
  __shared__ int64_t carry[kSums];
  const int tid = threadIdx.x;
  const int lane = tid % kWarpSize;
  const int warp = tid / kWarpSize;
  const int64_t max_labels = p.padded ? p.S : p.numel;
  if (tid < kSums) carry[tid] = 0;
  bool any_bad = false;
  __syncthreads();
  for (int64_t base = 0; base < p.N; base += kPrepareThreads) {
    const int64_t n = base + tid;
    int64_t frames = 0, labels = 0;
    bool bad = false;
    if (n < p.N) {
      const int64_t il = p.input_lengths[n];
      const int64_t tl = p.target_lengths[n];
      bad = il < 0 || il > p.T || tl < 0 || tl > max_labels;
      frames = il < 0 ? 0 : (il > p.T ? p.T : il);
      labels = bad ? 0 : tl;
    }
    any_bad = __syncthreads_or(bad) || any_bad;
    const int64_t own[kSums] = {labels, frames * (labels + 1), frames * (2 * labels + 1)};
    int64_t incl[kSums];
    for (int i = 0; i < kSums; ++i) {
      incl[i] = own[i];
      for (int offset = 1; offset < kWarpSize; offset *= 2) {
        const int64_t up = __shfl_up_sync(kFullMask, incl[i], offset);
        if (lane >= offset) incl[i] += up;
      }
      if (lane == kWarpSize - 1) warp_total[i][warp] = incl[i];
    }
    __syncthreads();
    if (warp == 0) {
      for (int i = 0; i < kSums; ++i) {
        int64_t v = lane < kPrepareWarps ? warp_total[i][lane] : 0;
        for (int offset = 1; offset < kWarpSize; offset *= 2) {
          const int64_t up = __shfl_up_sync(kFullMask, v, offset);
          if (lane >= offset) v += up;
        }
        if (lane < kPrepareWarps) warp_total[i][lane] = v;  // inclusive over warps
      }
    }
    __syncthreads();
    int64_t excl[kSums];
    for (int i = 0; i < kSums; ++i) {
      excl[i] = carry[i] + (warp > 0 ? warp_total[i][warp - 1] : 0) + incl[i] - own[i];
    }
    if (n < p.N) {
      p.meta[n] = {p.padded ? n * p.S : excl[0], excl[0], excl[1], excl[2], frames, labels,
                   bad ? 1 : 0};
    }
    __syncthreads();  // every thread has read carry and warp_total
    if (tid < kSums) carry[tid] += warp_total[tid][kPrepareWarps - 1];
    __syncthreads();
  }
  // Concatenated targets: offsets are only meaningful when every length is
  // valid and they add up to the number of labels; otherwise no sample is.
  if (!p.padded && (any_bad || carry[0] != p.numel)) {
    for (int64_t n = tid; n < p.N; n += kPrepareThreads) p.meta[n].bad = 1;
  }
}

// Largest of the per-warp maxima of the previous step; 0 when there is no
// finite one, so -inf rows stay -inf and NaN keeps propagating.
template <typename acc_t>
__device__ __forceinline__ acc_t row_offset(const acc_t* warp_max_row, int warps) {
  acc_t m = neg_inf<acc_t>();
  for (int i = 0; i < warps; ++i) m = fmax(m, warp_max_row[i]);
  return isfinite(m) ? m : acc_t(0);
}

template <typename acc_t>
__device__ __forceinline__ void store_warp_max(acc_t* warp_max_row, acc_t v) {
  v = warp_max(v);
  if (threadIdx.x % kWarpSize == 0) warp_max_row[threadIdx.x / kWarpSize] = v;
}

// Emission index of extended state s: 0 (blank) for even s, label (s + 1) / 2 for odd s.
__device__ __forceinline__ int64_t emit_index(int64_t s) { return (s & 1) ? (s + 1) / 2 : 0; }

// One block per sample; threads stride over the 2 L + 1 extended states.
template <typename acc_t, typename target_t>
__global__ void __launch_bounds__(kMaxRecursionThreads)
    ctc_recursion_kernel(RecursionParams<acc_t, target_t> p) {
  unsigned char* shared_alpha = dynamic_smem<unsigned char>();
  __shared__ acc_t warp_max_rows[2][kMaxRecursionWarps];
  const int64_t n = blockIdx.x;
  const int tid = threadIdx.x;
  const int threads = blockDim.x;
  const int warps = threads / kWarpSize;
  const acc_t ninf = neg_inf<acc_t>();
  const SampleMeta m = p.ws.meta[n];
  auto finish = [&](int32_t status, acc_t loss) {
    if (tid == 0) {
      p.ws.status[n] = status;
      p.loss[n] = loss;
    }
  };
  if (m.bad) return finish(kStatusBad, quiet_nan<acc_t>());

  // Labels: validity, where the blank may be skipped, and (for the gradient)
  // the chain of repeated labels, summed in order by ctc_grad_kernel.
  const int64_t L = m.labels;
  const target_t* label = p.targets + m.target_offset;
  int32_t* flags = p.ws.label_flags + m.label_offset;
  int invalid = 0;
  for (int64_t k = tid; k < L; k += threads) {
    const int64_t c = static_cast<int64_t>(label[k]);
    invalid |= !(c >= 0 && c < p.C && c != p.blank);
    int32_t f = (k > 0 && static_cast<int64_t>(label[k - 1]) != c) ? kSkipIn : 0;
    if (p.grad) {
      bool first = true;
      for (int64_t j = 0; j < k && first; ++j) first = static_cast<int64_t>(label[j]) != c;
      int64_t next = -1;
      for (int64_t j = k + 1; j < L && next < 0; ++j) {
        if (static_cast<int64_t>(label[j]) == c) next = j;
      }
      f |= first ? kFirstOccurrence : 0;
      p.ws.label_next[m.label_offset + k] = static_cast<int32_t>(next);
    }
    flags[k] = f;
  }
  if (__syncthreads_or(invalid)) return finish(kStatusBad, quiet_nan<acc_t>());

  const int64_t Tn = m.frames;
  const acc_t inf = -ninf;
  const acc_t infeasible_loss = p.zero_infinity ? acc_t(0) : inf;
  if (Tn == 0) {
    return L == 0 ? finish(kStatusOk, acc_t(0)) : finish(kStatusInfeasible, infeasible_loss);
  }
  const int64_t S = 2 * L + 1;
  const int64_t K = L + 1;
  const acc_t* emit = p.ws.emit + m.emit_offset;  // row t: blank, then label k at k + 1
  acc_t* alpha = p.ws.alpha ? p.ws.alpha + 2 * (2 * m.label_offset + n)
                            : reinterpret_cast<acc_t*>(shared_alpha);  // rows t & 1

  double log_p = 0;
  acc_t* beta = p.grad ? p.ws.beta + m.beta_offset : nullptr;
  double* beta_log_scale = p.grad ? p.ws.beta_log_scale + n * p.T : nullptr;
  if (p.grad) {
    // Exclusive beta: beta_t(s) = log P(frames t+1..Tn-1 finish l' | state s at t),
    // stored minus beta_log_scale[t].
    double scale = 0;
    acc_t local = ninf;
    for (int64_t s = tid; s < S; s += threads) {
      const acc_t v = s + 2 >= S ? acc_t(0) : ninf;
      beta[(Tn - 1) * S + s] = v;
      local = fmax(local, v);
    }
    store_warp_max(warp_max_rows[(Tn - 1) & 1], local);
    if (tid == 0) beta_log_scale[Tn - 1] = 0;
    __syncthreads();
    for (int64_t t = Tn - 2; t >= 0; --t) {
      const acc_t d = row_offset(warp_max_rows[(t + 1) & 1], warps);
      scale += d;
      const acc_t* b1 = beta + (t + 1) * S;
      const acc_t* e1 = emit + (t + 1) * K;
      acc_t* b = beta + t * S;
      local = ninf;
      for (int64_t s = tid; s < S; s += threads) {
        // state s -> s, s + 1, and s + 2 when s + 2 is a label differing from s's
        const acc_t stay = b1[s] + e1[emit_index(s)];
        const acc_t step = s + 1 < S ? b1[s + 1] + e1[emit_index(s + 1)] : ninf;
        const acc_t skip = ((s & 1) && s + 2 < S && (flags[(s + 1) / 2] & kSkipIn))
                               ? b1[s + 2] + e1[(s + 3) / 2]
                               : ninf;
        const acc_t v = log_add_exp(stay, step, skip) - d;
        b[s] = v;
        local = fmax(local, v);
      }
      store_warp_max(warp_max_rows[t & 1], local);
      if (tid == 0) beta_log_scale[t] = scale;
      __syncthreads();
    }
    log_p = scale + static_cast<double>(log_add_exp(beta[0] + emit[0],
                                                    S > 1 ? beta[1] + emit[1] : ninf));
    // Every thread has read beta_0(0) and beta_0(1) before the alpha loop's
    // first step overwrites row 0 of beta with gamma (threads 0 and 1 write
    // exactly those two entries; with several warps a late reader would
    // otherwise see gamma and get a wrong log_p, loss and gradient).
    __syncthreads();
    // Uniform: every thread computed log_p from the same values.
    if (log_p == neg_inf<double>()) return finish(kStatusInfeasible, infeasible_loss);
  }

  // Alpha, stored minus alpha_scale; with the gradient, gamma_t(s) =
  // exp(alpha_t(s) + beta_t(s) - log_p) replaces beta_t(s).
  double alpha_scale = 0;
  for (int64_t t = 0; t < Tn; ++t) {
    const acc_t* prev = alpha + ((t + 1) & 1) * S;
    acc_t* cur = alpha + (t & 1) * S;
    const acc_t* e = emit + t * K;
    const acc_t d = t == 0 ? acc_t(0) : row_offset(warp_max_rows[(t + 1) & 1], warps);
    alpha_scale += d;
    acc_t* b = p.grad ? beta + t * S : nullptr;
    const acc_t gamma_shift =
        p.grad ? static_cast<acc_t>(alpha_scale + beta_log_scale[t] - log_p) : acc_t(0);
    acc_t local = ninf;
    for (int64_t s = tid; s < S; s += threads) {
      acc_t v;
      if (t == 0) {
        v = s < 2 ? e[s] : ninf;
      } else {
        // state s <- s, s - 1, and s - 2 when s is a label differing from s - 2's
        const acc_t step = s >= 1 ? prev[s - 1] : ninf;
        const acc_t skip =
            ((s & 1) && s >= 3 && (flags[(s - 1) / 2] & kSkipIn)) ? prev[s - 2] : ninf;
        v = log_add_exp(prev[s], step, skip) + e[emit_index(s)] - d;
      }
      cur[s] = v;
      local = fmax(local, v);
      if (p.grad) b[s] = exp_(v + b[s] + gamma_shift);
    }
    store_warp_max(warp_max_rows[t & 1], local);
    __syncthreads();
  }
  if (!p.grad) {
    const acc_t* last = alpha + ((Tn - 1) & 1) * S;
    log_p = alpha_scale + static_cast<double>(log_add_exp(last[S - 1], S > 1 ? last[S - 2] : ninf));
    if (log_p == neg_inf<double>()) return finish(kStatusInfeasible, infeasible_loss);
  }
  finish(kStatusOk, static_cast<acc_t>(-log_p));
}

}  // namespace

cudaError_t launch_prepare(const PrepareParams& p, cudaStream_t stream) {
  return launch(ctc_prepare_kernel, dim3(1), dim3(kPrepareThreads), 0, stream, p);
}

template <typename acc_t, typename target_t>
cudaError_t launch_recursion(const RecursionParams<acc_t, target_t>& p, cudaStream_t stream) {
  // Enough warps to give every state of a typical sample a thread; longer
  // samples loop. One warp for short targets keeps the barriers cheap.
  const int64_t states = 2 * p.typical_labels + 1;
  const int64_t warps = (states + kWarpSize - 1) / kWarpSize;
  const int threads =
      kWarpSize * static_cast<int>(warps < 1 ? 1 : (warps > kMaxRecursionWarps ? kMaxRecursionWarps : warps));
  return launch(ctc_recursion_kernel<acc_t, target_t>, dim3(static_cast<unsigned>(p.N)),
                dim3(threads), p.ws.alpha_shared_bytes, stream, p);
}

template cudaError_t launch_recursion<float, int32_t>(const RecursionParams<float, int32_t>&,
                                                      cudaStream_t);
template cudaError_t launch_recursion<float, int64_t>(const RecursionParams<float, int64_t>&,
                                                      cudaStream_t);
template cudaError_t launch_recursion<double, int32_t>(const RecursionParams<double, int32_t>&,
                                                       cudaStream_t);
template cudaError_t launch_recursion<double, int64_t>(const RecursionParams<double, int64_t>&,
                                                       cudaStream_t);

}  // namespace cuda
}  // namespace ctcx
