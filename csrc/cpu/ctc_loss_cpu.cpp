// Fused CTC loss and gradient on the CPU (Graves et al. 2006, section 4.1).
//
// One call computes, per sample n (parallel over the batch), the loss
// -log p(l | x) and, when asked, d loss / d log_probs in the same pass:
//   1. gather the probabilities of the blank and of the target's labels into a
//      compact (T_n, L + 1) buffer, so the recursions never touch the full
//      C-wide rows;
//   2. run the backward (beta) recursion over the extended label sequence
//      l' = (blank, l_1, blank, ..., l_L, blank), storing beta;
//   3. run the forward (alpha) recursion, and at each frame t turn
//      alpha_t * beta_t into the posterior occupancy gamma_t(c) and write the
//      gradient row (t, n, :) = -gamma_t once (for logits, softmax - gamma_t).
//      Buffers under a few MB are not zero-filled beforehand: each row is
//      cleared as it is written, rows past T_n too (see zeroed_buffer.h).
// Without a gradient only the alpha recursion runs, with two rows of state.
//
// Fast path: the recursions run on probabilities in double precision,
// rescaled at every frame (Rabiner's scaling, as in Graves' original CTC
// code): a few multiply-adds per state instead of three exp and one log. The
// emissions of each frame are divided by their maximum, so nothing underflows
// unless paths disagree by more than ~700 nats. If a frame's mass does
// underflow to zero (or a loss is infinite or NaN), the sample is recomputed
// by the log-space recursion, which is exact in every case.
//
// The extended sequence is stored split in two contiguous arrays, blank states
// (index j = 0..L for state 2j) and label states (index k = 1..L for state
// 2k-1, with index 0 a sentinel), so each recursion step is a pair of
// branch-free loops the compiler vectorizes.
//
// Short sequences (a captcha's L = 4..6 labels) make those loops shorter than
// one vector, so samples of equal (T_n, L) run kLanes at a time instead, one
// per vector lane (ctc_loss_lanes.cpp), with the same scaled recursions; a
// lane that fails is recomputed alone by the path above.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <optional>
#include <type_traits>
#include <vector>

#include "ctcx/ctc_loss_checks.h"
#include "ctc_loss_lanes.h"
#include "ctcx/log_math.h"
#include "vec_math.h"
#include "zeroed_buffer.h"

namespace ctcx {
namespace {

// One sample's view of the inputs and outputs.
template <typename scalar_t, typename target_t, typename acc_t>
struct Sample {
  int64_t Tn;                // frames
  int64_t L;                 // labels
  const target_t* label;     // (L,)
  int64_t blank;
  const scalar_t* lp;        // row t at lp + t * lp_st, C entries: log-probs or logits
  int64_t lp_st;
  int64_t C;
  const acc_t* lse;          // (T_n,) log-normalizer of each logits row; nullptr for log-probs
  scalar_t* grad;            // row t at grad + t * g_st; nullptr: no gradient
  int64_t g_st;
  acc_t weight;              // scale of this sample's gradient
  bool clear_rows;           // the gradient buffer is not zero-filled: rows are cleared here
};

template <typename acc_t>
struct Workspace {
  std::vector<double> emit;       // (T_n, L + 1) scaled probabilities: [t][0] blank, [t][k] label k
  std::vector<double> frame_max;  // (T_n,) log of each frame's emission scale
  std::vector<double> skip;       // (L + 2): 1 where label k-1 -> label k may skip the blank
  std::vector<double> beta;       // (T_n, 2W): scaled exclusive beta
  std::vector<double> beta_log;   // (T_n,): log of the factor each stored beta row carries
  std::vector<double> alpha;      // (2, 2W): current and previous scaled alpha
  std::vector<double> scratch;    // (2W)
  std::vector<acc_t> log_emit;    // log-space fallback: (T_n, L + 1)
  std::vector<acc_t> log_skip;    // (L + 2): 0 or -inf
  std::vector<acc_t> log_beta;    // (T_n, 2W)
  std::vector<acc_t> log_alpha;   // (2, 2W)
  std::vector<acc_t> log_scratch; // (2W)
  std::vector<acc_t> occupancy;   // (L + 1)
  std::vector<int64_t> first;     // (L + 1): first position k' of label l_k in the target
  std::vector<int64_t> slot;      // (C): scratch map label -> first position, -1 when unused
  std::vector<acc_t> lse;         // (T_n,): log-sum-exp of each logits row
  // Lane groups (ctc_loss_lanes.h): lane arrays, [i * kLanes + v]
  std::vector<double> lane_emit, lane_skip, lane_beta, lane_alpha, lane_occ, lane_beta_log;
  std::vector<acc_t> lane_lse;    // (kLanes, T_n): lane v's log-normalizers at [v * T_n]
};

// log sum_c exp(row[c]) for every frame of a logits sample.
template <typename scalar_t, typename acc_t>
void frame_log_normalizers(const scalar_t* x, int64_t st, int64_t Tn, int64_t C, acc_t* lse) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    rows_log_sum_exp(x, Tn, st, C, lse);
    return;
  }
  for (int64_t t = 0; t < Tn; ++t) {
    const scalar_t* row = x + t * st;
    acc_t m = neg_inf<acc_t>();
#pragma omp simd reduction(max : m)
    for (int64_t c = 0; c < C; ++c) m = std::max(m, static_cast<acc_t>(row[c]));
    const acc_t shift = m == neg_inf<acc_t>() || m == -neg_inf<acc_t>() ? acc_t(0) : m;
    acc_t sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < C; ++c) sum += exp_(static_cast<acc_t>(row[c]) - shift);
    lse[t] = shift + log_(sum);
  }
}

// Repeated labels share one gradient entry: first[k] is the first position
// holding label l_k.
template <typename target_t, typename acc_t>
void find_first_positions(const target_t* label, int64_t L, Workspace<acc_t>& ws) {
  ws.first.resize(L + 1);
  for (int64_t k = 1; k <= L; ++k) {
    const int64_t c = static_cast<int64_t>(label[k - 1]);
    if (ws.slot[c] < 0) ws.slot[c] = k;
    ws.first[k] = ws.slot[c];
  }
  for (int64_t k = 1; k <= L; ++k) ws.slot[static_cast<int64_t>(label[k - 1])] = -1;
}

// For logits: the softmax part of every gradient row of one sample,
// w * exp(x - lse); write_row then corrects the blank and label entries.
template <typename scalar_t, typename target_t, typename acc_t>
void write_softmax_rows(const Sample<scalar_t, target_t, acc_t>& s) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    rows_scaled_exp(s.lp, s.Tn, s.lp_st, s.C, s.lse, s.weight, s.grad, s.g_st);
  } else {
    for (int64_t t = 0; t < s.Tn; ++t) {
      const scalar_t* x = s.lp + t * s.lp_st;
      scalar_t* row = s.grad + t * s.g_st;
      const acc_t lse = s.lse[t];
#pragma omp simd
      for (int64_t c = 0; c < s.C; ++c) {
        row[c] = static_cast<scalar_t>(s.weight * exp_(static_cast<acc_t>(x[c]) - lse));
      }
    }
  }
}

// Writes gradient row t of one sample, scaled by s.weight. For log-probs:
// -occupancy on the blank and the labels, zero elsewhere. For logits:
// softmax - occupancy, of which write_softmax_rows has written the softmax;
// only the blank and label entries change, once per row: a row written by a
// recursion that then failed gets its softmax written anew first.
template <typename scalar_t, typename target_t, typename acc_t, typename real>
inline void write_row(const Sample<scalar_t, target_t, acc_t>& s, int64_t t, real blank_occ,
                      const real* label_occ, Workspace<acc_t>& ws) {
  const int64_t L = s.L;
  scalar_t* row = s.grad + t * s.g_st;
  const acc_t w = s.weight;
  acc_t* occ = ws.occupancy.data();
  for (int64_t k = 1; k <= L; ++k) occ[k] = 0;
  for (int64_t k = 1; k <= L; ++k) occ[ws.first[k]] += static_cast<acc_t>(label_occ[k]);
  if (s.lse) {
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      // The row holds w * softmax at full precision: subtract, no exp again.
      row[s.blank] -= w * static_cast<acc_t>(blank_occ);
      for (int64_t k = 1; k <= L; ++k) {
        if (ws.first[k] == k) row[s.label[k - 1]] -= w * occ[k];
      }
      return;
    }
    const scalar_t* x = s.lp + t * s.lp_st;
    const acc_t lse = s.lse[t];
    row[s.blank] = static_cast<scalar_t>(
        w * (exp_(static_cast<acc_t>(x[s.blank]) - lse) - static_cast<acc_t>(blank_occ)));
    for (int64_t k = 1; k <= L; ++k) {
      const int64_t c = static_cast<int64_t>(s.label[k - 1]);
      if (ws.first[k] == k) row[c] = static_cast<scalar_t>(w * (exp_(static_cast<acc_t>(x[c]) - lse) - occ[k]));
    }
    return;
  }
  if (s.clear_rows) std::fill(row, row + s.C, scalar_t(0));
  row[s.blank] = static_cast<scalar_t>(-w * static_cast<acc_t>(blank_occ));
  for (int64_t k = 1; k <= L; ++k) {
    if (ws.first[k] == k) row[s.label[k - 1]] = static_cast<scalar_t>(-w * occ[k]);
  }
}

// ---------------------------------------------------------------- fast path

// Scaled alpha_t from alpha_{t-1}; returns the sum of the new row.
// prev/cur: blank states at [0, L], label states at [W + 1, W + L], zero
// sentinels at label index 0 and L + 1. With a non-null lost, sets it when a
// state that has mass (a predecessor with mass, an emission above zero)
// comes out below kTiny: its mass is then (about to be) lost to underflow.
constexpr double kTiny = 1e-290;
inline double alpha_step(const double* __restrict prev, double* __restrict cur,
                         const double* __restrict e, const double* __restrict skip,
                         double inv_scale, int64_t L, int64_t W, bool* lost = nullptr) {
  const double* pb = prev;
  const double* pl = prev + W;
  double* cb = cur;
  double* cl = cur + W;
  const double eb = e[0] * inv_scale;
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j <= L; ++j) {
    cb[j] = (pb[j] + pl[j]) * eb;
    sum += cb[j];
  }
#pragma omp simd reduction(+ : sum)
  for (int64_t k = 1; k <= L; ++k) {
    cl[k] = (pl[k] + pb[k - 1] + pl[k - 1] * skip[k]) * (e[k] * inv_scale);
    sum += cl[k];
  }
  if (lost) {
    int any = 0;
#pragma omp simd reduction(| : any)
    for (int64_t j = 0; j <= L; ++j) any |= (pb[j] + pl[j] > 0) & (eb > 0) & (cb[j] < kTiny);
#pragma omp simd reduction(| : any)
    for (int64_t k = 1; k <= L; ++k) {
      any |= (pl[k] + pb[k - 1] + pl[k - 1] * skip[k] > 0) & (e[k] > 0) & (cl[k] < kTiny);
    }
    *lost = *lost || any;
  }
  return sum;
}

// Loss (and gradient rows) of one sample in scaled probability space.
// Returns false when the sample needs the log-space recursion instead.
//
// Scaling keeps each frame's total mass near 1, so a state whose mass falls
// more than ~700 nats below the frame's underflows to zero. That is harmless
// while those alignments stay negligible, and wrong when they later win
// (very confident frames over long inputs: fuzzing found losses 0.3-0.8%
// too large). With beta (the gradient, or check_beta), every frame's
// sum_s alpha_t(s) beta_t(s) must equal p(l | x); a frame that disagrees by
// more than 1e-6 (relative) means mass was lost, and the sample goes to the
// log-space path. Without beta, a state losing its mass to underflow sends
// the sample once more through here with beta, to tell harmless from not.
// An emission more than 700 nats below its frame's largest goes to the log
// space directly (alpha and beta would both miss it, unseen).
template <typename scalar_t, typename target_t, typename acc_t>
bool sample_scaled(const Sample<scalar_t, target_t, acc_t>& s, Workspace<acc_t>& ws,
                   acc_t* loss, bool check_beta = false) {
  const int64_t Tn = s.Tn, L = s.L, K = L + 1, W = L + 2;
  const bool with_beta = s.grad || check_beta;

  ws.emit.resize(Tn * K);
  ws.frame_max.resize(Tn);
  for (int64_t t = 0; t < Tn; ++t) {
    const scalar_t* row = s.lp + t * s.lp_st;
    double* e = ws.emit.data() + t * K;
    const double shift = s.lse ? static_cast<double>(s.lse[t]) : 0.0;
    e[0] = static_cast<double>(row[s.blank]) - shift;
    for (int64_t k = 1; k <= L; ++k) e[k] = static_cast<double>(row[s.label[k - 1]]) - shift;
    double m = e[0];
    for (int64_t k = 1; k <= L; ++k) m = e[k] > m ? e[k] : m;
    if (!(m > neg_inf<double>()) || m == -neg_inf<double>()) return false;  // -inf, +inf or NaN
    for (int64_t k = 0; k <= L; ++k) {
      if (e[k] - m < -700.0 && e[k] > neg_inf<double>()) return false;  // would underflow: log space
    }
    ws.frame_max[t] = m;
#pragma omp simd
    for (int64_t k = 0; k <= L; ++k) e[k] = fast_exp(e[k] - m);
  }
  ws.skip.assign(L + 2, 0.0);
  for (int64_t k = 2; k <= L; ++k) ws.skip[k] = s.label[k - 1] != s.label[k - 2] ? 1.0 : 0.0;
  const double* emit = ws.emit.data();
  const double* skip = ws.skip.data();

  if (with_beta) {
    // Exclusive beta, rescaled per frame (the scale cancels in the posterior);
    // beta_log[t] = log of the factor the stored beta_t carries.
    ws.beta.assign(Tn * 2 * W, 0.0);
    ws.beta_log.assign(Tn, 0.0);
    ws.scratch.assign(2 * W, 0.0);
    double* bT = ws.beta.data() + (Tn - 1) * 2 * W;
    bT[L] = 1;
    if (L > 0) bT[W + L] = 1;
    double inv_scale = 1;
    for (int64_t t = Tn - 2; t >= 0; --t) {
      ws.beta_log[t] = ws.beta_log[t + 1] - ws.frame_max[t + 1] + std::log(inv_scale);
      const double* b1 = ws.beta.data() + (t + 1) * 2 * W;
      const double* e1 = emit + (t + 1) * K;
      double* vb = ws.scratch.data();
      double* vl = vb + W;
      const double eb = e1[0] * inv_scale;
#pragma omp simd
      for (int64_t j = 0; j <= L; ++j) vb[j] = b1[j] * eb;
#pragma omp simd
      for (int64_t k = 1; k <= L; ++k) vl[k] = b1[W + k] * (e1[k] * inv_scale);
      double* bb = ws.beta.data() + t * 2 * W;
      double* bl = bb + W;
      double sum = 0;
      // blank 2j -> {2j, label j+1}; label k -> {k, blank k, label k+1 if distinct}
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j <= L; ++j) {
        bb[j] = vb[j] + vl[j + 1];
        sum += bb[j];
      }
#pragma omp simd reduction(+ : sum)
      for (int64_t k = 1; k <= L; ++k) {
        bl[k] = vl[k] + vb[k] + vl[k + 1] * skip[k + 1];
        sum += bl[k];
      }
      if (!(sum > 0) || !(sum < 1e300)) return false;
      inv_scale = 1 / sum;
    }
    if (s.grad) {
      find_first_positions(s.label, L, ws);
      ws.occupancy.resize(K);
    }
  }

  // Alpha; log_scale accumulates log of the factors divided out so far.
  ws.alpha.assign(2 * 2 * W, 0.0);
  double* a0 = ws.alpha.data();
  a0[0] = emit[0];
  if (L > 0) a0[W + 1] = emit[1];
  double sum = a0[0] + (L > 0 ? a0[W + 1] : 0.0);
  if (!(sum > 0)) return false;
  double log_scale = ws.frame_max[0] + std::log(sum);
  double inv_scale = 1 / sum;
  bool lost = false;  // without beta: did a state's mass underflow?
  double log_z_low = -neg_inf<double>(), log_z_high = neg_inf<double>();  // with beta: log p(l | x) per frame
  for (int64_t t = 0; t < Tn; ++t) {
    double* a = ws.alpha.data() + (t & 1) * 2 * W;
    if (t > 0) {
      sum = alpha_step(ws.alpha.data() + ((t - 1) & 1) * 2 * W, a, emit + t * K, skip, inv_scale,
                       L, W, with_beta ? nullptr : &lost);
      if (!(sum > 0) || !(sum < 1e300)) return false;
      log_scale += ws.frame_max[t] + std::log(sum);
      inv_scale = 1 / sum;
    }
    if (with_beta) {
      const double* b = ws.beta.data() + t * 2 * W;
      double* post = ws.scratch.data();
      double z = 0;
#pragma omp simd reduction(+ : z)
      for (int64_t j = 0; j <= L; ++j) z += a[j] * b[j];
#pragma omp simd reduction(+ : z)
      for (int64_t k = 1; k <= L; ++k) {
        post[k] = a[W + k] * b[W + k];
        z += post[k];
      }
      if (!(z > 1e-300) || !(z < 1e300)) return false;  // 1 / z must not overflow
      // a holds alpha_t / exp(log_scale - log sum), b beta_t * exp(beta_log[t])
      const double log_z = std::log(z / sum) + log_scale - ws.beta_log[t];
      log_z_low = std::min(log_z_low, log_z);
      log_z_high = std::max(log_z_high, log_z);
      if (!s.grad) continue;
      const double inv_z = 1 / z;
      double blank_occ = 0;
#pragma omp simd reduction(+ : blank_occ)
      for (int64_t j = 0; j <= L; ++j) blank_occ += a[j] * b[j];
#pragma omp simd
      for (int64_t k = 1; k <= L; ++k) post[k] *= inv_z;
      write_row(s, t, blank_occ * inv_z, post, ws);
    }
  }
  const double* a = ws.alpha.data() + ((Tn - 1) & 1) * 2 * W;
  const double final_mass = (a[L] + a[W + L]) * inv_scale;  // a[W + 0] is the zero sentinel
  if (!(final_mass > 0)) return false;
  const double log_p = log_scale + std::log(final_mass);
  if (with_beta && !(log_p - log_z_low < 1e-6 && log_z_high - log_p < 1e-6)) return false;  // mass was lost
  if (lost) return sample_scaled(s, ws, loss, true);  // was it mass that matters?
  *loss = static_cast<acc_t>(-log_p);
  return true;
}

// ---------------------------------------------------------------- log space

template <typename acc_t>
inline void log_alpha_step(const acc_t* prev, acc_t* cur, const acc_t* emit_t,
                           const acc_t* skip, int64_t L, int64_t W) {
  const acc_t* pb = prev;
  const acc_t* pl = prev + W;
  acc_t* cb = cur;
  acc_t* cl = cur + W;
#pragma omp simd
  for (int64_t j = 0; j <= L; ++j) cb[j] = log_add_exp(pb[j], pl[j]) + emit_t[0];
#pragma omp simd
  for (int64_t k = 1; k <= L; ++k) {
    cl[k] = log_add_exp(pl[k], pb[k - 1], pl[k - 1] + skip[k]) + emit_t[k];
  }
}

// Loss (and gradient rows) in log space: exact whatever the dynamic range.
// An infeasible sample comes back with loss inf and no rows written: the caller fills them.
template <typename scalar_t, typename target_t, typename acc_t>
void sample_log_space(const Sample<scalar_t, target_t, acc_t>& s, Workspace<acc_t>& ws,
                      acc_t* loss) {
  const int64_t Tn = s.Tn, L = s.L, K = L + 1, W = L + 2;
  const acc_t ninf = neg_inf<acc_t>();
  ws.log_emit.resize(Tn * K);
  for (int64_t t = 0; t < Tn; ++t) {
    const scalar_t* row = s.lp + t * s.lp_st;
    acc_t* e = ws.log_emit.data() + t * K;
    const acc_t shift = s.lse ? s.lse[t] : acc_t(0);
    e[0] = static_cast<acc_t>(row[s.blank]) - shift;
    for (int64_t k = 1; k <= L; ++k) e[k] = static_cast<acc_t>(row[s.label[k - 1]]) - shift;
  }
  ws.log_skip.assign(L + 2, ninf);
  for (int64_t k = 2; k <= L; ++k) {
    if (s.label[k - 1] != s.label[k - 2]) ws.log_skip[k] = 0;
  }
  const acc_t* emit = ws.log_emit.data();
  const acc_t* skip = ws.log_skip.data();

  ws.log_alpha.assign(2 * 2 * W, ninf);
  if (!s.grad) {
    acc_t* a0 = ws.log_alpha.data();
    a0[0] = emit[0];
    if (L > 0) a0[W + 1] = emit[1];
    for (int64_t t = 1; t < Tn; ++t) {
      log_alpha_step(ws.log_alpha.data() + ((t - 1) & 1) * 2 * W,
                     ws.log_alpha.data() + (t & 1) * 2 * W, emit + t * K, skip, L, W);
    }
    const acc_t* a = ws.log_alpha.data() + ((Tn - 1) & 1) * 2 * W;
    *loss = -log_add_exp(a[L], a[W + L]);
    return;
  }

  // Exclusive beta: beta_t(s) = log P(frames t+1..Tn-1 complete l' | state s at t).
  ws.log_beta.assign(Tn * 2 * W, ninf);
  ws.log_scratch.assign(2 * W, ninf);
  acc_t* bT = ws.log_beta.data() + (Tn - 1) * 2 * W;
  bT[L] = 0;
  if (L > 0) bT[W + L] = 0;
  for (int64_t t = Tn - 2; t >= 0; --t) {
    const acc_t* b1 = ws.log_beta.data() + (t + 1) * 2 * W;
    const acc_t* e1 = emit + (t + 1) * K;
    acc_t* vb = ws.log_scratch.data();
    acc_t* vl = vb + W;
    for (int64_t j = 0; j <= L; ++j) vb[j] = b1[j] + e1[0];
    for (int64_t k = 1; k <= L; ++k) vl[k] = b1[W + k] + e1[k];
    acc_t* bb = ws.log_beta.data() + t * 2 * W;
    acc_t* bl = bb + W;
#pragma omp simd
    for (int64_t j = 0; j <= L; ++j) bb[j] = log_add_exp(vb[j], vl[j + 1]);
#pragma omp simd
    for (int64_t k = 1; k <= L; ++k) bl[k] = log_add_exp(vl[k], vb[k], vl[k + 1] + skip[k + 1]);
  }
  const acc_t* b0 = ws.log_beta.data();
  const acc_t log_p = log_add_exp(b0[0] + emit[0], L > 0 ? b0[W + 1] + emit[1] : ninf);
  *loss = -log_p;

  if (log_p == ninf) return;  // infeasible: the caller writes the rows

  find_first_positions(s.label, L, ws);
  ws.occupancy.resize(K);
  acc_t* post = ws.log_scratch.data();
  for (int64_t t = 0; t < Tn; ++t) {
    acc_t* a = ws.log_alpha.data() + (t & 1) * 2 * W;
    if (t == 0) {
      a[0] = emit[0];
      if (L > 0) a[W + 1] = emit[1];
    } else {
      log_alpha_step(ws.log_alpha.data() + ((t - 1) & 1) * 2 * W, a, emit + t * K, skip, L, W);
    }
    const acc_t* b = ws.log_beta.data() + t * 2 * W;
    acc_t blank_occ = 0;
#pragma omp simd reduction(+ : blank_occ)
    for (int64_t j = 0; j <= L; ++j) blank_occ += exp_(a[j] + b[j] - log_p);
#pragma omp simd
    for (int64_t k = 1; k <= L; ++k) post[k] = exp_(a[W + k] + b[W + k] - log_p);
    write_row(s, t, blank_occ, post, ws);
  }
}

// Samples of equal (T_n, L) run kLanes at a time, one per vector lane, while
// their state vectors are short and their workspace small: there the
// per-sample loops are shorter than one vector.
inline bool lanes_fit(int64_t Tn, int64_t L) {
  return Tn >= 1 && L <= kMaxLaneLabels && Tn * (L + 2) <= 16384;
}

// A unit of the parallel loop: samples order[first, first + count) of one lane
// group (lanes true), or the single sample order[first].
struct WorkItem {
  int64_t first;
  int64_t count;
  bool lanes;
};

template <typename scalar_t, typename target_t>
void ctc_loss_cpu_impl(const at::Tensor& input, bool logits, const at::Tensor& targets,
                       const int64_t* input_lengths, const int64_t* target_lengths,
                       const int64_t* target_offsets, int64_t blank, bool zero_infinity,
                       const at::Tensor* grad_weights, at::Tensor& loss, at::Tensor* grad,
                       bool grad_zeroed) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t T = input.size(0);
  const int64_t N = input.size(1);
  const int64_t C = input.size(2);
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  const target_t* tg = targets.const_data_ptr<target_t>();
  acc_t* loss_out = loss.mutable_data_ptr<acc_t>();
  scalar_t* grad_out = grad ? grad->mutable_data_ptr<scalar_t>() : nullptr;
  const acc_t* weights = grad ? grad_weights->const_data_ptr<acc_t>() : nullptr;
  const acc_t inf = -neg_inf<acc_t>();
  const int64_t x_st = input.stride(0), g_st = grad ? grad->stride(0) : 0;
  const bool clear_rows = grad_out && !grad_zeroed;

  auto sample_of = [&](int64_t n, const acc_t* lse) {
    return Sample<scalar_t, target_t, acc_t>{
        input_lengths[n], target_lengths[n], tg + target_offsets[n], blank,
        x + n * input.stride(1), x_st, C, lse,
        grad_out ? grad_out + n * grad->stride(1) : nullptr, g_st,
        weights ? weights[n] : acc_t(0), clear_rows};
  };
  // Rows past the sample's frames get a zero gradient.
  auto clear_tail = [&](const Sample<scalar_t, target_t, acc_t>& s) {
    if (!clear_rows) return;
    for (int64_t t = s.Tn; t < T; ++t) std::fill(s.grad + t * g_st, s.grad + t * g_st + C, scalar_t(0));
  };

  auto one_sample = [&](int64_t n, Workspace<acc_t>& ws) {
    const int64_t Tn = input_lengths[n];
    if (logits) {
      ws.lse.resize(Tn);
      frame_log_normalizers(x + n * input.stride(1), x_st, Tn, C, ws.lse.data());
    }
    const auto s = sample_of(n, logits ? ws.lse.data() : nullptr);
    if (s.grad) {
      clear_tail(s);
      if (s.lse) write_softmax_rows(s);
    }
    acc_t nll;
    if (Tn == 0) {
      nll = s.L == 0 ? acc_t(0) : inf;  // nothing to align; no gradient rows
    } else if (!sample_scaled(s, ws, &nll)) {
      if (s.grad && s.lse) write_softmax_rows(s);
      sample_log_space(s, ws, &nll);
      if (nll == inf && s.grad) {
        // Infeasible: zero gradient under zero_infinity, else NaN as in
        // torch.nn.CTCLoss. Whole rows: the fast path may have written some.
        const scalar_t fill = zero_infinity
                                  ? scalar_t(0)
                                  : static_cast<scalar_t>(std::numeric_limits<acc_t>::quiet_NaN());
        for (int64_t t = 0; t < Tn; ++t) {
          scalar_t* row = s.grad + t * s.g_st;
          std::fill(row, row + C, fill);
        }
      }
    }
    loss_out[n] = (zero_infinity && nll == inf) ? acc_t(0) : nll;
  };

  // Lanes past count repeat the group's last sample; their results are dropped.
  auto lane_group = [&](const int64_t* idx, int64_t count, Workspace<acc_t>& ws) {
    const int64_t Tn = input_lengths[idx[0]], L = target_lengths[idx[0]];
    const int64_t K = L + 1, W = L + 2, V = kLanes;
    ws.lane_emit.resize(Tn * K * V);
    ws.lane_skip.assign(W * V, 0.0);
    if (logits) ws.lane_lse.resize(Tn * V);
    for (int64_t v = 0; v < V; ++v) {
      const int64_t n = idx[std::min(v, count - 1)];
      const scalar_t* xn = x + n * input.stride(1);
      const target_t* label = tg + target_offsets[n];
      acc_t* lse = logits ? ws.lane_lse.data() + v * Tn : nullptr;
      if (logits) frame_log_normalizers(xn, x_st, Tn, C, lse);
      double* e = ws.lane_emit.data() + v;
      for (int64_t t = 0; t < Tn; ++t) {
        const scalar_t* row = xn + t * x_st;
        const double shift = lse ? static_cast<double>(lse[t]) : 0.0;
        e[(t * K) * V] = static_cast<double>(row[blank]) - shift;
        for (int64_t k = 1; k <= L; ++k) {
          e[(t * K + k) * V] = static_cast<double>(row[label[k - 1]]) - shift;
        }
      }
      for (int64_t k = 2; k <= L; ++k) {
        ws.lane_skip[k * V + v] = label[k - 1] != label[k - 2] ? 1.0 : 0.0;
      }
    }
    double nll[kLanes];
    bool ok[kLanes];
    if (grad_out) {
      ws.lane_beta.resize(Tn * 2 * W * V);
      ws.lane_occ.resize(Tn * K * V);
    }
    ws.lane_alpha.resize(2 * 2 * W * V);
    ws.lane_beta_log.resize(2 * Tn * V);
    ctc_lanes_scaled({Tn, L, ws.lane_emit.data(), ws.lane_skip.data(),
                      grad_out ? ws.lane_beta.data() : nullptr, ws.lane_alpha.data(),
                      ws.lane_beta_log.data(),
                      grad_out ? ws.lane_occ.data() : nullptr, nll, ok});
    // Log-probs rows: cleared for the whole group at once, one fill per run
    // of consecutive samples per frame (the usual batch is one run).
    const bool group_cleared = clear_rows && !logits;
    if (group_cleared) {
      const int64_t g_n = grad->stride(1);
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t a = 0, b = 1; a < count; a = b++) {
          while (g_n == C && b < count && idx[b] == idx[b - 1] + 1) ++b;
          scalar_t* first = grad_out + t * g_st + idx[a] * g_n;
          std::fill(first, first + (b - a - 1) * g_n + C, scalar_t(0));
        }
      }
    }
    for (int64_t v = 0; v < count; ++v) {
      const int64_t n = idx[v];
      if (!ok[v]) {
        one_sample(n, ws);  // exact fallback, as sample_scaled's own
        continue;
      }
      loss_out[n] = static_cast<acc_t>(nll[v]);
      if (!grad_out) continue;
      auto s = sample_of(n, logits ? ws.lane_lse.data() + v * Tn : nullptr);
      if (group_cleared) {
        s.clear_rows = false;
      } else {
        clear_tail(s);
      }
      if (s.lse) write_softmax_rows(s);
      if constexpr (std::is_same_v<scalar_t, acc_t>) {
        // Full-precision rows: repeated labels accumulate in place (the
        // row holds zero or the softmax there), no first-position map.
        const acc_t w = s.weight;
        for (int64_t t = 0; t < Tn; ++t) {
          const double* occ = ws.lane_occ.data() + t * K * V + v;
          scalar_t* row = s.grad + t * g_st;
          row[blank] = (logits ? row[blank] : acc_t(0)) - w * static_cast<acc_t>(occ[0]);
          for (int64_t k = 1; k <= L; ++k) row[s.label[k - 1]] -= w * static_cast<acc_t>(occ[k * V]);
        }
        continue;
      }
      find_first_positions(s.label, L, ws);
      ws.occupancy.resize(K);
      double label_occ[kMaxLaneLabels + 1];
      for (int64_t t = 0; t < Tn; ++t) {
        const double* occ = ws.lane_occ.data() + t * K * V + v;
        for (int64_t k = 1; k <= L; ++k) label_occ[k] = occ[k * V];
        write_row(s, t, occ[0], label_occ, ws);
      }
    }
  };

  // Sort the samples by (T_n, L) and cut runs of equal sizes into lane groups.
  std::vector<int64_t> order(N);
  std::iota(order.begin(), order.end(), int64_t(0));
  auto key = [&](int64_t n) { return std::make_pair(input_lengths[n], target_lengths[n]); };
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key(a) < key(b); });
  std::vector<WorkItem> items;
  items.reserve(N);
  for (int64_t i = 0; i < N;) {
    int64_t j = i + 1;
    while (j < N && j - i < kLanes && key(order[j]) == key(order[i])) ++j;
    if (j - i >= 2 && lanes_fit(input_lengths[order[i]], target_lengths[order[i]])) {
      items.push_back({i, j - i, true});
      i = j;
    } else {
      items.push_back({i, 1, false});
      ++i;
    }
  }

  at::parallel_for(0, static_cast<int64_t>(items.size()), 1, [&](int64_t begin, int64_t end) {
    Workspace<acc_t> ws;
    if (grad_out) ws.slot.assign(C, -1);
    for (int64_t i = begin; i < end; ++i) {
      const WorkItem& item = items[i];
      if (item.lanes) {
        lane_group(order.data() + item.first, item.count, ws);
      } else {
        one_sample(order[item.first], ws);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> ctc_loss_cpu_common(const at::Tensor& input, bool logits,
                                                      const at::Tensor& targets,
                                                      const at::Tensor& input_lengths,
                                                      const at::Tensor& target_lengths,
                                                      int64_t blank, bool zero_infinity,
                                                      const std::optional<at::Tensor>& grad_weights) {
  check_ctc_loss_layout(input, targets, input_lengths, target_lengths, blank);
  const at::Tensor il = input_lengths.contiguous();
  const at::Tensor tl = target_lengths.contiguous();
  const at::Tensor tg = targets.contiguous();
  const at::Tensor offsets = check_ctc_loss_values_cpu(input, tg, il, tl, blank);

  const auto acc_dtype = at::toOpMathType(input.scalar_type());
  const bool compute_grad = grad_weights.has_value();
  at::Tensor weights;
  if (compute_grad) {
    check_grad_weights(*grad_weights, input);
    weights = grad_weights->contiguous();
  }
  at::Tensor loss = at::empty({input.size(1)}, input.options().dtype(acc_dtype));
  bool grad_zeroed = false;
  at::Tensor grad = compute_grad ? gradient_buffer_like(input, &grad_zeroed)
                                 : at::empty({0}, input.options());

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "ctcx_ctc_loss_cpu", [&] {
        auto run = [&](auto target_zero) {
          using target_t = decltype(target_zero);
          ctc_loss_cpu_impl<scalar_t, target_t>(
              input, logits, tg, il.const_data_ptr<int64_t>(), tl.const_data_ptr<int64_t>(),
              offsets.const_data_ptr<int64_t>(), blank, zero_infinity, &weights, loss,
              compute_grad ? &grad : nullptr, grad_zeroed);
        };
        if (tg.scalar_type() == at::kInt) {
          run(int32_t(0));
        } else {
          run(int64_t(0));
        }
      });
  return {loss, grad};
}

std::tuple<at::Tensor, at::Tensor> ctc_loss_cpu(const at::Tensor& log_probs, const at::Tensor& targets,
                                               const at::Tensor& input_lengths,
                                               const at::Tensor& target_lengths, int64_t blank,
                                               bool zero_infinity,
                                               const std::optional<at::Tensor>& grad_weights) {
  return ctc_loss_cpu_common(log_probs, false, targets, input_lengths, target_lengths, blank,
                             zero_infinity, grad_weights);
}

std::tuple<at::Tensor, at::Tensor> ctc_loss_with_logits_cpu(
    const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& input_lengths,
    const at::Tensor& target_lengths, int64_t blank, bool zero_infinity,
    const std::optional<at::Tensor>& grad_weights) {
  return ctc_loss_cpu_common(logits, true, targets, input_lengths, target_lengths, blank,
                             zero_infinity, grad_weights);
}

}  // namespace
}  // namespace ctcx

TORCH_LIBRARY_IMPL(ctcx, CPU, m) {
  m.impl("ctc_loss", &ctcx::ctc_loss_cpu);
  m.impl("ctc_loss_with_logits", &ctcx::ctc_loss_with_logits_cpu);
}
