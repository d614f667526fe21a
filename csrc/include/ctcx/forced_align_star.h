// The wildcard ("star") of forced alignment, shared by the CPU op and the CUDA
// kernel so that both score it the same, bit for bit (ctcx/align.py documents
// it). At each frame ctcx/align.py hands over the K <= 4 most probable classes
// (values plus star_penalty, in the op math type, and their class ids; the
// order among equal values does not matter). In the gap between two labels of
// the target, the wildcard scores the best of them that is neither the blank
// nor a label on either side of the gap: with at most three classes excluded,
// four candidates always hold the best class that is not.
#pragma once

#include <cstdint>

#include "ctcx/log_math.h"  // CTCX_HOST_DEVICE, neg_inf

namespace ctcx {

// values, classes: this frame's K candidates; before/after: the labels on
// either side of the gap (-1 where the gap is at an end of the target).
template <typename acc_t>
CTCX_HOST_DEVICE acc_t star_score(const acc_t* values, const int64_t* classes, int64_t K, int64_t blank,
                                  int64_t before, int64_t after) {
  for (int64_t k = 0; k < K; ++k) {
    const int64_t c = classes[k];
    if (c != blank && c != before && c != after) return values[k];
  }
  return neg_inf<acc_t>();
}

}  // namespace ctcx
