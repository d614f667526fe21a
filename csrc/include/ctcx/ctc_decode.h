// CTC decoding shared by the CPU and CUDA kernels: the best-path rule, and
// prefix beam search (Hannun et al. 2014, "First-Pass Large Vocabulary
// Continuous Speech Recognition using Bi-Directional Recurrent DNNs",
// arXiv:1408.2873, algorithm 1), exact unless frames are skipped on purpose.
//
// Every prefix in the beam keeps log P(prefix, ending in blank) and
// log P(prefix, ending in its last token) over the frames seen so far. Frame t
// turns the beam B (sorted by total score, best first) into candidates:
//   STAY k     prefix k of B unchanged: blank, or its last token repeated;
//              plus, when its parent (prefix k minus its last token) is in B,
//              the parent's extension by that token (merged by log-sum-exp:
//              "prefix + c already in the beam");
//   REP j      prefix j + its own last token: only from the blank-ending path
//              ("a a" needs a blank between), unless already a STAY;
//   EXT j r    prefix j + the r-th most probable other token of frame t.
// The best K = beam_width candidates form the next beam. Distinct candidates
// are distinct prefixes (the STAY merge removes the only possible duplicate),
// so no other merging is needed and identity tests are few: a prefix's parent
// is looked up by a 64-bit hash of its tokens (with its length), K^2 tests per
// frame, not one per candidate (a false match needs two beam prefixes of one
// length to collide: odds about K^2 / 2^64 per frame).
//
// Only few EXT candidates can make the top K: with B sorted by score and the
// frame's tokens sorted by log-prob, EXT(j, r) is beaten by every EXT(j', r')
// with j' <= j, r' <= r (j counting extendable prefixes only; float addition
// is monotonic), of which at most (j + 1) + (K - 1) are excluded (REP tokens
// and merged extensions). So only ranks r < ceil(2K / (j + 1)) of the j-th
// extendable prefix are candidates: about 2K ln K in all instead of K C, and
// the frame's 2K best tokens suffice. The search stays exact.
//
// Ties are broken by a fixed candidate id (STAY k = k, REP j = K + j, EXT(j, r)
// = 2K + j M + r), so results are deterministic and the same on every device
// given the same scores. Output constraints prune exactly: a prefix longer
// than max_length is never formed, one that cannot reach min_length in the
// frames left is dropped, disallowed tokens are never emitted.
//
// The per-frame step is written once for a cooperative group of threads (a
// CUDA block, or a single CPU thread): a Group provides rank(), size(), sync()
// and four primitives (exclusive_scan, find_parents, select_top, top_tokens).
// The coop_* versions below implement them for any group size with only
// rank/size/sync; the CPU uses sequential ones (ctc_decode_serial.h). Data
// shared between threads lives in the arrays passed in, never in locals.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "ctcx/log_math.h"
#include "ctcx/softplus_table.h"

#if defined(__CUDACC__)
#define CTCX_COOP __device__
#else
#define CTCX_COOP
#endif

namespace ctcx {
namespace decode {

constexpr int32_t kMaxBeamWidth = 1024;
constexpr uint64_t kEmptyPrefixHash = 0x243F6A8885A308D3ull;

// ------------------------------------------------------------------ greedy

// Best-path order of (value, class) on a frame, as torch.argmax: NaN beats
// everything, then larger values, then the smaller class index.
template <typename acc_t>
CTCX_HOST_DEVICE bool argmax_better(acc_t v, int64_t c, acc_t best, int64_t best_c) {
  const bool v_nan = v != v, best_nan = best != best;
  if (v_nan != best_nan) return v_nan;
  if (!v_nan && v != best) return v > best;
  return c < best_c;
}

// ---------------------------------------------------------- small helpers

// log(exp(a) + exp(b)) for the decoders. On the host, float takes log(1 +
// exp(d)) from a table of cubic pieces (ctcx/softplus_table.h; absolute error
// below 7e-8, against 8.8e-8 for fast_log(1 + fast_exp(d))): one cubic in
// place of an exp and a log, and the same bits in the CPU's pruned step and
// in the cooperative step (the CUDA blocks' code, run on CPU threads by the
// tests). Below the
// table 1 + exp(d) rounds to 1 and the result is the larger side, as
// log_add_exp gives. Double, and CUDA devices, use log_add_exp.
template <typename T>
CTCX_HOST_DEVICE T decode_log_add_exp(T a, T b) {
#if !defined(__CUDA_ARCH__)
  if constexpr (std::is_same<T, float>::value) {
    const float m = a > b ? a : b;
    const float shift = m == neg_inf<float>() ? 0.0f : m;
    const float d = (a - shift) + (b - shift);  // <= 0; NaN for a NaN or +inf side
    if (d >= kSoftplusLow) {
      const float t = -d * kSoftplusScale;  // in [0, 256]
      const int i = static_cast<int>(t);
      const float u = t - static_cast<float>(i);
      const float* c = kSoftplusTable[i];
      return shift + (c[0] + u * (c[1] + u * (c[2] + u * c[3])));
    }
    if (d == d) return a == neg_inf<float>() && b == neg_inf<float>() ? neg_inf<float>() : shift + 0.0f;
  }
#endif
  return log_add_exp(a, b);
}

template <typename acc_t>
struct Candidate {
  acc_t score;
  int32_t id;
};

// Candidates are ordered by score, then by id. Scores are never NaN.
template <typename acc_t>
CTCX_HOST_DEVICE bool better(const Candidate<acc_t>& a, const Candidate<acc_t>& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

template <typename acc_t>
CTCX_HOST_DEVICE Candidate<acc_t> sentinel() {
  return {neg_inf<acc_t>(), std::numeric_limits<int32_t>::max()};
}

// NaN (from NaN or +inf inputs) counts as impossible.
template <typename acc_t>
CTCX_HOST_DEVICE acc_t sane(acc_t v) {
  return v == v ? v : neg_inf<acc_t>();
}

template <typename acc_t, typename scalar_t>
CTCX_HOST_DEVICE acc_t read_lp(const scalar_t* row, int64_t c) {
  return sane(static_cast<acc_t>(row[c]));
}

CTCX_HOST_DEVICE uint64_t extend_hash(uint64_t h, int32_t token) {
  uint64_t z = h + 0x9E3779B97F4A7C15ull * (static_cast<uint64_t>(token) + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

CTCX_HOST_DEVICE int32_t pow2_ceil(int32_t n) {
  int32_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

CTCX_HOST_DEVICE size_t align16(size_t bytes) { return (bytes + 15) / 16 * 16; }

// Ranks of the extendable prefix at position pos (0 = best) that can reach the top K.
CTCX_HOST_DEVICE int32_t list_length(int32_t pos, int32_t K, int32_t count) {
  const int32_t bound = (2 * K + pos) / (pos + 1);
  return bound < count ? bound : count;
}

// Most candidates of one frame: STAY and REP slots, and every list full.
CTCX_HOST_DEVICE int32_t max_candidates(int32_t K, int32_t M) {
  int32_t n = 2 * K;
  for (int32_t p = 0; p < K; ++p) n += list_length(p, K, M);
  return n;
}

// Frame tokens kept per frame: the 2K best suffice (see the top of the file).
CTCX_HOST_DEVICE int32_t token_list_size(int32_t K, int64_t C) {
  const int64_t others = C > 0 ? C - 1 : 0;
  return static_cast<int32_t>(others < 2 * K ? others : 2 * K);
}

// Carves 16-byte aligned arrays out of one buffer; with base == nullptr it
// only measures.
struct Carver {
  unsigned char* base;
  size_t at = 0;
  template <typename T>
  CTCX_HOST_DEVICE T* take(size_t count) {
    T* p = base ? reinterpret_cast<T*>(base + at) : nullptr;
    at += align16(count * sizeof(T));
    return p;
  }
};

// --------------------------------------------------------------- the beam

struct SearchConfig {
  int32_t beam_width;  // K
  int32_t list_size;   // M = token_list_size(K, C)
  int32_t blank;
  int32_t min_length;
  int32_t max_length;
};

// The configuration of one call: lengths past T + 1 (min) or T (max) act as
// T + 1 and T, since no prefix is longer than T.
CTCX_HOST_DEVICE SearchConfig make_config(int64_t beam_width, int64_t T, int64_t C, int64_t blank,
                                          int64_t min_length, int64_t max_length) {
  const int32_t K = static_cast<int32_t>(beam_width);
  return {K, token_list_size(K, C), static_cast<int32_t>(blank),
          static_cast<int32_t>(min_length < T + 1 ? min_length : T + 1),
          static_cast<int32_t>(max_length < T ? max_length : T)};
}

// One beam of up to K prefixes (struct of arrays). Tokens are not stored:
// they are read back from the per-frame history at the end.
template <typename acc_t>
struct BeamView {
  uint64_t* hash;         // of the prefix's tokens
  uint64_t* parent_hash;  // of the prefix minus its last token
  acc_t* pb;              // log P(prefix, last frame blank)
  acc_t* pnb;             // log P(prefix, last frame its last token)
  acc_t* score;           // log_add_exp(pb, pnb), the sort key
  int32_t* len;
  int32_t* last;  // last token, -1 for the empty prefix
};

template <typename acc_t>
CTCX_HOST_DEVICE BeamView<acc_t> carve_beam(Carver& c, int32_t K) {
  BeamView<acc_t> b;
  b.hash = c.take<uint64_t>(K);
  b.parent_hash = c.take<uint64_t>(K);
  b.pb = c.take<acc_t>(K);
  b.pnb = c.take<acc_t>(K);
  b.score = c.take<acc_t>(K);
  b.len = c.take<int32_t>(K);
  b.last = c.take<int32_t>(K);
  return b;
}

template <typename acc_t>
CTCX_HOST_DEVICE size_t beam_bytes(int32_t K) {
  Carver c{nullptr};
  carve_beam<acc_t>(c, K);
  return c.at;
}

// The beam before the first frame: the empty prefix with probability 1,
// unless no frames are left to reach min_length.
template <typename acc_t>
CTCX_HOST_DEVICE int32_t init_beam(const BeamView<acc_t>& b, int64_t frames, int32_t min_length) {
  b.hash[0] = kEmptyPrefixHash;
  b.parent_hash[0] = 0;
  b.pb[0] = 0;
  b.pnb[0] = neg_inf<acc_t>();
  b.score[0] = 0;
  b.len[0] = 0;
  b.last[0] = -1;
  return frames == 0 && min_length > 0 ? 0 : 1;
}

// Working arrays of one frame step.
template <typename acc_t>
struct StepScratch {
  int32_t* parent;      // (K) index of the entry's parent in the beam, or -1
  acc_t* stay_pb;       // (K) STAY probabilities
  acc_t* stay_pnb;      // (K)
  int32_t* stay_emits;  // (K) 1 when the merged extension dominates (its token starts now)
  int32_t* list_pos;    // (K) position among the extendable entries
  int32_t* list_off;    // (K) first EXT slot of each entry
  int32_t* scan_tmp;    // (2 * group size)
  int32_t* shared;      // (4) values every thread reads
  Candidate<acc_t>* cand;  // (pow2_ceil(max_candidates(K, M)))
};

template <typename acc_t>
CTCX_HOST_DEVICE StepScratch<acc_t> carve_scratch(Carver& c, int32_t K, int32_t M, int32_t group) {
  StepScratch<acc_t> s;
  s.cand = c.take<Candidate<acc_t>>(pow2_ceil(max_candidates(K, M)));
  s.stay_pb = c.take<acc_t>(K);
  s.stay_pnb = c.take<acc_t>(K);
  s.parent = c.take<int32_t>(K);
  s.stay_emits = c.take<int32_t>(K);
  s.list_pos = c.take<int32_t>(K);
  s.list_off = c.take<int32_t>(K);
  s.scan_tmp = c.take<int32_t>(2 * static_cast<size_t>(group));
  s.shared = c.take<int32_t>(4);
  return s;
}

template <typename acc_t>
CTCX_HOST_DEVICE size_t scratch_bytes(int32_t K, int32_t M, int32_t group) {
  Carver c{nullptr};
  carve_scratch<acc_t>(c, K, M, group);
  return c.at;
}

// Frame t of one sample.
template <typename scalar_t, typename acc_t>
struct Frame {
  const scalar_t* row;    // (C,) log-probabilities, unit stride
  const int32_t* top_tok;  // the frame's best tokens (allowed, not blank, finite), best first
  const acc_t* top_lp;
  int32_t top_count;  // entries of top_tok; -1: a blank-skipped frame (no extensions)
  int32_t remaining;  // frames of the sample after this one
};

// Where token c (log-prob v) sits in the frame's sorted token list, or -1.
template <typename acc_t>
CTCX_HOST_DEVICE int32_t find_rank(const int32_t* tok, const acc_t* lp, int32_t count, acc_t v,
                                   int32_t c) {
  const Candidate<acc_t> key{v, c};
  int32_t lo = 0, hi = count;
  while (lo < hi) {
    const int32_t mid = (lo + hi) / 2;
    if (better(Candidate<acc_t>{lp[mid], tok[mid]}, key)) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < count && tok[lo] == c ? lo : -1;
}

// ------------------------------------------------------------- frame step

// One frame: beam `cur` (nb prefixes, best first) -> beam `next`; returns its
// size. hist_pred/hist_tok (K,) receive, for every new entry, the entry of
// `cur` it continues and the token it starts at this frame (-1: none), along
// its most probable contribution. Called by every thread of the group.
template <class Group, typename scalar_t, typename acc_t>
CTCX_COOP int32_t beam_step(Group& g, const SearchConfig& cfg, const Frame<scalar_t, acc_t>& f,
                            int32_t nb, const BeamView<acc_t>& cur, const BeamView<acc_t>& next,
                            const StepScratch<acc_t>& s, int32_t* hist_pred, int32_t* hist_tok) {
  const int32_t K = cfg.beam_width, M = cfg.list_size;
  const int rank = g.rank(), size = g.size();
  const acc_t ninf = neg_inf<acc_t>();
  const bool extend = f.top_count >= 0;
  const int32_t count = extend ? f.top_count : 0;
  const acc_t lp_blank = read_lp<acc_t>(f.row, cfg.blank);
  auto extendable = [&](int32_t j) {
    return count > 0 && cur.score[j] > ninf && cur.len[j] < cfg.max_length &&
           cur.len[j] + 1 + f.remaining >= cfg.min_length;
  };

  // 1. The parent of every prefix, when it is in the beam too.
  if (extend) {
    g.find_parents(cur, nb, s.parent);
  } else {
    for (int32_t k = rank; k < nb; k += size) s.parent[k] = -1;
  }
  g.sync();
  // Reset after a barrier: every thread has read the previous step's result.
  if (rank == 0) s.shared[0] = 0;

  // 2. STAY candidates, with the parent's extension merged in.
  for (int32_t k = rank; k < K; k += size) {
    if (k >= nb) {
      s.cand[k] = sentinel<acc_t>();
      continue;
    }
    const int32_t c = cur.last[k];
    const acc_t lp_c = c >= 0 ? read_lp<acc_t>(f.row, c) : ninf;
    const acc_t pb = sane(cur.score[k] + lp_blank);
    const acc_t carry_nb = sane(cur.pnb[k] + lp_c);
    const int32_t j = s.parent[k];
    const acc_t merged =
        j >= 0 ? sane((cur.last[j] == c ? cur.pb[j] : cur.score[j]) + lp_c) : ninf;
    const acc_t pnb = sane(decode_log_add_exp(carry_nb, merged));
    acc_t total = sane(decode_log_add_exp(pb, pnb));
    if (cur.len[k] + f.remaining < cfg.min_length) total = ninf;  // min_length out of reach
    s.stay_pb[k] = pb;
    s.stay_pnb[k] = pnb;
    s.stay_emits[k] = merged > sane(decode_log_add_exp(pb, carry_nb)) ? 1 : 0;
    s.cand[k] = {total, k};
    s.list_pos[k] = extendable(k) ? 1 : 0;
  }
  g.sync();
  g.exclusive_scan(s.list_pos, nb, s.scan_tmp);

  // 3. EXT slots of every extendable prefix.
  for (int32_t k = rank; k < nb; k += size) {
    s.list_off[k] = extendable(k) ? list_length(s.list_pos[k], K, count) : 0;
  }
  g.sync();
  const int32_t n_ext = g.exclusive_scan(s.list_off, nb, s.scan_tmp);
  const int32_t n_cand = 2 * K + n_ext;

  // 4. REP and EXT candidates.
  for (int32_t j = rank; j < K; j += size) {
    Candidate<acc_t> rep{ninf, K + j};
    if (j < nb && cur.len[j] > 0 && extendable(j)) {
      rep.score = sane(cur.pb[j] + read_lp<acc_t>(f.row, cur.last[j]));
    }
    s.cand[K + j] = rep;
  }
  for (int32_t i = rank; i < n_ext; i += size) {
    int32_t lo = 0, hi = nb;  // the last entry whose slots start at or before i
    while (hi - lo > 1) {
      const int32_t mid = (lo + hi) / 2;
      if (s.list_off[mid] <= i) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    const int32_t j = lo, r = i - s.list_off[j];
    const acc_t score = f.top_tok[r] == cur.last[j] ? ninf : sane(cur.score[j] + f.top_lp[r]);
    s.cand[2 * K + i] = {score, 2 * K + j * M + r};
  }
  g.sync();

  // 5. Extensions already in the beam were merged into their STAY.
  for (int32_t k = rank; k < nb; k += size) {
    const int32_t j = s.parent[k];
    if (j < 0 || !extendable(j)) continue;
    const int32_t c = cur.last[k];
    if (c == cur.last[j]) {
      s.cand[K + j].score = ninf;
      continue;
    }
    const int32_t r = find_rank(f.top_tok, f.top_lp, count, read_lp<acc_t>(f.row, c), c);
    const int32_t end = j + 1 < nb ? s.list_off[j + 1] : n_ext;
    if (r >= 0 && s.list_off[j] + r < end) s.cand[2 * K + s.list_off[j] + r].score = ninf;
  }
  g.sync();

  // 6. The best K.
  g.select_top(s.cand, n_cand, K);

  // 7. The new beam, and how each entry got there.
  for (int32_t i = rank; i < K; i += size) {
    const Candidate<acc_t> c = s.cand[i];
    if (!(c.score > ninf)) {
      hist_pred[i] = -1;
      hist_tok[i] = -1;
      continue;
    }
    if (i + 1 == K || !(s.cand[i + 1].score > ninf)) s.shared[0] = i + 1;
    next.score[i] = c.score;
    if (c.id < K) {
      const int32_t k = c.id;
      next.hash[i] = cur.hash[k];
      next.parent_hash[i] = cur.parent_hash[k];
      next.pb[i] = s.stay_pb[k];
      next.pnb[i] = s.stay_pnb[k];
      next.len[i] = cur.len[k];
      next.last[i] = cur.last[k];
      const bool emits = s.stay_emits[k] != 0;
      hist_pred[i] = emits ? s.parent[k] : k;
      hist_tok[i] = emits ? cur.last[k] : -1;
      continue;
    }
    int32_t j, token;
    if (c.id < 2 * K) {
      j = c.id - K;
      token = cur.last[j];
    } else {
      j = (c.id - 2 * K) / M;
      token = f.top_tok[(c.id - 2 * K) % M];
    }
    next.hash[i] = extend_hash(cur.hash[j], token);
    next.parent_hash[i] = cur.hash[j];
    next.pb[i] = ninf;
    next.pnb[i] = c.score;
    next.len[i] = cur.len[j] + 1;
    next.last[i] = token;
    hist_pred[i] = j;
    hist_tok[i] = token;
  }
  g.sync();
  return s.shared[0];
}

// Hypothesis i of a sample after its last frame: tokens and start frames
// read back through the history (frame t at hist + t * K), padded with -1 to
// T; length 0 and score -inf past the beam.
template <typename acc_t>
CTCX_HOST_DEVICE void write_hypothesis(int32_t i, int32_t nb, const BeamView<acc_t>& beam,
                                       const int32_t* hist_pred, const int32_t* hist_tok,
                                       int32_t K, int64_t frames, int64_t T, int64_t* tokens,
                                       int64_t* timesteps, int64_t* length, acc_t* score) {
  int64_t pos = 0;
  if (i < nb) {
    pos = beam.len[i];
    *length = pos;
    *score = beam.score[i];
  } else {
    *length = 0;
    *score = neg_inf<acc_t>();
  }
  for (int64_t t = pos; t < T; ++t) {
    tokens[t] = -1;
    timesteps[t] = -1;
  }
  int32_t e = i;
  for (int64_t t = frames - 1; t >= 0 && pos > 0 && e >= 0; --t) {
    const int32_t token = hist_tok[t * K + e];
    if (token >= 0) {
      --pos;
      tokens[pos] = token;
      timesteps[pos] = t;
    }
    e = hist_pred[t * K + e];
  }
  for (int64_t p = 0; p < pos; ++p) {  // unreachable unless the history is inconsistent
    tokens[p] = -1;
    timesteps[p] = -1;
  }
}

// ----------------------------------------------- cooperative primitives

// In-place exclusive prefix sum of v[0, n); returns the total. tmp: 2 * size ints.
template <class Group>
CTCX_COOP int32_t coop_exclusive_scan(Group& g, int32_t* v, int32_t n, int32_t* tmp) {
  const int rank = g.rank(), size = g.size();
  const int32_t seg = (n + size - 1) / size;
  const int32_t lo = rank * seg < n ? rank * seg : n;
  const int32_t hi = lo + seg < n ? lo + seg : n;
  int32_t local = 0;
  for (int32_t i = lo; i < hi; ++i) local += v[i];
  int32_t* in = tmp;
  int32_t* out = tmp + size;
  in[rank] = local;
  g.sync();
  for (int d = 1; d < size; d <<= 1) {  // Hillis-Steele over the per-thread sums
    out[rank] = in[rank] + (rank >= d ? in[rank - d] : 0);
    g.sync();
    int32_t* swap = in;
    in = out;
    out = swap;
  }
  const int32_t total = in[size - 1];
  int32_t run = in[rank] - local;
  for (int32_t i = lo; i < hi; ++i) {
    const int32_t x = v[i];
    v[i] = run;
    run += x;
  }
  g.sync();
  return total;
}

// parent[k] = the first j with prefix j = prefix k minus its last token, or -1.
template <class Group, typename acc_t>
CTCX_COOP void coop_find_parents(Group& g, const BeamView<acc_t>& b, int32_t nb, int32_t* parent) {
  for (int32_t k = g.rank(); k < nb; k += g.size()) {
    int32_t p = -1;
    const int32_t want = b.len[k] - 1;
    if (want >= 0) {
      const uint64_t h = b.parent_hash[k];
      for (int32_t j = 0; j < nb; ++j) {
        if (b.len[j] == want && b.hash[j] == h) {
          p = j;
          break;
        }
      }
    }
    parent[k] = p;
  }
}

// Sorts c[0, n) best first (bitonic network over pow2_ceil(n) entries, padded
// with sentinels: c must hold that many). Callers read the first k.
template <class Group, typename acc_t>
CTCX_COOP void coop_select_top(Group& g, Candidate<acc_t>* c, int32_t n, int32_t /*k*/) {
  const int rank = g.rank(), size = g.size();
  const int32_t n2 = pow2_ceil(n);
  for (int32_t i = n + rank; i < n2; i += size) c[i] = sentinel<acc_t>();
  g.sync();
  for (int32_t width = 2; width <= n2; width <<= 1) {
    for (int32_t stride = width >> 1; stride > 0; stride >>= 1) {
      for (int32_t q = rank; q < n2 / 2; q += size) {
        const int32_t i = ((q & ~(stride - 1)) << 1) | (q & (stride - 1));
        const int32_t j = i + stride;
        const Candidate<acc_t> a = c[i], b = c[j];
        const bool best_first = (i & width) == 0;
        if (best_first ? better(b, a) : better(a, b)) {
          c[i] = b;
          c[j] = a;
        }
      }
      g.sync();
    }
  }
}

// The m best tokens of a frame (allowed, not blank, finite log-prob), best
// first, into tok_out/lp_out; returns how many there are (at most m). buf:
// cap entries, cap a power of two > m; the row streams through it in chunks
// of cap - m. *shared_int: an int every thread can read.
template <class Group, typename scalar_t, typename acc_t>
CTCX_COOP int32_t coop_top_tokens(Group& g, const scalar_t* row, int64_t C, int32_t blank,
                                  const bool* allowed, int32_t m, Candidate<acc_t>* buf,
                                  int32_t cap, int32_t* tok_out, acc_t* lp_out,
                                  int32_t* shared_int) {
  if (m == 0) return 0;
  const int rank = g.rank(), size = g.size();
  const int32_t chunk = cap - m;
  for (int32_t i = rank; i < m; i += size) buf[i] = sentinel<acc_t>();
  for (int64_t base = 0; base < C; base += chunk) {
    for (int32_t i = rank; i < chunk; i += size) {
      const int64_t c = base + i;
      Candidate<acc_t> x = sentinel<acc_t>();
      if (c < C && c != blank && (allowed == nullptr || allowed[c])) {
        const acc_t v = read_lp<acc_t>(row, c);
        if (v > neg_inf<acc_t>()) x = {v, static_cast<int32_t>(c)};
      }
      buf[m + i] = x;
    }
    g.sync();
    if (rank == 0 && base == 0) *shared_int = 0;  // after a barrier, as in beam_step
    g.select_top(buf, cap, m);
  }
  for (int32_t i = rank; i < m; i += size) {
    const bool ok = buf[i].score > neg_inf<acc_t>();
    tok_out[i] = ok ? buf[i].id : -1;
    lp_out[i] = buf[i].score;
    if (ok && (i + 1 == m || !(buf[i + 1].score > neg_inf<acc_t>()))) *shared_int = i + 1;
  }
  g.sync();
  return *shared_int;
}

// Buffer entries coop_top_tokens streams through for m tokens of C classes.
CTCX_HOST_DEVICE int32_t top_tokens_capacity(int32_t m, int64_t C) {
  if (m == 0) return 0;
  const int64_t want = static_cast<int64_t>(m) + (C < 1024 ? C : 1024);
  const int32_t one_pass = pow2_ceil(static_cast<int32_t>(want));
  const int32_t twice = pow2_ceil(2 * m);
  return one_pass > twice ? one_pass : twice;
}

}  // namespace decode
}  // namespace ctcx
