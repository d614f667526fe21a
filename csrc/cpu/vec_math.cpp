#include "vec_math.h"

#include "ctcx/log_math.h"
#include "multiversion.h"

namespace ctcx {
namespace {

// Lanes of the fixed-width loops below: one AVX-512 register of floats. A row
// is read in full chunks of kWidth and one remainder chunk padded with -inf,
// so every loop has a constant trip count and no scalar tail.
constexpr int64_t kWidth = 16;

inline void load_padded(const float* x, int64_t count, float* chunk) {
#pragma omp simd
  for (int64_t v = 0; v < kWidth; ++v) chunk[v] = v < count ? x[v] : neg_inf<float>();
}


// Sum (or max) of the kWidth lanes by halving: a few vector steps, not kWidth dependent scalar adds.
inline float lanes_sum(float* a) {
  for (int64_t w = kWidth / 2; w > 0; w /= 2) {
#pragma omp simd
    for (int64_t v = 0; v < w; ++v) a[v] += a[v + w];
  }
  return a[0];
}

inline float lanes_max(float* a) {
  for (int64_t w = kWidth / 2; w > 0; w /= 2) {
#pragma omp simd
    for (int64_t v = 0; v < w; ++v) a[v] = a[v + w] > a[v] ? a[v + w] : a[v];
  }
  return a[0];
}

}  // namespace

CTCX_MULTIVERSION
void rows_log_sum_exp(const float* x, int64_t rows, int64_t stride, int64_t n, float* out) {
  const int64_t full = n - n % kWidth;
  constexpr int64_t kBlock = 64;  // rows whose logs are taken together, vectorized
  float shift[kBlock], total[kBlock];
  for (int64_t r0 = 0; r0 < rows; r0 += kBlock) {
    const int64_t nr = rows - r0 < kBlock ? rows - r0 : kBlock;
    for (int64_t i = 0; i < nr; ++i) {
      const float* row = x + (r0 + i) * stride;
      float tail[kWidth], m[kWidth], sum[kWidth];
      load_padded(row + full, n - full, tail);
#pragma omp simd
      for (int64_t v = 0; v < kWidth; ++v) m[v] = tail[v];
      for (int64_t c = 0; c < full; c += kWidth) {
#pragma omp simd
        for (int64_t v = 0; v < kWidth; ++v) m[v] = row[c + v] > m[v] ? row[c + v] : m[v];
      }
      const float mx = lanes_max(m);
      // all -inf (or +inf present): no finite shift; the sum below yields -inf or NaN as due
      const float sh = (mx == neg_inf<float>() || mx == -neg_inf<float>()) ? 0.0f : mx;
#pragma omp simd
      for (int64_t v = 0; v < kWidth; ++v) sum[v] = fast_exp(tail[v] - sh);
      for (int64_t c = 0; c < full; c += kWidth) {
#pragma omp simd
        for (int64_t v = 0; v < kWidth; ++v) sum[v] += fast_exp(row[c + v] - sh);
      }
      shift[i] = sh;
      total[i] = lanes_sum(sum);
    }
#pragma omp simd
    for (int64_t i = 0; i < nr; ++i) out[r0 + i] = shift[i] + fast_log(total[i]);
  }
}

CTCX_MULTIVERSION
void rows_scaled_exp(const float* x, int64_t rows, int64_t stride, int64_t n, const float* shift,
                     float scale, float* out, int64_t out_stride) {
  const int64_t full = n - n % kWidth;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * stride;
    float* o = out + r * out_stride;
    const float s = shift[r];
    for (int64_t c = 0; c < full; c += kWidth) {
#pragma omp simd
      for (int64_t v = 0; v < kWidth; ++v) o[c + v] = scale * fast_exp(row[c + v] - s);
    }
    float tail[kWidth];
    load_padded(row + full, n - full, tail);
#pragma omp simd
    for (int64_t v = 0; v < kWidth; ++v) tail[v] = scale * fast_exp(tail[v] - s);
    for (int64_t v = 0; v < n - full; ++v) o[full + v] = tail[v];
  }
}

}  // namespace ctcx
