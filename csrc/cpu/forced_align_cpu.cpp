// CTC forced alignment on the CPU: the Viterbi recursion (Graves et al.
// 2006's forward recursion with max for sum) over each sample's extended
// label sequence, one sample per task (at::parallel_for over the batch),
// backpointers of 1.5 bits per state, then the path traced back from the
// last frame. Where the CPU has AVX-512, float32 accumulation runs 16 states
// a step with intrinsics (the comparisons' masks are the backpointers);
// elsewhere, and for float64, portable loops make the same decisions.
//
// With a wildcard ("star", ctcx/align.py), a blank state's value at a frame
// is the larger of the blank's log-probability and the wildcard's score in
// that gap (the blank's on a tie), and a frame spent on the wildcard is
// labelled C. The wildcard scores the best class that is neither the blank
// nor a label beside the gap, plus the penalty: here from the frame's three
// best non-blank classes (found by one scan of the row; NaN ranks first, as
// in torch.topk), on CUDA from torch.topk's four best classes through
// ctcx/forced_align_star.h; the value is the same either way.
//
// Ties (ctcx/align.py documents them): among equal predecessors the one that
// advanced least wins (stay, then one state, then two), and at the last frame
// the final blank wins over the last label. Scores accumulate in the op math
// type (float32 for half, bfloat16 and float32; float64 for float64) by one
// addition per frame, so every backend that follows this order gets the same
// path bit for bit, whatever the batch around a sample or the thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "ctcx/forced_align_checks.h"

namespace ctcx {
namespace {

// The recursion keeps the extended label sequence's two kinds of state apart:
// blank j (state 2 j, j = 0..L) and label i (state 2 i + 1, i = 0..L-1), so
// that every blank state takes the frame's one blank value and the labels'
// values are gathered straight from the row. With A the labels' and B the
// blanks' values at the previous frame:
//   blank j:  max(B[j] stay, A[j-1] one)                      + blank
//   label i:  max(A[i] stay, B[i] one, A[i-1] + skip[i] two)  + row[target[i]]
// (skip[i] is 0 where label i differs from label i - 1, -inf where not).
// Ties: stay, then a strictly better one-state move, then a strictly better
// two-state move, the CUDA kernel's order, so both give the same path bit
// for bit. A and B carry kPad cells of -inf before index 0 (A[-1]).
//
// Backpointers: per frame, for each group of 16 blanks and 16 labels, three
// 16-bit words: blank j came from label j - 1; label i came from blank i;
// label i came from label i - 1. 3 bits for each pair of states: within the
// 2 bits per state of the docstring's bound.
constexpr int64_t kLanes = 16, kPad = 16;
struct Window {  // the states computed at one frame: blanks [jlo, jhi), labels [ilo, ihi)
  int64_t jlo, jhi, ilo, ihi;
};
inline Window window_of(int64_t lo, int64_t hi) { return {(lo + 1) / 2, (hi + 1) / 2, lo / 2, hi / 2}; }
inline int64_t groups_of(int64_t L) { return (L + 1 + kLanes - 1) / kLanes; }
// Bits k of a 16-lane group starting at base with a <= base + k < b.
inline uint32_t lanes_in(int64_t base, int64_t a, int64_t b) {
  const int64_t lo = std::max<int64_t>(a - base, 0), hi = std::min<int64_t>(b - base, kLanes);
  return hi <= lo ? 0u : ((1u << hi) - 1u) & ~((1u << lo) - 1u);
}
inline int get_move(const uint16_t* row, int64_t s) {
  const int64_t k = s >> 1;
  const uint16_t* w = row + 3 * (k / kLanes);
  const int bit = static_cast<int>(k % kLanes);
  if (!(s & 1)) return (w[0] >> bit) & 1;
  return ((w[2] >> bit) & 1) ? 2 : ((w[1] >> bit) & 1);
}

// The loops' bodies are inlined into every build of the functions that use
// them (an out-of-line copy would be compiled for baseline x86-64 only).
#if defined(__GNUC__)
#define CTCX_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define CTCX_ALWAYS_INLINE inline
#endif

// Bits k of 16 bytes that are each 0 or 1 (one multiply per 8 bytes).
CTCX_ALWAYS_INLINE uint16_t pack16(const uint8_t* p) {
  uint64_t lo, hi;
  std::memcpy(&lo, p, 8);
  std::memcpy(&hi, p + 8, 8);
  constexpr uint64_t kGather = 0x0102040810204080ull;  // byte k's low bit to bit 56 + k
  return static_cast<uint16_t>(((lo * kGather) >> 56) | (((hi * kGather) >> 56) << 8));
}

// One frame, any type: prevB, prevA, nextB, nextA point at index 0 of their
// padded rows; emitA the labels' values (the gathered row), emitB the
// blanks' (null: every blank takes b). Branch-free loops the compiler can
// vectorize write each state's move as 0/1 bytes (mb: blank from the label
// before; m1, m2: label from its blank, from the label before), then each
// group's bytes become its backpointer words (bytes outside the window hold
// stale moves, whose bits the trace never reads).
template <typename acc_t>
CTCX_ALWAYS_INLINE void viterbi_frame_body(const acc_t* __restrict prevB, const acc_t* __restrict prevA,
                               acc_t* __restrict nextB, acc_t* __restrict nextA, const acc_t* __restrict skip,
                               const acc_t* __restrict emitA, const acc_t* __restrict emitB, acc_t b,
                               const Window& w, uint8_t* __restrict mb, uint8_t* __restrict m1,
                               uint8_t* __restrict m2, uint16_t* __restrict row) {
  if (emitB) {
    for (int64_t j = w.jlo; j < w.jhi; ++j) {
      const acc_t stay = prevB[j], one = prevA[j - 1];
      const bool from_one = one > stay;
      nextB[j] = (from_one ? one : stay) + emitB[j];
      mb[j] = from_one;
    }
  } else {
    for (int64_t j = w.jlo; j < w.jhi; ++j) {
      const acc_t stay = prevB[j], one = prevA[j - 1];
      const bool from_one = one > stay;
      nextB[j] = (from_one ? one : stay) + b;
      mb[j] = from_one;
    }
  }
  for (int64_t i = w.ilo; i < w.ihi; ++i) {
    const acc_t stay = prevA[i], one = prevB[i], two = prevA[i - 1] + skip[i];
    const bool from_one = one > stay;
    const acc_t best = from_one ? one : stay;
    const bool from_two = two > best;
    nextA[i] = (from_two ? two : best) + emitA[i];
    m1[i] = from_one & !from_two;
    m2[i] = from_two;
  }
  const int64_t g0 = std::min(w.jlo, w.ilo) / kLanes, g1 = (std::max(w.jhi, w.ihi) + kLanes - 1) / kLanes;
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t base = g * kLanes;
    row[3 * g] = pack16(mb + base);
    row[3 * g + 1] = pack16(m1 + base);
    row[3 * g + 2] = pack16(m2 + base);
  }
}

// Built for several x86-64 levels where the compiler can (AVX-512, AVX2,
// baseline), picked at load time: the same arithmetic in every build.
#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define CTCX_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef CTCX_CLONES
#define CTCX_CLONES
#endif

// With a wildcard, the value of blank states j in [jlo, jhi) at one frame:
// the larger of the blank's b and the wildcard's score in gap j, the first
// of the frame's three best non-blank classes (c, values v; -1 where C is
// too small) that is neither label beside the gap (before, after; -1 at
// the ends). Branch-free, so the compiler vectorizes it.
template <typename acc_t>
CTCX_ALWAYS_INLINE void star_row_body(const int32_t* __restrict before, const int32_t* __restrict after, const int32_t* c,
                          const acc_t* v, acc_t b, acc_t* __restrict out, int64_t jlo, int64_t jhi) {
  const int32_t c0 = c[0], c1 = c[1], c2 = c[2];
  const acc_t v0 = v[0], v1 = v[1], v2 = v[2], none = -std::numeric_limits<acc_t>::infinity();
  for (int64_t j = jlo; j < jhi; ++j) {
    const int32_t x = before[j], y = after[j];
    const bool ok0 = (c0 >= 0) & (c0 != x) & (c0 != y);
    const bool ok1 = (c1 >= 0) & (c1 != x) & (c1 != y);
    const bool ok2 = (c2 >= 0) & (c2 != x) & (c2 != y);
    const acc_t w = ok0 ? v0 : ok1 ? v1 : ok2 ? v2 : none;
    out[j] = w > b ? w : b;
  }
}
CTCX_CLONES void star_row(const int32_t* before, const int32_t* after, const int32_t* c, const float* v, float b,
                          float* out, int64_t jlo, int64_t jhi) {
  star_row_body(before, after, c, v, b, out, jlo, jhi);
}
CTCX_CLONES void star_row(const int32_t* before, const int32_t* after, const int32_t* c, const double* v,
                          double b, double* out, int64_t jlo, int64_t jhi) {
  star_row_body(before, after, c, v, b, out, jlo, jhi);
}

CTCX_CLONES void viterbi_frame(const float* prevB, const float* prevA, float* nextB, float* nextA,
                               const float* skip, const float* emitA, const float* emitB, float b, const Window& w,
                               uint8_t* mb, uint8_t* m1, uint8_t* m2, uint16_t* row) {
  viterbi_frame_body(prevB, prevA, nextB, nextA, skip, emitA, emitB, b, w, mb, m1, m2, row);
}
CTCX_CLONES void viterbi_frame(const double* prevB, const double* prevA, double* nextB, double* nextA,
                               const double* skip, const double* emitA, const double* emitB, double b,
                               const Window& w, uint8_t* mb, uint8_t* m1, uint8_t* m2, uint16_t* row) {
  viterbi_frame_body(prevB, prevA, nextB, nextA, skip, emitA, emitB, b, w, mb, m1, m2, row);
}

// The labels' values at one frame, for labels [ilo, ihi), through their
// 32-bit ids (float16 and bfloat16 converted as they are read).
template <typename scalar_t, typename acc_t>
CTCX_ALWAYS_INLINE void gather_labels_body(const scalar_t* __restrict row, const int32_t* __restrict ids,
                               acc_t* __restrict out, int64_t ilo, int64_t ihi) {
  for (int64_t i = ilo; i < ihi; ++i) out[i] = static_cast<acc_t>(row[ids[i]]);
}
CTCX_CLONES void gather_labels(const float* row, const int32_t* ids, float* out, int64_t ilo, int64_t ihi) {
  gather_labels_body(row, ids, out, ilo, ihi);
}
CTCX_CLONES void gather_labels(const double* row, const int32_t* ids, double* out, int64_t ilo, int64_t ihi) {
  gather_labels_body(row, ids, out, ilo, ihi);
}
template <typename scalar_t, typename acc_t>
inline void gather_labels(const scalar_t* row, const int32_t* ids, acc_t* out, int64_t ilo, int64_t ihi) {
  gather_labels_body(row, ids, out, ilo, ihi);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define CTCX_HAVE_AVX512_PATH 1
// The same frame for float with AVX-512: 16 blanks and 16 labels a step, the
// comparisons' masks are the backpointer words. Rows are padded to whole
// groups, so the loads stay inside them (lanes outside the window are
// computed from whatever is there, then neither stored nor marked). Labels'
// values come from emitA, or with gather_row straight from the frame's row
// of log-probabilities through the 32-bit label ids in idx (zero-padded).
__attribute__((target("avx512f"))) void viterbi_frame_avx512(
    const float* prevB, const float* prevA, float* nextB, float* nextA, const float* skip, const float* emitA,
    const float* gather_row, int64_t C, const int32_t* idx, const float* emitB, float b, const Window& w,
    uint16_t* row) {
  const int64_t g0 = std::min(w.jlo, w.ilo) / kLanes, g1 = (std::max(w.jhi, w.ihi) + kLanes - 1) / kLanes;
  const __m512 bv = _mm512_set1_ps(b);
  // Up to 64 classes: the row in four registers, the labels' values picked by
  // two-register permutes (cheaper than a gather).
  const bool permute = gather_row && C <= 4 * kLanes;
  __m512 r0 = _mm512_setzero_ps(), r1 = r0, r2 = r0, r3 = r0;
  if (permute) {
    r0 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(lanes_in(0, 0, C)), gather_row);
    r1 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(lanes_in(kLanes, 0, C)), gather_row + kLanes);
    r2 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(lanes_in(2 * kLanes, 0, C)), gather_row + 2 * kLanes);
    r3 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(lanes_in(3 * kLanes, 0, C)), gather_row + 3 * kLanes);
  }
  const __m512i high_half = _mm512_set1_epi32(2 * kLanes);
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t base = g * kLanes;
    const __mmask16 in_b = static_cast<__mmask16>(lanes_in(base, w.jlo, w.jhi));
    const __mmask16 in_a = static_cast<__mmask16>(lanes_in(base, w.ilo, w.ihi));
    const __m512 stayB = _mm512_loadu_ps(prevB + base);
    const __m512 stayA = _mm512_loadu_ps(prevA + base);
    const __m512 left = _mm512_loadu_ps(prevA + base - 1);  // blank j's one, label i's two (before skip)
    // blanks
    const __mmask16 b1 = _mm512_mask_cmp_ps_mask(in_b, left, stayB, _CMP_GT_OQ);
    const __m512 eB = emitB ? _mm512_loadu_ps(emitB + base) : bv;
    _mm512_mask_storeu_ps(nextB + base, in_b, _mm512_add_ps(_mm512_mask_blend_ps(b1, stayB, left), eB));
    // labels
    const __mmask16 one = _mm512_mask_cmp_ps_mask(in_a, stayB, stayA, _CMP_GT_OQ);
    __m512 best = _mm512_mask_blend_ps(one, stayA, stayB);
    const __m512 two = _mm512_add_ps(left, _mm512_loadu_ps(skip + base));
    const __mmask16 a2 = _mm512_mask_cmp_ps_mask(in_a, two, best, _CMP_GT_OQ);
    best = _mm512_mask_blend_ps(a2, best, two);
    __m512 eA;
    if (permute) {
      const __m512i id = _mm512_loadu_si512(reinterpret_cast<const void*>(idx + base));
      eA = _mm512_mask_blend_ps(_mm512_test_epi32_mask(id, high_half), _mm512_permutex2var_ps(r0, id, r1),
                                _mm512_permutex2var_ps(r2, id, r3));
    } else if (gather_row) {
      eA = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), in_a,
                                    _mm512_loadu_si512(reinterpret_cast<const void*>(idx + base)), gather_row, 4);
    } else {
      eA = _mm512_loadu_ps(emitA + base);
    }
    _mm512_mask_storeu_ps(nextA + base, in_a, _mm512_add_ps(best, eA));
    row[3 * g] = static_cast<uint16_t>(b1);
    row[3 * g + 1] = static_cast<uint16_t>(one & ~a2);
    row[3 * g + 2] = static_cast<uint16_t>(a2);
  }
}
// The wildcard's candidates with AVX-512 for float rows of up to 64 classes:
// the three largest values other than the blank's (ties: the lower class
// first; -inf never a candidate), exactly as the scalar scan ranks them, by
// three rounds of "largest value, its first lane, knock it out". Returns
// false (nothing written) where a value is NaN: the scalar scan ranks those.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's own headers (_mm512_undefined_ps)
__attribute__((target("avx512f"))) bool top3_avx512(const float* row, int64_t C, int64_t blank, float* value,
                                                    int32_t* cls) {
  const __m512 none = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 r[4];
  __mmask16 nan = 0;
  for (int k = 0; k < 4; ++k) {
    const __mmask16 in = static_cast<__mmask16>(lanes_in(k * kLanes, 0, C) & ~lanes_in(k * kLanes, blank, blank + 1));
    r[k] = _mm512_mask_loadu_ps(none, in, row + k * kLanes);
    nan |= _mm512_cmp_ps_mask(r[k], r[k], _CMP_UNORD_Q);
  }
  if (nan) return false;
  for (int i = 0; i < 3; ++i) {
    __m512 x = _mm512_max_ps(_mm512_max_ps(r[0], r[1]), _mm512_max_ps(r[2], r[3]));
    x = _mm512_max_ps(x, _mm512_shuffle_f32x4(x, x, _MM_SHUFFLE(1, 0, 3, 2)));  // every lane: the max of all
    x = _mm512_max_ps(x, _mm512_shuffle_f32x4(x, x, _MM_SHUFFLE(2, 3, 0, 1)));
    x = _mm512_max_ps(x, _mm512_permute_ps(x, _MM_SHUFFLE(1, 0, 3, 2)));
    x = _mm512_max_ps(x, _mm512_permute_ps(x, _MM_SHUFFLE(2, 3, 0, 1)));
    const float m = _mm512_cvtss_f32(x);
    if (!(m > -std::numeric_limits<float>::infinity())) {
      for (; i < 3; ++i) {
        value[i] = -std::numeric_limits<float>::infinity();
        cls[i] = -1;
      }
      return true;
    }
    const __m512 mv = _mm512_set1_ps(m);
    uint64_t hits = 0;
    for (int k = 0; k < 4; ++k) hits |= uint64_t(_mm512_cmp_ps_mask(r[k], mv, _CMP_EQ_OQ)) << (16 * k);
    const int c = __builtin_ctzll(hits);
    value[i] = row[c];
    cls[i] = c;
    r[c / kLanes] = _mm512_mask_blend_ps(static_cast<__mmask16>(1u << (c % kLanes)), r[c / kLanes], none);
  }
  return true;
}
#pragma GCC diagnostic pop

// The vector path where the CPU has AVX-512, unless CTCX_NO_AVX512 is set
// (read at every call, so tests can compare both paths in one process).
inline bool use_avx512() {
  static const bool have = __builtin_cpu_supports("avx512f");
  const char* off = std::getenv("CTCX_NO_AVX512");
  return have && !(off && *off && std::string(off) != "0");
}
#endif

template <typename scalar_t>
void forced_align_cpu_impl(const at::Tensor& x, const int64_t* targets, int64_t target_stride,
                           const int64_t* input_lengths, const int64_t* target_lengths,
                           int64_t blank, bool with_star, at::opmath_type<scalar_t> star_penalty,
                           int64_t* labels, scalar_t* scores, at::opmath_type<scalar_t>* path_scores) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  const int64_t T = x.size(0), N = x.size(1), C = x.size(2);
  const int64_t st = x.stride(0), sn = x.stride(1);
  const scalar_t* data = x.const_data_ptr<scalar_t>();
#ifdef CTCX_HAVE_AVX512_PATH
  constexpr bool kFloatAcc = std::is_same_v<acc_t, float>;
  const bool vector_path = kFloatAcc && use_avx512();
  // float input on the vector path (unit class stride: checked by the op):
  // the frame step reads the labels' values from the row itself; otherwise
  // they are gathered (and converted) into emit_a first.
  constexpr bool kFloatIn = std::is_same_v<scalar_t, float>;
  const bool gather_in_kernel = kFloatIn && vector_path;
#else
  const bool gather_in_kernel = false;
#endif
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    // rows of blank (B) and label (A) values, kPad cells of -inf before index 0
    std::vector<acc_t> rows_b[2], rows_a[2], skip, emit_a, emit_b, top_values;
    std::vector<int32_t> target32;  // the labels as 32-bit indices (C fits: checked by the op), zero-padded
    std::vector<int64_t> ext;
    std::vector<int32_t> top_classes, gap_before, gap_after;
    std::vector<uint8_t> move_b, move_1, move_2;  // the portable code's moves, 0/1 per state
    std::vector<uint16_t> moves;
    for (int64_t n = begin; n < end; ++n) {
      const int64_t frames = input_lengths[n], L = target_lengths[n], S = 2 * L + 1;
      const int64_t* target = targets + n * target_stride;
      const scalar_t* lp = data + n * sn;
      // The frame's three best non-blank classes (values plus the penalty;
      // class -1 and -inf where C is too small), kept per frame for the trace.
      acc_t* top_v = nullptr;
      int32_t* top_c = nullptr;
      const auto use_top = [&](int64_t t) {
        top_v = top_values.data() + 3 * t;
        top_c = top_classes.data() + 3 * t;
      };
      const auto find_top = [&](const scalar_t* row) {
#ifdef CTCX_HAVE_AVX512_PATH
        if constexpr (kFloatIn) {
          float v[3];
          if (vector_path && C <= 4 * kLanes && top3_avx512(row, C, blank, v, top_c)) {
            for (int i = 0; i < 3; ++i) top_v[i] = v[i] + star_penalty;
            return;
          }
        }
#endif
        acc_t v0 = kNegInf, v1 = kNegInf, v2 = kNegInf;
        int32_t c0 = -1, c1 = -1, c2 = -1;
        const auto ranks_above = [](acc_t x, acc_t y) { return x > y || (std::isnan(x) && !std::isnan(y)); };
        for (int64_t c = 0; c < C; ++c) {
          const acc_t v = static_cast<acc_t>(row[c]);
          if (c == blank || !ranks_above(v, v2)) continue;
          if (ranks_above(v, v1)) {
            v2 = v1;
            c2 = c1;
            if (ranks_above(v, v0)) {
              v1 = v0;
              c1 = c0;
              v0 = v;
              c0 = static_cast<int32_t>(c);
            } else {
              v1 = v;
              c1 = static_cast<int32_t>(c);
            }
          } else {
            v2 = v;
            c2 = static_cast<int32_t>(c);
          }
        }
        top_v[0] = v0 + star_penalty;
        top_v[1] = v1 + star_penalty;
        top_v[2] = v2 + star_penalty;
        top_c[0] = c0;
        top_c[1] = c1;
        top_c[2] = c2;
      };
      // The wildcard's score in gap i (blank state 2 i), after find_top: the
      // first candidate that is neither label beside the gap.
      const auto star = [&](int64_t i) -> acc_t {
        const int32_t before = gap_before[i], after = gap_after[i];
        const bool ok0 = top_c[0] >= 0 && top_c[0] != before && top_c[0] != after;
        const bool ok1 = top_c[1] >= 0 && top_c[1] != before && top_c[1] != after;
        const bool ok2 = top_c[2] >= 0 && top_c[2] != before && top_c[2] != after;
        return ok0 ? top_v[0] : ok1 ? top_v[1] : ok2 ? top_v[2] : kNegInf;
      };
      // The frame's values of the window's states: the labels' gathered into
      // emit_a (unless the vector path gathers them itself), and with a
      // wildcard each blank state's, the larger of the blank's and the
      // wildcard's, into emit_b. Returns the blank's value.
      const auto fill_emit = [&](int64_t t, const Window& w) -> acc_t {
        const scalar_t* row = lp + t * st;
        const acc_t b = static_cast<acc_t>(row[blank]);
        if (!gather_in_kernel) gather_labels(row, target32.data(), emit_a.data(), w.ilo, w.ihi);
        if (with_star) {
          use_top(t);
          find_top(row);
          star_row(gap_before.data(), gap_after.data(), top_c, top_v, b, emit_b.data(), w.jlo, w.jhi);
        }
        return b;
      };
      int64_t* out_labels = labels + n * T;
      scalar_t* out_scores = scores + n * T;
      for (int64_t t = 0; t < T; ++t) {
        out_labels[t] = blank;
        out_scores[t] = scalar_t(0);
      }
      ext.assign(S, blank);
      for (int64_t i = 0; i < L; ++i) ext[2 * i + 1] = target[i];
      const int64_t G = groups_of(L), width = G * kLanes;  // whole groups: L + 1 blanks, L labels
      target32.assign(width, 0);
      for (int64_t i = 0; i < L; ++i) target32[i] = static_cast<int32_t>(target[i]);
      if (with_star) {  // the labels beside each gap (-1 at the ends)
        top_values.resize(3 * frames);
        top_classes.resize(3 * frames);
        gap_before.assign(L + 1, -1);
        gap_after.assign(L + 1, -1);
        for (int64_t i = 0; i < L; ++i) {
          gap_before[i + 1] = static_cast<int32_t>(target[i]);
          gap_after[i] = static_cast<int32_t>(target[i]);
        }
      }
      if (frames == 0) {
        path_scores[n] = L == 0 ? acc_t(0) : kNegInf;
        continue;
      }
      const int64_t row_words = 3 * G;
      moves.resize(frames * row_words);
      std::fill(moves.begin(), moves.begin() + row_words, uint16_t(0));  // frame 0 has no moves
      for (int k = 0; k < 2; ++k) {
        rows_b[k].assign(kPad + width, kNegInf);
        rows_a[k].assign(kPad + width, kNegInf);
      }
      skip.assign(width, kNegInf);
      for (int64_t i = 1; i < L; ++i) {
        if (target[i] != target[i - 1]) skip[i] = acc_t(0);
      }
      emit_a.assign(width, kNegInf);
      if (with_star) emit_b.assign(width, kNegInf);
      move_b.assign(width, 0);
      move_1.assign(width, 0);
      move_2.assign(width, 0);
      acc_t* prevB = rows_b[0].data() + kPad;
      acc_t* prevA = rows_a[0].data() + kPad;
      acc_t* nextB = rows_b[1].data() + kPad;
      acc_t* nextA = rows_a[1].data() + kPad;
      {
        const Window w0 = window_of(0, std::min<int64_t>(S, 2));
        const acc_t b = fill_emit(0, w0);
        prevB[0] = with_star ? emit_b[0] : b;
        if (L > 0) prevA[0] = gather_in_kernel ? static_cast<acc_t>(lp[target[0]]) : emit_a[0];
      }
      for (int64_t t = 1; t < frames; ++t) {
        // The window of live states: s <= 2 t + 1 can be reached from the
        // start (the others are -inf and stay so in both buffers), and only
        // s >= S - 2 (frames - t) can still reach the end; every predecessor
        // of a live state is live, so the states outside (left stale) are
        // never read by one, nor visited by the trace. Same path, fewer states.
        const int64_t lo = std::max<int64_t>(0, S - 2 * (frames - t)), hi = std::min<int64_t>(S, 2 * t + 2);
        const Window w = window_of(lo, hi);
        const acc_t b = fill_emit(t, w);
        uint16_t* row = moves.data() + t * row_words;
        const acc_t* eB = with_star ? emit_b.data() : nullptr;
#ifdef CTCX_HAVE_AVX512_PATH
        if constexpr (kFloatAcc) {
          if (vector_path) {
            const float* gather_row = nullptr;
            if constexpr (kFloatIn) gather_row = lp + t * st;
            viterbi_frame_avx512(prevB, prevA, nextB, nextA, skip.data(), emit_a.data(), gather_row, C,
                                 target32.data(), eB, b, w, row);
            std::swap(prevB, nextB);
            std::swap(prevA, nextA);
            continue;
          }
        }
#endif
        viterbi_frame(prevB, prevA, nextB, nextA, skip.data(), emit_a.data(), eB, b, w, move_b.data(),
                      move_1.data(), move_2.data(), row);
        std::swap(prevB, nextB);
        std::swap(prevA, nextA);
      }
      // the end: the final blank (state S - 1), or the last label if strictly better
      int64_t s = S - 1;
      acc_t last = prevB[L];
      if (L > 0 && prevA[L - 1] > last) {
        s = S - 2;
        last = prevA[L - 1];
      }
      path_scores[n] = last;
      if (!(last > kNegInf)) {  // no alignment with a finite log-probability (or NaN input)
        continue;
      }
      for (int64_t t = frames - 1; t >= 0; --t) {
        const scalar_t v = lp[t * st + ext[s]];
        acc_t w = kNegInf;
        if (with_star && !(s & 1)) {
          use_top(t);
          w = star(s / 2);
        }
        if (w > static_cast<acc_t>(v)) {
          out_labels[t] = C;
          out_scores[t] = static_cast<scalar_t>(w);
        } else {
          out_labels[t] = ext[s];
          out_scores[t] = v;
        }
        s -= get_move(moves.data() + t * row_words, s);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ctc_forced_align_cpu(
    const at::Tensor& log_probs, const at::Tensor& targets, const at::Tensor& input_lengths,
    const at::Tensor& target_lengths, int64_t blank, std::optional<double> star_penalty) {
  const char* fn = "ctcx.forced_align";
  check_forced_align_layout(fn, log_probs, targets, input_lengths, target_lengths, blank, star_penalty);
  const at::Tensor il = input_lengths.contiguous(), tl = target_lengths.contiguous();
  const at::Tensor tg = targets.contiguous();
  check_forced_align_values_cpu(fn, log_probs, tg, il, tl, blank);
  const int64_t T = log_probs.size(0), N = log_probs.size(1);
  const auto acc = log_probs.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor labels = at::empty({N, T}, log_probs.options().dtype(at::kLong));
  at::Tensor scores = at::empty({N, T}, log_probs.options());
  at::Tensor path_scores = at::empty({N}, log_probs.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, log_probs.scalar_type(), "ctcx_forced_align_cpu", [&] {
        forced_align_cpu_impl<scalar_t>(
            log_probs, tg.const_data_ptr<int64_t>(), tg.size(1), il.const_data_ptr<int64_t>(),
            tl.const_data_ptr<int64_t>(), blank,
            star_penalty.has_value(), static_cast<at::opmath_type<scalar_t>>(star_penalty.value_or(0.0)),
            labels.mutable_data_ptr<int64_t>(),
            scores.mutable_data_ptr<scalar_t>(),
            path_scores.mutable_data_ptr<at::opmath_type<scalar_t>>());
      });
  return {labels, scores, path_scores};
}

}  // namespace
}  // namespace ctcx

TORCH_LIBRARY_IMPL(ctcx, CPU, m) {
  m.impl("ctc_forced_align", &ctcx::ctc_forced_align_cpu);
}
