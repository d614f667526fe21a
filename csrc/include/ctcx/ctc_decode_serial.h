// The CPU's frame step (one sample per thread): beam_step of ctc_decode.h,
// result for result and bit for bit (same candidates, same ids, same
// arithmetic), with exact bound pruning in place of most of its work.
//
// The candidates stream into the K best so far; the K-th best, theta, only
// rises, and a candidate that is not better than theta is beaten by K others
// and cannot enter the beam. STAY and REP candidates (at most 2K, all real)
// come first. Every EXT id (2K + j M + r) is larger than theirs, and EXT
// candidates come in increasing id order (prefix j, then token rank r), so a
// later one ties with no earlier candidate and enters exactly when its score
// is above theta's. Then:
// - the frame's tokens are scanned once, keeping those that could beat theta
//   even from the best extendable prefix (score_0 + lp >= theta; addition is
//   monotonic, so they are a prefix of the frame's tokens in beam_step's
//   order and keep beam_step's ranks). While the row streams by, the K best
//   of the best prefix's extensions give a second bound, so on a flat frame
//   the kept tokens stay few too. On peaked posteriors one or two tokens are
//   kept instead of beam_step's 2K, with no heap or sort over the vocabulary;
// - each extendable prefix (best first) takes its tokens (best first) until
//   one falls to theta, and the prefixes stop at the first whose best token
//   does.
// Most frames of a trained model's output change nothing: a blank-dominated
// frame keeps the beam's entries in their order. The step tests for that
// first (quiet(): the STAY scores still sorted, no REP above the K-th, no
// token lifting the best extendable prefix above it) and then only writes
// the STAY values; and since such a frame leaves the beam's parent links as
// they were, the caller keeps them (KnownParents) and the next frame skips
// their search. The STAY candidates, usually still sorted, are loaded into
// the K best at once instead of one insertion each; the log-sum-exp that
// tells whether a merged extension dominates is skipped where a bound
// settles it; and on peaked frames the few tokens above the STAY/REP bound
// are listed by a branch-free compaction of the row.
// The top K of the survivors are beam_step's top K: candidates beam_step
// lists are kept unless they cannot enter the beam, and the ones it leaves
// out (ranks past its list bound) are beaten by K candidates (the proof at the
// top of ctc_decode.h), so keeping some of them changes nothing.
// tests/cpp/ctc_decode_threads.cpp checks the equality with the cooperative
// step on random problems (NaN, +-inf, masks, length bounds, skipped frames).
#pragma once

#include <algorithm>
#include <functional>
#include <type_traits>
#include <vector>

#include "ctcx/ctc_decode.h"

namespace ctcx {
namespace decode {

// decode_log_add_exp(a, b) bit for bit (the cooperative step's), branching
// past exp and log where their result is known. Float's is the table's,
// which branches below the table already. For double: when the smaller side
// is further below the larger than the significand holds (exp(d) < 2^-53,
// with room for the approximation's error), 1 + exp(d) rounds to 1 and the
// result is the larger side + log(1) = larger + 0. On peaked posteriors that
// is most calls; log_add_exp itself stays branch-free for vectorized loops.
template <typename T>
CTCX_HOST_DEVICE T log_add_exp_branching(T a, T b) {
  if constexpr (std::is_same<T, float>::value) {
    return decode_log_add_exp(a, b);
  } else {
    const T m = a > b ? a : b;
    const T shift = m == neg_inf<T>() ? T(0) : m;
    if ((a - shift) + (b - shift) < T(-37.5)) {
      return a == neg_inf<T>() && b == neg_inf<T>() ? neg_inf<T>() : shift + T(0);
    }
    return log_add_exp(a, b);
  }
}

template <typename acc_t>
CTCX_HOST_DEVICE acc_t score_of(const Candidate<acc_t>& c) {
  return c.score;
}
template <typename acc_t>
CTCX_HOST_DEVICE acc_t score_of(acc_t v) {
  return v;
}

// The k best of a stream under a strict order `Better`: for small k a sorted
// array (an insertion moves a few entries, and the result needs no sort), for
// larger k a heap with the worst on top. bound() is the k-th best's score
// (-inf while fewer than k), kept up to date by offer().
template <typename T, typename Better, typename S>
class TopK {
 public:
  void reset(int32_t k) {
    k_ = k;
    n_ = 0;
    small_ = k <= kSmall;
    bound_ = neg_inf<S>();
    if (static_cast<int32_t>(v_.size()) < k) v_.resize(k);
  }
  int32_t size() const { return n_; }
  S bound() const { return bound_; }

  // (Forced inline: in the op's large step GCC otherwise keeps it a call.)
  CTCX_HOST_DEVICE void offer(const T& x) {
    const Better better_than;
    if (n_ == k_ && !better_than(x, small_ ? v_[n_ - 1] : v_[0])) return;
    if (small_) {
      int32_t i = n_ < k_ ? n_++ : n_ - 1;  // the new slot, or the dropped worst's
      for (; i > 0 && better_than(x, v_[i - 1]); --i) v_[i] = v_[i - 1];
      v_[i] = x;
      if (n_ == k_) bound_ = score_of(v_[n_ - 1]);
    } else {
      if (n_ < k_) {
        v_[n_++] = x;
      } else {
        std::pop_heap(v_.begin(), v_.begin() + n_, better_than);
        v_[n_ - 1] = x;
      }
      std::push_heap(v_.begin(), v_.begin() + n_, better_than);
      if (n_ == k_) bound_ = score_of(v_[0]);
    }
  }

  // Loads n <= k entries already in order (best first) into an empty set
  // with a sorted array; false (nothing done) where the set is a heap.
  bool assign_sorted(const T* x, int32_t n) {
    if (!small_ || n_ != 0) return false;
    for (int32_t i = 0; i < n; ++i) v_[i] = x[i];
    n_ = n;
    if (n_ == k_) bound_ = score_of(v_[n_ - 1]);
    return true;
  }

  // The entries, best first; offer() may not be called after this.
  const T* sorted() {
    if (!small_) std::sort_heap(v_.begin(), v_.begin() + n_, Better{});
    return v_.data();
  }

 private:
  static constexpr int32_t kSmall = 32;
  std::vector<T> v_;
  int32_t k_ = 0, n_ = 0;
  bool small_ = true;
  S bound_;
};

template <typename acc_t>
struct CandidateOrder {
  bool operator()(const Candidate<acc_t>& a, const Candidate<acc_t>& b) const { return better(a, b); }
};

// The parents of one sample's beam entries (find_parents' answer, K
// entries), kept by the caller across that sample's frames: a frame that
// leaves the beam as it was (same entries, same order) leaves them valid, so
// the next frame skips the search. Start each sample with valid = false.
struct KnownParents {
  int32_t* parent;
  bool valid;
};

template <typename acc_t>
class PrunedStep {
 public:
  // One frame, as beam_step: beam `cur` (nb prefixes, best first) -> `next`;
  // returns its size. extend = false for a blank-skipped frame (no
  // extensions); remaining = frames of the sample after this one.
  // (Forced inline: in the op's loop the call's invariants stay in registers.)
  template <typename scalar_t>
  inline __attribute__((always_inline)) int32_t step(
      const SearchConfig& cfg, const scalar_t* row, int64_t C, const bool* allowed, bool extend,
      int32_t remaining, int32_t nb, const BeamView<acc_t>& cur, const BeamView<acc_t>& next,
      int32_t* hist_pred, int32_t* hist_tok, KnownParents& known) {
    const int32_t K = cfg.beam_width, M = cfg.list_size;
    const acc_t ninf = neg_inf<acc_t>();
    const acc_t inf = std::numeric_limits<acc_t>::infinity();
    const acc_t lp_blank = read_lp<acc_t>(row, cfg.blank);
    // beam_step extends only when the frame has a token; with none, every
    // REP and EXT score is -inf there and here alike, so M > 0 is enough.
    const bool any_token = extend && M > 0;
    reserve(K, C);
    char* const extendable = extendable_.data();
    for (int32_t j = 0; j < nb; ++j) {
      extendable[j] = any_token && cur.score[j] > ninf && cur.len[j] < cfg.max_length &&
                      cur.len[j] + 1 + remaining >= cfg.min_length;
    }

    // 1. Parents in the beam: find_parents' answer, or the one kept from an
    // earlier frame that left the beam as it was.
    for (int32_t k = 0; k < nb; ++k) parent_[k] = -1;
    if (extend) {
      if (known.valid) {
        for (int32_t k = 0; k < nb; ++k) parent_[k] = known.parent[k];
      } else {
        find_parents(cur, nb);
        for (int32_t k = 0; k < nb; ++k) known.parent[k] = parent_[k];
        known.valid = true;
      }
    }

    // 2. STAY candidates.
    acc_t* const pb = stay_pb_.data();
    acc_t* const pnb = stay_pnb_.data();
    acc_t* const total = total_.data();
    char* const emits = stay_emits_.data();
    for (int32_t k = 0; k < nb; ++k) {
      const int32_t c = cur.last[k];
      const acc_t lp_c = c >= 0 ? read_lp<acc_t>(row, c) : ninf;
      const int32_t j = parent_[k];
      pb[k] = sane(cur.score[k] + lp_blank);
      const acc_t carry_nb = sane(cur.pnb[k] + lp_c);
      const acc_t merged = j >= 0 ? sane((cur.last[j] == c ? cur.pb[j] : cur.score[j]) + lp_c) : ninf;
      pnb[k] = sane(log_add_exp_branching(carry_nb, merged));
      total[k] = sane(log_add_exp_branching(pb[k], pnb[k]));
      // Whether the merged extension dominates: log_add_exp(pb, carry_nb) lies
      // in [hi, hi + 0.6932] for the larger side hi < +inf (shift + log(1 + e),
      // e in [0, 1]: checked for every float difference), so it is needed only
      // for a merged value in between.
      const acc_t hi = pb[k] > carry_nb ? pb[k] : carry_nb;
      bool emit = merged > ninf;
      if (emit) {
        const bool settled = hi < inf && (merged <= hi || merged > hi + static_cast<acc_t>(0.6932));
        emit = settled ? merged > hi : merged > sane(log_add_exp_branching(pb[k], carry_nb));
      }
      emits[k] = emit;
    }

    if (quiet(cfg, row, C, allowed, remaining, nb, cur, extendable)) {
      // The new beam is the STAY candidates in their order (step 6's result
      // when every id is its own index): no REP or EXT beats the K-th.
      for (int32_t i = 0; i < nb; ++i) {
        next.score[i] = total[i];
        keep_stay(i, i, cur, next, hist_pred, hist_tok);
      }
      ++quiet_frames_;
      return nb;  // the kept parents still hold: same entries, same order
    }

    // Each entry's children.
    for (int32_t k = 0; k < nb; ++k) first_child_[k] = -1;
    char* const repeat_in_beam = repeat_in_beam_.data();  // prefix k + its last token is in the beam
    for (int32_t k = 0; k < nb; ++k) repeat_in_beam[k] = 0;
    for (int32_t k = nb - 1; k >= 0; --k) {
      const int32_t j = parent_[k];
      if (j >= 0) {
        next_child_[k] = first_child_[j];
        first_child_[j] = k;
        repeat_in_beam[j] |= cur.last[k] == cur.last[j];
      }
    }

    // 3. STAY and REP candidates into the K best.
    best_.reset(K);
    {
      Candidate<acc_t>* const stay = stay_.data();
      int sorted = 1;  // an int: GCC vectorizes the test
      for (int32_t k = 0; k < nb; ++k) stay[k] = {cur.len[k] + remaining < cfg.min_length ? ninf : total[k], k};
      for (int32_t k = 0; k + 1 < nb; ++k) sorted &= stay[k].score >= stay[k + 1].score;
      if (!sorted || !best_.assign_sorted(stay, nb)) {
        for (int32_t k = 0; k < nb; ++k) best_.offer(stay[k]);
      }
    }
    for (int32_t j = 0; j < nb; ++j) {
      // prefix j + its last token in the beam: that is a STAY, not a REP
      if (cur.len[j] == 0 || !extendable[j] || repeat_in_beam[j]) continue;
      best_.offer({sane(cur.pb[j] + read_lp<acc_t>(row, cur.last[j])), K + j});
    }

    // 4. The frame's tokens that could still place an extension in the beam
    // (see the top of the file). The test runs on raw values (best + v also
    // rejects NaN; -inf is rejected below): a vectorizable pass over blocks of
    // the row, with a second look only at blocks that hold a survivor.
    int32_t first = 0;
    while (first < nb && !extendable[first]) ++first;
    int32_t s = 0;
    // The best extendable prefix's children (usually the whole tail of a
    // peaked beam) marked by token, for has_child(first, .) in one lookup.
    char* const first_child_token = first_child_token_.data();
    if (first < nb) {
      for (int32_t k = first_child_[first]; k >= 0; k = next_child_[k]) first_child_token[cur.last[k]] = 1;
    }
    auto is_child = [&](int32_t j, int32_t token) {
      return j == first ? first_child_token[token] != 0 : has_child(j, token, cur);
    };
    if (first < nb) {
      const acc_t best = cur.score[first];
      // The K-th best of the union is at least the K-th best of each part:
      // the STAY and REP candidates, and the extensions seen so far.
      const acc_t theta0 = best_.bound();
      scores_.reset(K);
      auto cut = [&] {
        const acc_t ext = scores_.bound();
        return ext > theta0 ? ext : theta0;
      };
      constexpr int64_t kBlock = 16;
      // The tokens above theta0 alone, counted in one vectorizable pass: up
      // to 2K of them are listed by a branch-free compaction; beyond, the
      // extensions' bound (an offer and a child test per token) cuts the list.
      // (Counted in blocks, stopping once past 2K: a flat frame of a large
      // vocabulary goes to the bound after a block or two.)
      int passing = 0;
      for (int64_t base = 0; base < C && passing <= 2 * K; base += 4 * kBlock) {
        const int64_t end = base + 4 * kBlock < C ? base + 4 * kBlock : C;
        for (int64_t c = base; c < end; ++c) {
          passing += (best + static_cast<acc_t>(row[c]) >= theta0) & (c != cfg.blank);
        }
      }
      if (passing <= 2 * K) {
        for (int64_t c = 0; c < C && passing > 0; ++c) {
          const acc_t v = static_cast<acc_t>(row[c]);
          const bool pass = best + v >= theta0;
          passing -= pass & (c != cfg.blank);
          tokens_[s] = {v, static_cast<int32_t>(c)};
          s += pass & (c != cfg.blank) & (v > ninf) & (allowed == nullptr || allowed[c]);
        }
      }
      for (int64_t base = 0; base < C && passing > 0; base += kBlock) {
        // Raised only by the offers below: a stale value keeps more tokens,
        // which the final filter drops.
        const acc_t low = cut();
        const int64_t end = base + kBlock < C ? base + kBlock : C;
        int hits = 0;  // an int, not a bool: GCC vectorizes a sum, not an or
        if (end - base == kBlock) {
          for (int64_t i = 0; i < kBlock; ++i) hits += best + static_cast<acc_t>(row[base + i]) >= low;
        } else {
          for (int64_t c = base; c < end; ++c) hits += best + static_cast<acc_t>(row[c]) >= low;
        }
        // the blank passes on every frame it dominates: not a token
        if (cfg.blank >= base && cfg.blank < end) hits -= best + static_cast<acc_t>(row[cfg.blank]) >= low;
        if (!hits) continue;
        for (int64_t c = base; c < end && hits > 0; ++c) {  // up to the block's last passing token
          const acc_t v = static_cast<acc_t>(row[c]);
          if (!(best + v >= low) || c == cfg.blank) continue;
          --hits;
          if (!(v > ninf) || (allowed != nullptr && !allowed[c])) continue;
          tokens_[s++] = {v, static_cast<int32_t>(c)};
          if (c != cur.last[first] && !first_child_token[c]) {
            scores_.offer(sane(best + v));  // EXT(first, c), a real candidate
          }
        }
      }
      const acc_t low = cut();
      int32_t kept = 0;
      for (int32_t i = 0; i < s; ++i) {
        if (best + tokens_[i].score >= low) tokens_[kept++] = tokens_[i];
      }
      s = kept;
      if (s > M) {
        std::nth_element(tokens_.begin(), tokens_.begin() + M, tokens_.begin() + s, CandidateOrder<acc_t>{});
        s = M;
      }
      if (std::is_same<acc_t, float>::value && s > 2 && s <= 24) {
        rank_sort(s);
      } else if (s <= 24) {  // usually one or two: an inline insertion sort, not a call
        for (int32_t i = 1; i < s; ++i) {
          const Candidate<acc_t> x = tokens_[i];
          int32_t at = i;
          for (; at > 0 && better(x, tokens_[at - 1]); --at) tokens_[at] = tokens_[at - 1];
          tokens_[at] = x;
        }
      } else {
        std::sort(tokens_.begin(), tokens_.begin() + s, CandidateOrder<acc_t>{});
      }
    }

    // 5. EXT candidates, in increasing id order.
    for (int32_t j = first; j < nb && s > 0; ++j) {
      if (!extendable[j]) continue;
      if (!(sane(cur.score[j] + tokens_[0].score) > best_.bound())) break;  // nor any later prefix
      for (int32_t r = 0; r < s; ++r) {
        const int32_t token = tokens_[r].id;
        if (token == cur.last[j]) continue;  // a REP, not an EXT
        const acc_t score = sane(cur.score[j] + tokens_[r].score);
        if (!(score > best_.bound()) || !(score > ninf)) break;  // nor any later token
        // prefix j + token in the beam: merged into that prefix's STAY
        if (!is_child(j, token)) best_.offer({score, 2 * K + j * M + r});
      }
    }

    if (first < nb) {
      for (int32_t k = first_child_[first]; k >= 0; k = next_child_[k]) first_child_token[cur.last[k]] = 0;
    }

    // 6. The new beam, best first, and how each entry got there (as beam_step).
    const int32_t n = best_.size();
    const Candidate<acc_t>* top = best_.sorted();
    int32_t size = 0;
    bool same = true;  // the beam's entries stay in place: the kept parents hold
    for (int32_t i = 0; i < K; ++i) {
      if (i < n) same &= top[i].id == i;
      if (i >= n || !(top[i].score > ninf)) {
        hist_pred[i] = -1;
        hist_tok[i] = -1;
        continue;
      }
      const Candidate<acc_t> c = top[i];
      size = i + 1;
      next.score[i] = c.score;
      if (c.id < K) {
        keep_stay(i, c.id, cur, next, hist_pred, hist_tok);
        continue;
      }
      int32_t j, token;
      if (c.id < 2 * K) {
        j = c.id - K;
        token = cur.last[j];
      } else {
        j = (c.id - 2 * K) / M;
        token = tokens_[(c.id - 2 * K) % M].id;
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
    if (!(same && size == nb)) known.valid = false;
    return size;
  }

  // Frames that took the quiet path (for tests: the path is exercised).
  int64_t quiet_frames() const { return quiet_frames_; }

 private:
  // Entry i of the new beam is STAY k of the old one (its score already
  // written): the prefix carried over with its new probabilities, and how it
  // got there.
  void keep_stay(int32_t i, int32_t k, const BeamView<acc_t>& cur, const BeamView<acc_t>& next,
                 int32_t* hist_pred, int32_t* hist_tok) const {
    const char* const emits = stay_emits_.data();
    next.hash[i] = cur.hash[k];
    next.parent_hash[i] = cur.parent_hash[k];
    next.pb[i] = stay_pb_[k];
    next.pnb[i] = stay_pnb_[k];
    next.len[i] = cur.len[k];
    next.last[i] = cur.last[k];
    hist_pred[i] = emits[k] ? parent_[k] : k;
    hist_tok[i] = emits[k] ? cur.last[k] : -1;
  }

  // Whether the frame's result is the beam itself, entry for entry: a full
  // beam (nb = K) whose STAY candidates keep their order and beat every REP
  // and EXT candidate. Those enter only above the K-th STAY's score theta
  // (their ids are larger), and none can: each REP is tested, and no EXT is
  // above the best extendable prefix's score plus the frame's best token
  // (addition is monotonic).
  template <typename scalar_t>
  bool quiet(const SearchConfig& cfg, const scalar_t* row, int64_t C, const bool* allowed,
             int32_t remaining, int32_t nb, const BeamView<acc_t>& cur, const char* extendable) const {
    const int32_t K = cfg.beam_width;
    if (nb != K) return false;
    const acc_t* const total = total_.data();
    const acc_t ninf = neg_inf<acc_t>();
    int in_order = total[K - 1] > ninf;  // ints, not bools: GCC vectorizes these
    for (int32_t k = 0; k < K; ++k) in_order &= cur.len[k] + remaining >= cfg.min_length;
    for (int32_t k = 0; k + 1 < K; ++k) in_order &= total[k] >= total[k + 1];
    if (!in_order) return false;
    const acc_t theta = total[K - 1];
    int32_t first = -1;
    for (int32_t j = K - 1; j >= 0; --j) {
      if (!extendable[j]) continue;
      first = j;
      if (cur.len[j] > 0 && sane(cur.pb[j] + read_lp<acc_t>(row, cur.last[j])) > theta) return false;
    }
    if (first < 0) return true;
    // No token of the frame (the blank and disallowed ones aside) lifts the
    // best extendable prefix above theta; raw values (a NaN fails the test).
    // In blocks, stopping at the first that has one (a flat frame of a large
    // vocabulary is told after a block).
    const acc_t best = cur.score[first];
    constexpr int64_t kBlock = 64;
    for (int64_t base = 0; base < C; base += kBlock) {
      const int64_t end = base + kBlock < C ? base + kBlock : C;
      int above = 0;
      for (int64_t c = base; c < end; ++c) {
        above += (best + static_cast<acc_t>(row[c]) > theta) & (c != cfg.blank);
      }
      if (above == 0) continue;
      if (allowed == nullptr) return false;
      for (int64_t c = base; c < end; ++c) {
        if (c != cfg.blank && allowed[c] && best + static_cast<acc_t>(row[c]) > theta) return false;
      }
    }
    return true;
  }

  // tokens_[0, s) sorted best first (beam_step's order: log-prob down, then
  // index up) without a branch per comparison: each token's rank counts the
  // tokens better than it, compared as one 64-bit key (order-preserving bits
  // of the float log-prob, then the index reversed); the keys differ, so the
  // ranks are a permutation. For the few (<= 24) tokens of a busy frame.
  void rank_sort(int32_t s) {
    uint64_t* const key = keys_.data();
    for (int32_t i = 0; i < s; ++i) {
      const uint32_t bits = bit_cast<uint32_t>(static_cast<float>(tokens_[i].score) + 0.0f);  // -0 -> +0
      const uint32_t ordered = bits & 0x80000000u ? ~bits : bits | 0x80000000u;
      key[i] = static_cast<uint64_t>(ordered) << 32 | (0xFFFFFFFFu - static_cast<uint32_t>(tokens_[i].id));
    }
    Candidate<acc_t>* const out = sorted_tokens_.data();
    for (int32_t i = 0; i < s; ++i) {
      int32_t r = 0;
      for (int32_t j = 0; j < s; ++j) r += key[j] > key[i];
      out[r] = tokens_[i];
    }
    for (int32_t i = 0; i < s; ++i) tokens_[i] = out[i];
  }

  // Whether prefix j + token is in the beam (a child of j ends in token).
  CTCX_HOST_DEVICE bool has_child(int32_t j, int32_t token, const BeamView<acc_t>& b) const {
    for (int32_t k = first_child_[j]; k >= 0; k = next_child_[k]) {
      if (b.last[k] == token) return true;
    }
    return false;
  }

  void reserve(int32_t K, int64_t C) {
    if (static_cast<int32_t>(parent_.size()) < K) {
      for (auto* v : {&parent_, &first_child_, &next_child_}) v->resize(K);
      for (auto* v : {&stay_pb_, &stay_pnb_, &total_}) v->resize(K);
      stay_emits_.resize(K);
      stay_.resize(K);
      extendable_.resize(K);
      repeat_in_beam_.resize(K);
    }
    if (static_cast<int64_t>(tokens_.size()) < C) {
      tokens_.resize(C);
      first_child_token_.resize(C, 0);  // all 0 between steps
      keys_.resize(C);
      sorted_tokens_.resize(C);
    }
  }

  // parent_[k] = the first j with prefix j = prefix k minus its last token
  // (coop_find_parents' answer): by direct tests in a small beam, else by
  // open addressing (entries inserted in beam order, so a lookup finds the
  // first match).
  void find_parents(const BeamView<acc_t>& b, int32_t nb) {
    if (nb <= 16) {  // a small beam: nb^2 tests cost less than setting up a table
      for (int32_t k = 0; k < nb; ++k) {
        const int32_t want = b.len[k] - 1;
        if (want < 0) continue;
        const uint64_t h = b.parent_hash[k];
        for (int32_t j = 0; j < nb; ++j) {
          if (b.hash[j] == h && b.len[j] == want) {
            parent_[k] = j;
            break;
          }
        }
      }
      return;
    }
    const size_t slots = static_cast<size_t>(pow2_ceil(2 * (nb > 0 ? nb : 1)));
    const size_t mask = slots - 1;
    table_.assign(slots, -1);
    for (int32_t j = 0; j < nb; ++j) {
      size_t at = b.hash[j] & mask;
      while (table_[at] >= 0) at = (at + 1) & mask;
      table_[at] = j;
    }
    for (int32_t k = 0; k < nb; ++k) {
      if (b.len[k] == 0) continue;
      for (size_t at = b.parent_hash[k] & mask; table_[at] >= 0; at = (at + 1) & mask) {
        const int32_t j = table_[at];
        if (b.hash[j] == b.parent_hash[k] && b.len[j] == b.len[k] - 1) {
          parent_[k] = j;
          break;
        }
      }
    }
  }

  std::vector<int32_t> parent_, first_child_, next_child_, table_;
  std::vector<acc_t> stay_pb_, stay_pnb_, total_;
  std::vector<char> stay_emits_, extendable_, repeat_in_beam_, first_child_token_;
  std::vector<Candidate<acc_t>> tokens_, stay_, sorted_tokens_;
  std::vector<uint64_t> keys_;
  TopK<Candidate<acc_t>, CandidateOrder<acc_t>, acc_t> best_;
  TopK<acc_t, std::greater<acc_t>, acc_t> scores_;
  int64_t quiet_frames_ = 0;
};

}  // namespace decode
}  // namespace ctcx
