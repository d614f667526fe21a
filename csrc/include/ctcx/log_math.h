// Log-space arithmetic shared by the CPU and CUDA kernels.
//
// On the CPU, exp (float and double) and log (float) are branch-free
// versions of Cephes' approximations (~1-2 ulp) that the compiler vectorizes
// inside the recursion loops; std::exp/std::log are scalar library calls and
// would dominate the kernel. double log stays std::log. CUDA code uses the
// device math library.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__CUDACC__)
#define CTCX_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define CTCX_HOST_DEVICE inline __attribute__((always_inline))
#endif

namespace ctcx {

template <typename T>
CTCX_HOST_DEVICE T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}

#if !defined(__CUDACC__)
// Reinterprets the bits of a value of the same size (std::bit_cast before C++20).
template <typename To, typename From>
CTCX_HOST_DEVICE To bit_cast(From v) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs equal sizes");
  To r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}

// exp(x) for float; exactly 0 for x < -87 (so exp(-inf) = 0), finite for x <= 88.
CTCX_HOST_DEVICE float fast_exp(float x) {
  const float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // n = round(x / ln 2) by the 1.5 * 2^23 trick (no rounding instruction needed)
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float scale = bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  return x < -87.0f ? 0.0f : p * scale;
}

// log(x) for float x >= 0 (normal or zero, never +inf here); log(0) = -inf, log(NaN) = NaN.
CTCX_HOST_DEVICE float fast_log(float x) {
  const int32_t bits = bit_cast<int32_t>(x);
  // x = m * 2^e with m in [0.5, 1)
  int32_t e = ((bits >> 23) & 0xff) - 126;
  float m = bit_cast<float>((bits & 0x007fffff) | 0x3f000000);
  const bool low = m < 0.707106781186547524f;
  e = low ? e - 1 : e;
  const float f = low ? m + m - 1.0f : m - 1.0f;
  const float z = f * f;
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  const float fe = static_cast<float>(e);
  y += -2.12194440e-4f * fe;
  y += -0.5f * z;
  const float result = f + y + 0.693359375f * fe;
  // x != x: NaN passes through (a NaN input must not become a finite loss)
  return x == 0.0f ? neg_inf<float>() : (x != x ? x : result);
}

// exp(x) for double (Cephes' Pade form, ~1 ulp); exactly 0 for x < -708, finite for x <= 709.
CTCX_HOST_DEVICE double fast_exp(double x) {
  const double xc = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
  // y's low mantissa bits hold n = round(x / ln 2) (1.5 * 2^52 trick), read back as an integer
  const double shifter = 6755399441055744.0;
  const double y = xc * 1.4426950408889634073599 + shifter;
  const double n = y - shifter;
  const int64_t ni = bit_cast<int64_t>(y) - bit_cast<int64_t>(shifter);
  double r = xc - n * 6.93145751953125e-1;
  r = r - n * 1.42860682030941723212e-6;
  const double rr = r * r;
  double px = 1.26177193074810590878e-4;
  px = px * rr + 3.02994407707441961300e-2;
  px = px * rr + 9.99999999999999999910e-1;
  px = px * r;
  double qx = 3.00198505138664455042e-6;
  qx = qx * rr + 2.52448340349684104192e-3;
  qx = qx * rr + 2.27265548208155028766e-1;
  qx = qx * rr + 2.00000000000000000009e0;
  const double e = 1.0 + 2.0 * (px / (qx - px));
  const double scale = bit_cast<double>((ni + 1023) << 52);
  return x < -708.0 ? 0.0 : e * scale;
}

CTCX_HOST_DEVICE float exp_(float x) { return fast_exp(x); }
CTCX_HOST_DEVICE float log_(float x) { return fast_log(x); }
CTCX_HOST_DEVICE double exp_(double x) { return fast_exp(x); }
CTCX_HOST_DEVICE double log_(double x) { return std::log(x); }
#else
CTCX_HOST_DEVICE float exp_(float x) { return expf(x); }
CTCX_HOST_DEVICE float log_(float x) { return logf(x); }
CTCX_HOST_DEVICE double exp_(double x) { return exp(x); }
CTCX_HOST_DEVICE double log_(double x) { return log(x); }
#endif

// log(exp(a) + exp(b)), exactly -inf when both are -inf (no NaN from inf - inf).
// One exp: the larger side's term is exp(0) = 1, so shift + log(1 + exp(d))
// with d = (a - shift) + (b - shift) (exactly the smaller side's difference,
// NaN for a NaN or +inf side) is the two-exp form's value bit for bit.
template <typename T>
CTCX_HOST_DEVICE T log_add_exp(T a, T b) {
  const T m = a > b ? a : b;
  const T shift = m == neg_inf<T>() ? T(0) : m;
  const T r = shift + log_(T(1) + exp_((a - shift) + (b - shift)));
  return (a == neg_inf<T>()) & (b == neg_inf<T>()) ? neg_inf<T>() : r;
}

// log(exp(a) + exp(b) + exp(c)), exactly -inf when all are -inf.
template <typename T>
CTCX_HOST_DEVICE T log_add_exp(T a, T b, T c) {
  T m = a > b ? a : b;
  m = m > c ? m : c;
  const T shift = m == neg_inf<T>() ? T(0) : m;
  return shift + log_(exp_(a - shift) + exp_(b - shift) + exp_(c - shift));
}

}  // namespace ctcx
