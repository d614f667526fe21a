// The scaled CTC recursions of kLanes samples at once, one sample per vector
// lane: at small sizes (the captcha trainer's T = 32..40 frames, L = 4..6
// labels) a sample's state loops are shorter than one vector, so running
// samples of equal (T_n, L) side by side fills the vectors instead.
#pragma once

#include <cstdint>

namespace ctcx {

constexpr int64_t kLanes = 8;
constexpr int64_t kMaxLaneLabels = 62;

// Arrays are lane-innermost: element (i, v) of a lane array is at [i * kLanes + v].
struct LaneProblem {
  int64_t T;            // frames of every lane, >= 1
  int64_t L;            // labels of every lane, <= kMaxLaneLabels
  double* emit;         // in: (T, L + 1) log emissions, [t][0] blank, [t][k] label k;
                        // overwritten with the scaled probabilities
  const double* skip;   // (L + 2): 1 where label k-1 -> label k may skip the blank, else 0
                        // (always 0 at k = 0, 1 and L + 1)
  double* beta;         // workspace, (T, 2 (L + 2)); unused without occupancy
  double* alpha;        // workspace, (2, 2 (L + 2))
  double* beta_log;     // workspace, (2, T): exponent and mantissa of the product of
                        // rescaling sums each stored beta row carries; unused without occupancy
  double* occupancy;    // out: (T, L + 1) posterior occupancy of the blank ([t][0]) and of
                        // each label position ([t][k]); nullptr: loss only
  double* nll;          // out: (1,) per lane, -log p(l | x)
  bool* ok;             // out: (1,) per lane; false where the lane needs the exact
                        // log-space recursion or a recheck (underflow that loses or may
                        // lose mass, infinite or NaN inputs)
};

void ctc_lanes_scaled(const LaneProblem& p);

}  // namespace ctcx
