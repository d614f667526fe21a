#include "vec_math.h"

#include "ctcx/log_math.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CTCX_MULTIVERSION __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#define CTCX_MULTIVERSION
#endif

namespace ctcx {

CTCX_MULTIVERSION
float row_log_sum_exp(const float* x, int64_t n) {
  float m = neg_inf<float>();
#pragma omp simd reduction(max : m)
  for (int64_t c = 0; c < n; ++c) m = x[c] > m ? x[c] : m;
  // all -inf (or +inf present): no finite shift; the sum below yields -inf or NaN as due
  const float shift = (m == neg_inf<float>() || m == -neg_inf<float>()) ? 0.0f : m;
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 0; c < n; ++c) sum += fast_exp(x[c] - shift);
  return shift + fast_log(sum);
}

CTCX_MULTIVERSION
void row_scaled_exp(const float* x, int64_t n, float shift, float scale, float* out) {
#pragma omp simd
  for (int64_t c = 0; c < n; ++c) out[c] = scale * fast_exp(x[c] - shift);
}

}  // namespace ctcx
