// The same recursions as sample_scaled in ctc_loss_cpu.cpp (exclusive beta,
// alpha rescaled at every frame, posterior = alpha * beta / z), with every
// scalar of that code a vector of kLanes samples. Lane failures are flagged,
// never fatal: the caller recomputes those samples one by one.
#include "ctc_loss_lanes.h"

#include <cmath>
#include <cstring>

#include "ctcx/log_math.h"
#include "multiversion.h"

namespace ctcx {
namespace {

constexpr int64_t V = kLanes;

// Marks lanes whose scale left (1e-300, 1e300) and returns 1 / scale (1 for marked lanes).
inline void take_scale(const double* sum, bool* bad, double* inv) {
#pragma omp simd
  for (int64_t v = 0; v < V; ++v) {
    const bool b = !(sum[v] > 1e-300) || !(sum[v] < 1e300);
    bad[v] = bad[v] || b;
    inv[v] = b ? 1.0 : 1.0 / sum[v];
  }
}

// prod *= f, keeping prod's mantissa in [1, 2) and its binary exponent in ex.
inline void accumulate_scale(const double* f, double* prod, double* ex) {
#pragma omp simd
  for (int64_t v = 0; v < V; ++v) {
    const double x = prod[v] * f[v];
    const uint64_t bits = bit_cast<uint64_t>(x);
    const int64_t e = static_cast<int64_t>((bits >> 52) & 0x7ff) - 1023;
    prod[v] = bit_cast<double>((bits & ~(uint64_t(0x7ff) << 52)) | (uint64_t(1023) << 52));
    ex[v] += static_cast<double>(e);
  }
}

}  // namespace

CTCX_MULTIVERSION
void ctc_lanes_scaled(const LaneProblem& p) {
  const int64_t T = p.T, L = p.L, K = L + 1, W = L + 2;
  double* emit = p.emit;
  const double* skip = p.skip;
  bool bad[V] = {};
  double log_max[V] = {};  // sum over frames of each frame's log emission scale
  double prod[V], ex[V] = {}, inv[V], sum[V];
  for (int64_t v = 0; v < V; ++v) prod[v] = 1;

  for (int64_t t = 0; t < T; ++t) {
    double* e = emit + t * K * V;
    double m[V];
    for (int64_t v = 0; v < V; ++v) m[v] = e[v];
    for (int64_t k = 1; k <= L; ++k) {
#pragma omp simd
      for (int64_t v = 0; v < V; ++v) m[v] = e[k * V + v] > m[v] ? e[k * V + v] : m[v];
    }
#pragma omp simd
    for (int64_t v = 0; v < V; ++v) {
      const bool finite = m[v] > neg_inf<double>() && m[v] < -neg_inf<double>();  // false for NaN
      bad[v] = bad[v] || !finite;
      m[v] = finite ? m[v] : 0.0;
      log_max[v] += m[v];
      p.frame_max[t * V + v] = m[v];
    }
    for (int64_t k = 0; k <= L; ++k) {
#pragma omp simd
      for (int64_t v = 0; v < V; ++v) {
        const double x = e[k * V + v] - m[v];
        // an emission more than 700 nats below the frame's largest would underflow unseen
        bad[v] = bad[v] || (x < -700.0 && e[k * V + v] > neg_inf<double>());
        e[k * V + v] = x == x ? fast_exp(x) : 0.0;  // NaN lanes are marked bad above
      }
    }
  }

  if (p.occupancy) {
    std::memset(p.beta, 0, sizeof(double) * T * 2 * W * V);
    double* bT = p.beta + (T - 1) * 2 * W * V;
    for (int64_t v = 0; v < V; ++v) {
      bT[L * V + v] = 1;
      if (L > 0) bT[(W + L) * V + v] = 1;
      inv[v] = 1;
      p.beta_log[(T - 1) * V + v] = 0;
    }
    double vb[V * (kMaxLaneLabels + 2)], vl[V * (kMaxLaneLabels + 2)];
    for (int64_t t = T - 2; t >= 0; --t) {
      for (int64_t v = 0; v < V; ++v) {
        p.beta_log[t * V + v] = p.beta_log[(t + 1) * V + v] - p.frame_max[(t + 1) * V + v] + std::log(inv[v]);
      }
      const double* b1 = p.beta + (t + 1) * 2 * W * V;
      const double* e1 = emit + (t + 1) * K * V;
      double* bb = p.beta + t * 2 * W * V;
      double* bl = bb + W * V;
      for (int64_t j = 0; j <= L; ++j) {
#pragma omp simd
        for (int64_t v = 0; v < V; ++v) vb[j * V + v] = b1[j * V + v] * (e1[v] * inv[v]);
      }
      for (int64_t v = 0; v < V; ++v) vl[v] = 0, vl[(L + 1) * V + v] = 0;
      for (int64_t k = 1; k <= L; ++k) {
#pragma omp simd
        for (int64_t v = 0; v < V; ++v) vl[k * V + v] = b1[(W + k) * V + v] * (e1[k * V + v] * inv[v]);
      }
      for (int64_t v = 0; v < V; ++v) sum[v] = 0;
      for (int64_t j = 0; j <= L; ++j) {
#pragma omp simd
        for (int64_t v = 0; v < V; ++v) {
          bb[j * V + v] = vb[j * V + v] + vl[(j + 1) * V + v];
          sum[v] += bb[j * V + v];
        }
      }
      for (int64_t k = 1; k <= L; ++k) {
#pragma omp simd
        for (int64_t v = 0; v < V; ++v) {
          bl[k * V + v] = vl[k * V + v] + vb[k * V + v] + vl[(k + 1) * V + v] * skip[(k + 1) * V + v];
          sum[v] += bl[k * V + v];
        }
      }
      take_scale(sum, bad, inv);
    }
  }

  // Alpha, two rows; blank states at [0, L], label states at [W + 1, W + L],
  // zero sentinels at label index 0 and L + 1.
  std::memset(p.alpha, 0, sizeof(double) * 2 * 2 * W * V);
  for (int64_t v = 0; v < V; ++v) {
    p.alpha[v] = emit[v];
    sum[v] = emit[v];
    if (L > 0) {
      p.alpha[(W + 1) * V + v] = emit[V + v];
      sum[v] += emit[V + v];
    }
  }
  accumulate_scale(sum, prod, ex);
  take_scale(sum, bad, inv);
  // With occupancy: each frame's sum_s alpha_t(s) beta_t(s) must be p(l | x);
  // without: a state's mass must not underflow (sample_scaled's checks).
  double cum_max[V], log_z_low[V], log_z_high[V];
  int lost[V] = {};
  for (int64_t v = 0; v < V; ++v) {
    cum_max[v] = p.frame_max[v];
    log_z_low[v] = -neg_inf<double>();
    log_z_high[v] = neg_inf<double>();
  }
  for (int64_t t = 0; t < T; ++t) {
    double* a = p.alpha + (t & 1) * 2 * W * V;
    if (t > 0) {
      for (int64_t v = 0; v < V; ++v) cum_max[v] += p.frame_max[t * V + v];
      const double* pb = p.alpha + ((t - 1) & 1) * 2 * W * V;
      const double* pl = pb + W * V;
      const double* e = emit + t * K * V;
      double* cl = a + W * V;
      for (int64_t v = 0; v < V; ++v) sum[v] = 0;
      for (int64_t j = 0; j <= L; ++j) {
#pragma omp simd
        for (int64_t v = 0; v < V; ++v) {
          const double pre = pb[j * V + v] + pl[j * V + v], f = e[v] * inv[v];
          a[j * V + v] = pre * f;
          sum[v] += a[j * V + v];
          lost[v] |= (pre > 0) & (f > 0) & (a[j * V + v] < 1e-290);
        }
      }
      for (int64_t k = 1; k <= L; ++k) {
#pragma omp simd
        for (int64_t v = 0; v < V; ++v) {
          const double pre = pl[k * V + v] + pb[(k - 1) * V + v] + pl[(k - 1) * V + v] * skip[k * V + v];
          const double f = e[k * V + v] * inv[v];
          cl[k * V + v] = pre * f;
          sum[v] += cl[k * V + v];
          lost[v] |= (pre > 0) & (f > 0) & (cl[k * V + v] < 1e-290);
        }
      }
      accumulate_scale(sum, prod, ex);
      take_scale(sum, bad, inv);
    }
    if (p.occupancy) {
      const double* b = p.beta + t * 2 * W * V;
      double* occ = p.occupancy + t * K * V;
      double z[V] = {};
      for (int64_t v = 0; v < V; ++v) occ[v] = 0;
      for (int64_t j = 0; j <= L; ++j) {
#pragma omp simd
        for (int64_t v = 0; v < V; ++v) occ[v] += a[j * V + v] * b[j * V + v];
      }
      for (int64_t v = 0; v < V; ++v) z[v] = occ[v];
      for (int64_t k = 1; k <= L; ++k) {
#pragma omp simd
        for (int64_t v = 0; v < V; ++v) {
          occ[k * V + v] = a[(W + k) * V + v] * b[(W + k) * V + v];
          z[v] += occ[k * V + v];
        }
      }
      for (int64_t v = 0; v < V; ++v) {
        // a holds alpha_t / (cum_max and the earlier frames' sums), b beta_t * exp(beta_log[t])
        const double log_z = std::log(z[v]) + cum_max[v] + ex[v] * 0.69314718055994530942 + std::log(prod[v]) -
                             std::log(sum[v]) - p.beta_log[t * V + v];
        log_z_low[v] = std::min(log_z_low[v], log_z);
        log_z_high[v] = std::max(log_z_high[v], log_z);
      }
      double inv_z[V];
      take_scale(z, bad, inv_z);
      for (int64_t k = 0; k <= L; ++k) {
#pragma omp simd
        for (int64_t v = 0; v < V; ++v) occ[k * V + v] *= inv_z[v];
      }
    }
  }
  const double* a = p.alpha + ((T - 1) & 1) * 2 * W * V;
  for (int64_t v = 0; v < V; ++v) {
    // inv undoes the last frame's scale: a holds alpha_{T-1} / (its sum * earlier scales).
    const double final_mass = (a[L * V + v] + a[(W + L) * V + v]) * inv[v];
    bad[v] = bad[v] || !(final_mass > 0);
    p.nll[v] = -(log_max[v] + ex[v] * 0.69314718055994530942 + std::log(prod[v]) +
                 std::log(final_mass));
    if (p.occupancy) {  // mass lost somewhere: the frames disagree on p(l | x)
      bad[v] = bad[v] || !(-p.nll[v] - log_z_low[v] < 1e-6 && log_z_high[v] + p.nll[v] < 1e-6);
    } else {
      bad[v] = bad[v] || lost[v];
    }
    p.ok[v] = !bad[v];
  }
}

}  // namespace ctcx
