// Row-wide float loops of the CPU kernels, compiled for several instruction
// sets (AVX-512, AVX2+FMA, baseline x86-64) and picked at load time by the
// dynamic loader (GCC function multi-versioning), so one wheel runs anywhere
// and uses the widest vectors the CPU has.
#pragma once

#include <cstdint>

namespace ctcx {

// log(sum_c exp(x[c])) over a contiguous row of n floats (max-shifted).
float row_log_sum_exp(const float* x, int64_t n);

// out[c] = scale * exp(x[c] - shift) for a contiguous row of n floats.
void row_scaled_exp(const float* x, int64_t n, float shift, float scale, float* out);

}  // namespace ctcx
