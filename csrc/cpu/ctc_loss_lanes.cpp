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
    }
    int low[V] = {};  // an emission more than 700 nats below the frame's largest would underflow unseen
    for (int64_t k = 0; k <= L; ++k) {
#pragma omp simd
      for (int64_t v = 0; v < V; ++v) {
        const double x = e[k * V + v] - m[v];
        low[v] |= (x < -700.0) & (e[k * V + v] > neg_inf<double>());
        e[k * V + v] = x == x ? fast_exp(x) : 0.0;  // NaN lanes are marked bad above
      }
    }
    for (int64_t v = 0; v < V; ++v) bad[v] = bad[v] || low[v];
  }

  if (p.occupancy) {
    std::memset(p.beta, 0, sizeof(double) * T * 2 * W * V);
    double* bT = p.beta + (T - 1) * 2 * W * V;
    for (int64_t v = 0; v < V; ++v) {
      bT[L * V + v] = 1;
      if (L > 0) bT[(W + L) * V + v] = 1;
      inv[v] = 1;
    }
    // The rescaling stored beta_t carries beyond the frame maxima: 1 / the
    // product of the sums applied, kept per frame as mantissa (in [1, 2)) and
    // binary exponent, for the check in the alpha pass: no log per frame.
    double* beta_ex = p.beta_log;
    double* beta_mant = p.beta_log + T * V;
    double bprod[V], bex[V] = {};
    for (int64_t v = 0; v < V; ++v) {
      bprod[v] = 1;
      beta_ex[(T - 1) * V + v] = 0;
      beta_mant[(T - 1) * V + v] = 1;
    }
    double vb[V * (kMaxLaneLabels + 2)], vl[V * (kMaxLaneLabels + 2)];
    for (int64_t t = T - 2; t >= 0; --t) {
      for (int64_t v = 0; v < V; ++v) {
        beta_ex[t * V + v] = bex[v];
        beta_mant[t * V + v] = bprod[v];
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
      if (t > 0) accumulate_scale(sum, bprod, bex);  // row t - 1 is scaled by 1 / sum
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
  // p(l | x) seen from frame t is exp(sum of all frame maxima) times
  // z_t * prod / sum * beta_mant[t] * 2^(ex + beta_ex[t]); the first factor is
  // the same for every frame, the rest is compared with frame 0's as a
  // mantissa and a binary exponent.
  double ref_m[V] = {}, ref_e[V] = {};
  int lost[V] = {};
  for (int64_t t = 0; t < T; ++t) {
    double* a = p.alpha + (t & 1) * 2 * W * V;
    if (t > 0) {
      const double* pb = p.alpha + ((t - 1) & 1) * 2 * W * V;
      const double* pl = pb + W * V;
      const double* e = emit + t * K * V;
      double* cl = a + W * V;
      for (int64_t v = 0; v < V; ++v) sum[v] = 0;
      for (int64_t j = 0; j <= L; ++j) {
#pragma omp simd
        for (int64_t v = 0; v < V; ++v) {
          a[j * V + v] = (pb[j * V + v] + pl[j * V + v]) * (e[v] * inv[v]);
          sum[v] += a[j * V + v];
        }
      }
      for (int64_t k = 1; k <= L; ++k) {
#pragma omp simd
        for (int64_t v = 0; v < V; ++v) {
          cl[k * V + v] = (pl[k * V + v] + pb[(k - 1) * V + v] + pl[(k - 1) * V + v] * skip[k * V + v]) *
                          (e[k * V + v] * inv[v]);
          sum[v] += cl[k * V + v];
        }
      }
      if (!p.occupancy) {  // a state with mass (predecessors and emission above 0) that underflows
        for (int64_t j = 0; j <= L; ++j) {
#pragma omp simd
          for (int64_t v = 0; v < V; ++v) {
            lost[v] |= (pb[j * V + v] + pl[j * V + v] > 0) & (e[v] > 0) & (a[j * V + v] < 1e-290);
          }
        }
        for (int64_t k = 1; k <= L; ++k) {
#pragma omp simd
          for (int64_t v = 0; v < V; ++v) {
            lost[v] |= (pl[k * V + v] + pb[(k - 1) * V + v] + pl[(k - 1) * V + v] * skip[k * V + v] > 0) &
                       (e[k * V + v] > 0) & (cl[k * V + v] < 1e-290);
          }
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
        const double q = z[v] * prod[v] * p.beta_log[(T + t) * V + v] / sum[v];
        const uint64_t bits = bit_cast<uint64_t>(q);
        const double e = static_cast<double>(static_cast<int64_t>((bits >> 52) & 0x7ff) - 1023) + ex[v] +
                         p.beta_log[t * V + v];
        const double m = bit_cast<double>((bits & ~(uint64_t(0x7ff) << 52)) | (uint64_t(1023) << 52));
        if (t == 0) {
          ref_m[v] = m;
          ref_e[v] = e;
        }
        const double d = e - ref_e[v];
        const double r = m * (d == 0 ? 1.0 : d == 1 ? 2.0 : d == -1 ? 0.5 : 0.0) / ref_m[v];
        const bool normal = q >= 2.2250738585072014e-308 && q <= 1.7976931348623157e308;
        bad[v] = bad[v] || !normal || !(r > 1 - 1e-6 && r < 1 + 1e-6);
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
    if (!p.occupancy) bad[v] = bad[v] || lost[v];  // (with occupancy: the frames' check above)
    p.ok[v] = !bad[v];
  }
}

}  // namespace ctcx
