// Fused CTC loss and gradient on the CPU (Graves et al. 2006, section 4.1).
//
// One call computes, per sample n, the loss -log p(l | x) and, when asked,
// d loss / d log_probs in the same pass:
//   1. gather the log-probabilities of the blank and of the target's labels
//      into a compact (T_n, L + 1) buffer, so the recursions never touch the
//      full C-wide rows;
//   2. run the backward (beta) recursion over the extended label sequence
//      l' = (blank, l_1, blank, ..., l_L, blank), storing beta;
//   3. run the forward (alpha) recursion, and at each frame t turn
//      alpha_t * beta_t into the posterior occupancy gamma_t(c) and write the
//      gradient row (t, n, :) = -gamma_t once.
// Without a gradient only the alpha recursion runs, with two rows of state.
//
// The extended sequence is stored split in two contiguous arrays, blank states
// (index j = 0..L for state 2j) and label states (index k = 1..L for state
// 2k-1), so every recursion step is a branch-free loop over a contiguous array.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <optional>
#include <vector>

#include "ctcx/log_math.h"
#include "ctcx/ctc_loss_checks.h"

namespace ctcx {
namespace {

template <typename acc_t>
struct SampleWorkspace {
  std::vector<acc_t> emit;     // (T_n, L + 1): [t][0] blank, [t][k] label k
  std::vector<acc_t> skip;     // (L + 2): 0 where label k-1 -> label k may skip the blank, else -inf
  std::vector<acc_t> beta;     // (T_n, 2 (L + 2)): exclusive beta, blank states then label states
  std::vector<acc_t> alpha;    // (2, 2 (L + 2)): current and previous alpha rows
  std::vector<acc_t> next;     // (2 (L + 2)): beta_{t+1} + emission at t+1
  std::vector<acc_t> occupancy;  // (L + 1): gamma for each distinct label, by first position
  std::vector<int64_t> first;  // (L + 1): first position k' of label l_k in the target
  std::vector<int64_t> slot;   // (C): scratch map label -> first position, -1 when unused
};

// alpha_t from alpha_{t-1} (Graves eq. 6-7), in split layout.
// prev/cur: blank states at [0, L], label states at [W + 1, W + L] with
// sentinel -inf at label index 0 (W = L + 2).
template <typename acc_t>
inline void alpha_step(const acc_t* prev, acc_t* cur, const acc_t* emit_t,
                       const acc_t* skip, int64_t L, int64_t W) {
  const acc_t* pb = prev;
  const acc_t* pl = prev + W;
  acc_t* cb = cur;
  acc_t* cl = cur + W;
  const acc_t e_blank = emit_t[0];
  for (int64_t j = 0; j <= L; ++j) {
    cb[j] = log_add_exp(pb[j], pl[j]) + e_blank;
  }
  for (int64_t k = 1; k <= L; ++k) {
    cl[k] = log_add_exp(pl[k], pb[k - 1], pl[k - 1] + skip[k]) + emit_t[k];
  }
}

template <typename scalar_t, typename target_t>
void ctc_loss_cpu_impl(const at::Tensor& log_probs, const at::Tensor& targets,
                       const int64_t* input_lengths, const int64_t* target_lengths,
                       const int64_t* target_offsets, int64_t blank,
                       bool zero_infinity, const at::Tensor* grad_weights, at::Tensor& loss,
                       at::Tensor* grad) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = log_probs.size(1);
  const int64_t C = log_probs.size(2);
  const int64_t lp_st = log_probs.stride(0);
  const int64_t lp_sn = log_probs.stride(1);
  const scalar_t* lp = log_probs.const_data_ptr<scalar_t>();
  const target_t* tg = targets.const_data_ptr<target_t>();
  acc_t* loss_out = loss.mutable_data_ptr<acc_t>();
  scalar_t* grad_out = grad ? grad->mutable_data_ptr<scalar_t>() : nullptr;
  const acc_t* weights = grad ? grad_weights->const_data_ptr<acc_t>() : nullptr;
  const int64_t T = log_probs.size(0);
  const int64_t g_st = grad ? grad->stride(0) : 0;
  const int64_t g_sn = grad ? grad->stride(1) : 0;
  const acc_t ninf = neg_inf<acc_t>();

  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    SampleWorkspace<acc_t> ws;
    if (grad_out) ws.slot.assign(C, -1);
    for (int64_t n = begin; n < end; ++n) {
      const int64_t Tn = input_lengths[n];
      const int64_t L = target_lengths[n];
      const int64_t K = L + 1;
      const int64_t W = L + 2;
      const target_t* label = tg + target_offsets[n];

      // 1. Gather blank and label log-probs for the frames of this sample.
      ws.emit.resize(Tn * K);
      for (int64_t t = 0; t < Tn; ++t) {
        const scalar_t* row = lp + t * lp_st + n * lp_sn;
        acc_t* e = ws.emit.data() + t * K;
        e[0] = static_cast<acc_t>(row[blank]);
        for (int64_t k = 1; k <= L; ++k) e[k] = static_cast<acc_t>(row[label[k - 1]]);
      }
      ws.skip.assign(L + 2, ninf);
      for (int64_t k = 2; k <= L; ++k) {
        if (label[k - 1] != label[k - 2]) ws.skip[k] = 0;
      }
      const acc_t* emit = ws.emit.data();
      const acc_t* skip = ws.skip.data();

      acc_t log_p = (Tn == 0 && L == 0) ? acc_t(0) : ninf;
      if (!grad_out) {
        // Forward only: alpha with two rows of state.
        if (Tn > 0) {
          ws.alpha.assign(2 * 2 * W, ninf);
          acc_t* a0 = ws.alpha.data();
          a0[0] = emit[0];
          if (L > 0) a0[W + 1] = emit[1];
          for (int64_t t = 1; t < Tn; ++t) {
            alpha_step(ws.alpha.data() + ((t - 1) & 1) * 2 * W,
                       ws.alpha.data() + (t & 1) * 2 * W, emit + t * K, skip, L, W);
          }
          const acc_t* a = ws.alpha.data() + ((Tn - 1) & 1) * 2 * W;
          log_p = log_add_exp(a[L], a[W + L]);
        }
        const acc_t nll = -log_p;
        loss_out[n] = (zero_infinity && nll == std::numeric_limits<acc_t>::infinity()) ? acc_t(0) : nll;
        continue;
      }

      // 2. Exclusive beta: beta_t(s) = P(frames t+1..Tn-1 complete l' | state s at t).
      if (Tn > 0) {
        ws.beta.assign(Tn * 2 * W, ninf);
        ws.next.assign(2 * W, ninf);
        acc_t* bT = ws.beta.data() + (Tn - 1) * 2 * W;
        bT[L] = 0;
        if (L > 0) bT[W + L] = 0;
        for (int64_t t = Tn - 2; t >= 0; --t) {
          const acc_t* b1 = ws.beta.data() + (t + 1) * 2 * W;
          const acc_t* e1 = emit + (t + 1) * K;
          acc_t* vb = ws.next.data();
          acc_t* vl = ws.next.data() + W;
          for (int64_t j = 0; j <= L; ++j) vb[j] = b1[j] + e1[0];
          for (int64_t k = 1; k <= L; ++k) vl[k] = b1[W + k] + e1[k];
          acc_t* bb = ws.beta.data() + t * 2 * W;
          acc_t* bl = bb + W;
          // blank 2j -> {2j, label j+1}; label k -> {k, blank k, label k+1 if distinct}
          for (int64_t j = 0; j <= L; ++j) bb[j] = log_add_exp(vb[j], vl[j + 1]);
          for (int64_t k = 1; k <= L; ++k) {
            bl[k] = log_add_exp(vl[k], vb[k], vl[k + 1] + skip[k + 1]);
          }
        }
        const acc_t* b0 = ws.beta.data();
        log_p = log_add_exp(b0[0] + emit[0], L > 0 ? b0[W + 1] + emit[1] : ninf);
      }
      const bool infeasible = log_p == ninf;
      const acc_t nll = -log_p;
      loss_out[n] = (zero_infinity && infeasible) ? acc_t(0) : nll;

      // Frames past the input length, and every frame of a zeroed infeasible
      // sample, get a zero gradient; an infeasible sample without
      // zero_infinity gets NaN on its frames, as torch.nn.CTCLoss does.
      for (int64_t t = 0; t < T; ++t) {
        scalar_t* row = grad_out + t * g_st + n * g_sn;
        if (t < Tn && infeasible && !zero_infinity) {
          std::fill(row, row + C, static_cast<scalar_t>(std::numeric_limits<acc_t>::quiet_NaN()));
        } else if (t >= Tn || infeasible) {
          std::memset(row, 0, C * sizeof(scalar_t));
        }
      }
      if (infeasible || Tn == 0) continue;

      // Repeated labels in the target share one gradient entry: accumulate
      // their occupancy at the label's first position.
      ws.first.resize(K);
      for (int64_t k = 1; k <= L; ++k) {
        const int64_t c = static_cast<int64_t>(label[k - 1]);
        if (ws.slot[c] < 0) ws.slot[c] = k;
        ws.first[k] = ws.slot[c];
      }
      for (int64_t k = 1; k <= L; ++k) ws.slot[static_cast<int64_t>(label[k - 1])] = -1;
      ws.occupancy.resize(K);
      const acc_t w = weights[n];

      // 3. Alpha sweep; each frame's gradient row is written once.
      ws.alpha.assign(2 * 2 * W, ninf);
      for (int64_t t = 0; t < Tn; ++t) {
        acc_t* a = ws.alpha.data() + (t & 1) * 2 * W;
        if (t == 0) {
          a[0] = emit[0];
          if (L > 0) a[W + 1] = emit[1];
        } else {
          alpha_step(ws.alpha.data() + ((t - 1) & 1) * 2 * W, a, emit + t * K, skip, L, W);
        }
        const acc_t* b = ws.beta.data() + t * 2 * W;
        acc_t blank_occ = 0;
        for (int64_t j = 0; j <= L; ++j) blank_occ += std::exp(a[j] + b[j] - log_p);
        acc_t* occ = ws.occupancy.data();
        for (int64_t k = 1; k <= L; ++k) occ[k] = 0;
        for (int64_t k = 1; k <= L; ++k) occ[ws.first[k]] += std::exp(a[W + k] + b[W + k] - log_p);

        scalar_t* row = grad_out + t * g_st + n * g_sn;
        std::memset(row, 0, C * sizeof(scalar_t));
        row[blank] = static_cast<scalar_t>(-w * blank_occ);
        for (int64_t k = 1; k <= L; ++k) {
          if (ws.first[k] == k) row[label[k - 1]] = static_cast<scalar_t>(-w * occ[k]);
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> ctc_loss_cpu(const at::Tensor& log_probs,
                                               const at::Tensor& targets,
                                               const at::Tensor& input_lengths,
                                               const at::Tensor& target_lengths,
                                               int64_t blank, bool zero_infinity,
                                               const std::optional<at::Tensor>& grad_weights) {
  check_ctc_loss_layout(log_probs, targets, input_lengths, target_lengths, blank);
  const at::Tensor il = input_lengths.contiguous();
  const at::Tensor tl = target_lengths.contiguous();
  const at::Tensor tg = targets.contiguous();
  const at::Tensor offsets = check_ctc_loss_values_cpu(log_probs, tg, il, tl, blank);

  const auto acc_dtype = at::toOpMathType(log_probs.scalar_type());
  const bool compute_grad = grad_weights.has_value();
  at::Tensor weights;
  if (compute_grad) {
    check_grad_weights(*grad_weights, log_probs);
    weights = grad_weights->contiguous();
  }
  at::Tensor loss = at::empty({log_probs.size(1)}, log_probs.options().dtype(acc_dtype));
  at::Tensor grad = compute_grad ? at::empty_like(log_probs) : at::empty({0}, log_probs.options());

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, log_probs.scalar_type(), "ctcx_ctc_loss_cpu", [&] {
        if (tg.scalar_type() == at::kInt) {
          ctc_loss_cpu_impl<scalar_t, int32_t>(log_probs, tg, il.const_data_ptr<int64_t>(),
                                               tl.const_data_ptr<int64_t>(),
                                               offsets.const_data_ptr<int64_t>(), blank,
                                               zero_infinity, &weights, loss, compute_grad ? &grad : nullptr);
        } else {
          ctc_loss_cpu_impl<scalar_t, int64_t>(log_probs, tg, il.const_data_ptr<int64_t>(),
                                               tl.const_data_ptr<int64_t>(),
                                               offsets.const_data_ptr<int64_t>(), blank,
                                               zero_infinity, &weights, loss, compute_grad ? &grad : nullptr);
        }
      });
  return {loss, grad};
}

}  // namespace
}  // namespace ctcx

TORCH_LIBRARY_IMPL(ctcx, CPU, m) {
  m.impl("ctc_loss", &ctcx::ctc_loss_cpu);
}
