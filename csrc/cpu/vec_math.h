// Row-wide float loops of the CPU kernels, compiled for several instruction
// sets (AVX-512, AVX2+FMA, baseline x86-64) and picked at load time by the
// dynamic loader (GCC function multi-versioning), so one wheel runs anywhere
// and uses the widest vectors the CPU has. Each call covers many rows: rows
// as short as a captcha's 37 classes would otherwise spend more on the call,
// the horizontal reductions and a scalar remainder loop than on the row.
#pragma once

#include <cstdint>

namespace ctcx {

// out[r] = log(sum_c exp(x[r * stride + c])) for rows r < rows of n contiguous floats (max-shifted).
void rows_log_sum_exp(const float* x, int64_t rows, int64_t stride, int64_t n, float* out);

// out[r * out_stride + c] = scale * exp(x[r * stride + c] - shift[r]) for rows r < rows.
void rows_scaled_exp(const float* x, int64_t rows, int64_t stride, int64_t n, const float* shift,
                     float scale, float* out, int64_t out_stride);

}  // namespace ctcx
