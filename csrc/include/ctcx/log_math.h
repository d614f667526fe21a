// Log-space arithmetic shared by the CPU and CUDA kernels.
#pragma once

#include <cmath>
#include <limits>

#if defined(__CUDACC__)
#define CTCX_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define CTCX_HOST_DEVICE inline
#endif

namespace ctcx {

template <typename T>
CTCX_HOST_DEVICE T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}

// log(exp(a) + exp(b)), exactly -inf when both are -inf (no NaN from inf - inf).
template <typename T>
CTCX_HOST_DEVICE T log_add_exp(T a, T b) {
  using std::exp;
  using std::log;
  const T m = a > b ? a : b;
  const T shift = m == neg_inf<T>() ? T(0) : m;
  return shift + log(exp(a - shift) + exp(b - shift));
}

// log(exp(a) + exp(b) + exp(c)), exactly -inf when all are -inf.
template <typename T>
CTCX_HOST_DEVICE T log_add_exp(T a, T b, T c) {
  using std::exp;
  using std::log;
  T m = a > b ? a : b;
  m = m > c ? m : c;
  const T shift = m == neg_inf<T>() ? T(0) : m;
  return shift + log(exp(a - shift) + exp(b - shift) + exp(c - shift));
}

}  // namespace ctcx
