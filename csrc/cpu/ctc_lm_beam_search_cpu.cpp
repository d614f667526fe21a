// CTC prefix beam search with shallow fusion (an n-gram LM, a lexicon,
// hotwords; ctcx/lm_fusion.h) on the CPU, one sample per task
// (at::parallel_for over the batch).
//
// The search is ctc_decode.h's: every prefix keeps log P(prefix, ending in
// blank) and log P(prefix, ending in its last token); STAY keeps a prefix
// (blank, or its last token repeated, plus its parent's extension when the
// parent is in the beam: the merge), EXT extends prefix j by token c (by its
// own last token only from the blank-ending path); the beam keeps the K best
// by the fused score ctc + extra(state), ties by candidate id (STAY k = k,
// EXT(j, c) = K + j C + c). The fusion's extra is a function of the prefix,
// so a prefix's score is exact while every prefix that leads to it stays in
// the beam: with a beam as wide as the number of prefixes alive the search
// returns the exact argmax of the fused score of finished hypotheses.
//
// Pruning is exact: candidates stream into the K best so far; theta, the
// K-th best score, only rises; an extension scores at most score_j + lp_c +
// max_gain (the LM's log-probabilities are <= 0, lm_weight >= 0), so the
// frame's tokens are scanned best first and a prefix stops at its first token
// whose bound falls below theta, and the prefixes (best first) stop at the
// first whose best token does. Only extensions that pass are looked up in the
// LM, so on peaked posteriors a frame makes few LM queries.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include "ctcx/ctc_decode.h"
#include "ctcx/ctc_decode_checks.h"
#include "ctcx/lm_beam_search_checks.h"
#include "ctcx/lm_fusion.h"

namespace ctcx {
namespace {

template <typename acc_t>
struct Hyp {
  uint64_t hash, parent_hash;
  acc_t pb, pnb, ctc, score;  // ctc = log_add_exp(pb, pnb); score = ctc + extra
  acc_t extra;
  int32_t len, last;
  lm::FusionState<acc_t> st;
};

template <typename acc_t>
struct Cand {
  acc_t score;
  int64_t id;  // STAY k: k; EXT(j, c): K + j C + c
};

template <typename acc_t>
bool cand_better(const Cand<acc_t>& a, const Cand<acc_t>& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

// Prefix hash -> beam index, for one frame (open addressing, power-of-two size).
class HashIndex {
 public:
  void reset(int32_t n) {
    int32_t size = 1;
    while (size < 2 * n + 2) size <<= 1;
    slots_.assign(size, -1);
    mask_ = size - 1;
  }
  template <typename acc_t>
  void insert(const std::vector<Hyp<acc_t>>& beam, int32_t i) {
    uint64_t h = beam[i].hash;
    for (int32_t s = static_cast<int32_t>(h & mask_);; s = (s + 1) & mask_) {
      if (slots_[s] < 0) {
        slots_[s] = i;
        return;
      }
    }
  }
  // The entry with this hash and length, or -1.
  template <typename acc_t>
  int32_t find(const std::vector<Hyp<acc_t>>& beam, uint64_t h, int32_t len) const {
    for (int32_t s = static_cast<int32_t>(h & mask_);; s = (s + 1) & mask_) {
      const int32_t i = slots_[s];
      if (i < 0) return -1;
      if (beam[i].hash == h && beam[i].len == len) return i;
    }
  }

 private:
  std::vector<int32_t> slots_;
  uint64_t mask_ = 0;
};

struct Outputs {
  int64_t* tokens;     // (N, top_k, T)
  int64_t* timesteps;  // (N, top_k, T)
  int64_t* lengths;    // (N, top_k)
  void* scores;        // (N, top_k) acc_t, fused
  void* ctc_scores;    // (N, top_k) acc_t
  void* lm_scores;     // (N, top_k) acc_t, ln P_lm without weight
};

template <typename scalar_t, typename acc_t>
class Search {
 public:
  Search(const lm::Fusion& f, const decode::SearchConfig& cfg, int64_t C, const bool* allowed, double threshold)
      : f_(f), cfg_(cfg), C_(C), allowed_(allowed), cache_(C <= kCacheClasses),
        threshold_(static_cast<acc_t>(threshold)) {}

  void run(const scalar_t* data, int64_t st, int64_t frames, acc_t log_skip, int64_t T, int64_t top_k,
           int64_t n, const Outputs& out) {
    const int32_t K = cfg_.beam_width;
    const acc_t ninf = neg_inf<acc_t>();
    hist_pred_.assign(frames * K, -1);
    hist_tok_.assign(frames * K, -1);
    beam_.clear();
    if (!(frames == 0 && cfg_.min_length > 0)) {
      Hyp<acc_t> h;
      h.hash = decode::kEmptyPrefixHash;
      h.parent_hash = 0;
      h.pb = 0;
      h.pnb = ninf;
      h.ctc = 0;
      lm::fusion_begin(f_, h.st);
      h.extra = lm::fusion_extra(f_, h.st);
      h.score = h.extra;
      h.len = 0;
      h.last = -1;
      beam_.push_back(h);
      if (cache_) rows_.assign(C_, std::numeric_limits<acc_t>::quiet_NaN());
    }
    for (int64_t t = 0; t < frames; ++t) {
      const scalar_t* row = data + t * st;
      const bool extend = !(decode::read_lp<acc_t>(row, cfg_.blank) > log_skip);
      step(row, extend, static_cast<int32_t>(frames - 1 - t), hist_pred_.data() + t * K,
           hist_tok_.data() + t * K);
    }
    finish(frames, T, top_k, n, out);
  }

 private:
  bool extendable(const Hyp<acc_t>& h, int32_t remaining) const {
    return h.score > neg_inf<acc_t>() && h.len < cfg_.max_length &&
           h.len + 1 + remaining >= cfg_.min_length;
  }

  // heap_: the K best scores so far, a min-heap (its front is theta once full).
  void push(const Cand<acc_t>& c) {
    if (c.score < floor()) return;
    best_ = c.score > best_ ? c.score : best_;
    cands_.push_back(c);
    heap_.push_back(c.score);
    std::push_heap(heap_.begin(), heap_.end(), std::greater<acc_t>());
    if (static_cast<int32_t>(heap_.size()) > cfg_.beam_width) {
      std::pop_heap(heap_.begin(), heap_.end(), std::greater<acc_t>());
      heap_.pop_back();
    }
  }

  acc_t theta() const {
    return static_cast<int32_t>(heap_.size()) == cfg_.beam_width ? heap_.front() : neg_inf<acc_t>();
  }

  // What a candidate must reach: theta, and with a beam_threshold also the
  // best score so far minus it (an approximation the caller asked for).
  acc_t floor() const {
    const acc_t th = theta();
    const acc_t cut = best_ - threshold_;
    return cut > th ? cut : th;
  }

  // Whether an upper bound (a sum of a few terms) falls below theta by more
  // than its rounding: the candidate it bounds cannot enter the beam.
  bool below(acc_t bound) const {
    const acc_t th = floor();
    const acc_t eps = std::is_same<acc_t, double>::value ? acc_t(1e-12) : acc_t(1e-5);
    return bound + eps * (acc_t(1) + std::abs(th) + std::abs(bound)) < th;
  }

  void step(const scalar_t* row, bool extend, int32_t remaining, int32_t* hist_pred, int32_t* hist_tok) {
    const int32_t K = cfg_.beam_width, nb = static_cast<int32_t>(beam_.size());
    const acc_t ninf = neg_inf<acc_t>();
    const acc_t lp_blank = decode::read_lp<acc_t>(row, cfg_.blank);
    index_.reset(nb);
    for (int32_t i = 0; i < nb; ++i) index_.insert(beam_, i);
    cands_.clear();
    heap_.clear();
    best_ = ninf;
    stay_pb_.resize(nb);
    stay_pnb_.resize(nb);
    stay_emits_.resize(nb);
    parent_.resize(nb);

    // STAY, with the parent's extension merged in.
    for (int32_t k = 0; k < nb; ++k) {
      const Hyp<acc_t>& h = beam_[k];
      const int32_t c = h.last;
      const acc_t lp_c = c >= 0 ? decode::read_lp<acc_t>(row, c) : ninf;
      const acc_t pb = decode::sane(h.ctc + lp_blank);
      const acc_t carry_nb = decode::sane(h.pnb + lp_c);
      const int32_t j = extend && h.len > 0 ? index_.find(beam_, h.parent_hash, h.len - 1) : -1;
      parent_[k] = j;
      const acc_t merged =
          j >= 0 ? decode::sane((beam_[j].last == c ? beam_[j].pb : beam_[j].ctc) + lp_c) : ninf;
      const acc_t pnb = decode::sane(decode::decode_log_add_exp(carry_nb, merged));
      acc_t total = decode::sane(decode::decode_log_add_exp(pb, pnb));
      if (h.len + remaining < cfg_.min_length) total = ninf;
      stay_pb_[k] = pb;
      stay_pnb_[k] = pnb;
      stay_emits_[k] = merged > decode::sane(decode::decode_log_add_exp(pb, carry_nb));
      if (total > ninf) push({decode::sane(total + h.extra), k});
    }

    // EXT: the frame's usable tokens, best first.
    const acc_t gain = static_cast<acc_t>(f_.max_gain);
    int32_t first = 0;  // the best extendable prefix
    while (first < nb && !extendable(beam_[first], remaining)) ++first;
    if (extend && first < nb) {
      acc_t best_lp = ninf;
      for (int64_t c = 0; c < C_; ++c) {
        if (c == cfg_.blank || (allowed_ != nullptr && !allowed_[c])) continue;
        const acc_t v = decode::read_lp<acc_t>(row, c);
        best_lp = v > best_lp ? v : best_lp;
      }
      // The frame's tokens, best first, only when one could enter the beam.
      tokens_.clear();
      if (best_lp > ninf && !below(beam_[first].score + best_lp + gain)) {
        for (int64_t c = 0; c < C_; ++c) {
          if (c == cfg_.blank || (allowed_ != nullptr && !allowed_[c])) continue;
          const acc_t v = decode::read_lp<acc_t>(row, c);
          if (v > ninf) tokens_.push_back({v, c});
        }
        std::sort(tokens_.begin(), tokens_.end(), cand_better<acc_t>);
      }
      lm::FusionState<acc_t> next;
      for (int32_t j = first; j < nb && !tokens_.empty(); ++j) {
        const Hyp<acc_t>& h = beam_[j];
        if (!extendable(h, remaining)) continue;
        if (below(h.score + tokens_[0].score + gain)) break;  // the beam is sorted by score
        acc_t* cached = cache_ ? rows_.data() + static_cast<int64_t>(j) * C_ : nullptr;
        for (const Cand<acc_t>& tok : tokens_) {
          if (below(h.score + tok.score + gain)) break;
          const int32_t c = static_cast<int32_t>(tok.id);
          const acc_t ctc = decode::sane((c == h.last ? h.pb : h.ctc) + tok.score);
          if (!(ctc > ninf)) continue;
          if (index_.find(beam_, decode::extend_hash(h.hash, c), h.len + 1) >= 0) continue;  // merged
          acc_t extra = cached ? cached[c] : std::numeric_limits<acc_t>::quiet_NaN();
          if (extra != extra) {
            next = h.st;
            extra = lm::fusion_step(f_, next, c) ? lm::fusion_extra(f_, next) : ninf;
            if (cached) cached[c] = extra;
          }
          if (!(extra > ninf)) continue;  // the lexicon forbids it
          const acc_t score = decode::sane(ctc + extra);
          if (score > ninf) push({score, K + static_cast<int64_t>(j) * C_ + c});
        }
      }
    }

    // The best K.
    int32_t keep = std::min<int32_t>(K, static_cast<int32_t>(cands_.size()));
    std::partial_sort(cands_.begin(), cands_.begin() + keep, cands_.end(), cand_better<acc_t>);
    // beam_threshold: the best K of the candidates within it of the frame's
    // best (whatever order they were found in; the CUDA kernel's rule too).
    while (keep > 0 && cands_[keep - 1].score < cands_[0].score - threshold_) --keep;
    next_.resize(keep);
    if (cache_) next_rows_.resize(static_cast<size_t>(keep) * C_);
    for (int32_t i = 0; i < keep; ++i) {
      const Cand<acc_t>& c = cands_[i];
      Hyp<acc_t>& h = next_[i];
      if (c.id < K) {
        const int32_t k = static_cast<int32_t>(c.id);
        h = beam_[k];
        h.pb = stay_pb_[k];
        h.pnb = stay_pnb_[k];
        h.ctc = decode::sane(decode::decode_log_add_exp(h.pb, h.pnb));
        h.score = c.score;
        const bool emits = stay_emits_[k] != 0;
        hist_pred[i] = emits ? parent_[k] : k;
        hist_tok[i] = emits ? h.last : -1;
        if (cache_) std::copy_n(rows_.data() + static_cast<int64_t>(k) * C_, C_, next_rows_.data() + static_cast<int64_t>(i) * C_);
        continue;
      }
      const int32_t j = static_cast<int32_t>((c.id - K) / C_);
      const int32_t token = static_cast<int32_t>((c.id - K) % C_);
      const Hyp<acc_t>& p = beam_[j];
      h.st = p.st;
      lm::fusion_step(f_, h.st, token);
      h.extra = lm::fusion_extra(f_, h.st);
      h.hash = decode::extend_hash(p.hash, token);
      h.parent_hash = p.hash;
      h.pb = neg_inf<acc_t>();
      h.pnb = decode::sane((token == p.last ? p.pb : p.ctc) + decode::read_lp<acc_t>(row, token));
      h.ctc = h.pnb;
      h.score = c.score;
      h.len = p.len + 1;
      h.last = token;
      hist_pred[i] = j;
      hist_tok[i] = token;
      if (cache_) {
        std::fill_n(next_rows_.data() + static_cast<int64_t>(i) * C_, C_, std::numeric_limits<acc_t>::quiet_NaN());
      }
    }
    beam_.swap(next_);
    rows_.swap(next_rows_);
  }

  void finish(int64_t frames, int64_t T, int64_t top_k, int64_t n, const Outputs& out) {
    const int32_t K = cfg_.beam_width, nb = static_cast<int32_t>(beam_.size());
    struct Final {
      acc_t score, lm;
      int32_t i;
    };
    std::vector<Final> fin;
    for (int32_t i = 0; i < nb; ++i) {
      acc_t extra, lm_total;
      if (!(beam_[i].ctc > neg_inf<acc_t>()) || !lm::fusion_finish(f_, beam_[i].st, &extra, &lm_total)) continue;
      const acc_t score = decode::sane(beam_[i].ctc + extra);
      if (score > neg_inf<acc_t>()) fin.push_back({score, lm_total, i});
    }
    std::sort(fin.begin(), fin.end(), [](const Final& a, const Final& b) {
      return a.score > b.score || (a.score == b.score && a.i < b.i);
    });
    acc_t* scores = static_cast<acc_t*>(out.scores);
    acc_t* ctc_scores = static_cast<acc_t*>(out.ctc_scores);
    acc_t* lm_scores = static_cast<acc_t*>(out.lm_scores);
    for (int64_t r = 0; r < top_k; ++r) {
      const int64_t at = n * top_k + r;
      int64_t* tokens = out.tokens + at * T;
      int64_t* timesteps = out.timesteps + at * T;
      for (int64_t t = 0; t < T; ++t) tokens[t] = timesteps[t] = -1;
      if (r >= static_cast<int64_t>(fin.size())) {
        out.lengths[at] = 0;
        scores[at] = ctc_scores[at] = lm_scores[at] = neg_inf<acc_t>();
        continue;
      }
      const Final& x = fin[r];
      const Hyp<acc_t>& h = beam_[x.i];
      out.lengths[at] = h.len;
      scores[at] = x.score;
      ctc_scores[at] = h.ctc;
      lm_scores[at] = x.lm;
      int64_t pos = h.len;
      int32_t e = x.i;
      for (int64_t t = frames - 1; t >= 0 && pos > 0 && e >= 0; --t) {
        const int32_t token = hist_tok_[t * K + e];
        if (token >= 0) {
          --pos;
          tokens[pos] = token;
          timesteps[pos] = t;
        }
        e = hist_pred_[t * K + e];
      }
    }
  }

  const lm::Fusion& f_;
  const decode::SearchConfig& cfg_;
  const int64_t C_;
  const bool* allowed_;
  const bool cache_;
  const acc_t threshold_;  // beam_threshold, +inf: none
  acc_t best_ = 0;         // the best candidate score of the frame so far
  std::vector<Hyp<acc_t>> beam_, next_;
  std::vector<Cand<acc_t>> cands_, tokens_;
  std::vector<acc_t> heap_;
  // extra(state after token c) of beam entry k at rows_[k * C + c], NaN until
  // computed: a prefix's extensions cost one LM query each in its lifetime,
  // not one per frame. (C <= kCacheClasses; above, every frame queries.)
  static constexpr int64_t kCacheClasses = 4096;
  std::vector<acc_t> rows_, next_rows_;
  std::vector<acc_t> stay_pb_, stay_pnb_;
  std::vector<int32_t> stay_emits_, parent_, hist_pred_, hist_tok_;
  HashIndex index_;
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> ctc_lm_beam_search_cpu(
    const at::Tensor& log_probs, const at::Tensor& input_lengths, int64_t beam_width, int64_t top_k,
    int64_t blank, int64_t min_length, int64_t max_length, const std::optional<at::Tensor>& allowed_tokens,
    std::optional<double> blank_skip_threshold, at::TensorList lm_tables, at::IntArrayRef lm_info,
    at::TensorList lexicon, at::TensorList hotwords, int64_t word_delimiter, double lm_weight,
    double insertion_bonus, double max_gain, std::optional<double> beam_threshold) {
  const char* fn = "ctcx.beam_search";
  check_decode_layout(fn, log_probs, input_lengths, blank);
  check_beam_search_options(log_probs, beam_width, top_k, min_length, max_length, allowed_tokens,
                            blank_skip_threshold);
  const at::Tensor il = input_lengths.contiguous();
  const int64_t T = log_probs.size(0), N = log_probs.size(1), C = log_probs.size(2);
  check_input_lengths_cpu(fn, il, T);
  const lm::Fusion fusion = make_fusion(log_probs, lm_tables, lm_info, lexicon, hotwords, word_delimiter,
                                        lm_weight, insertion_bonus, max_gain);
  const at::Tensor allowed = allowed_tokens ? allowed_tokens->contiguous() : at::Tensor();

  const auto long_options = il.options();
  at::Tensor tokens = at::empty({N, top_k, T}, long_options);
  at::Tensor timesteps = at::empty({N, top_k, T}, long_options);
  at::Tensor lengths = at::empty({N, top_k}, long_options);
  const auto score_options = log_probs.options().dtype(at::toOpMathType(log_probs.scalar_type()));
  at::Tensor scores = at::empty({N, top_k}, score_options);
  at::Tensor ctc_scores = at::empty({N, top_k}, score_options);
  at::Tensor lm_scores = at::empty({N, top_k}, score_options);
  const decode::SearchConfig cfg = decode::make_config(beam_width, T, C, blank, min_length, max_length);
  const double log_skip = blank_skip_threshold ? std::log(*blank_skip_threshold)
                                               : std::numeric_limits<double>::infinity();
  const Outputs out{tokens.mutable_data_ptr<int64_t>(), timesteps.mutable_data_ptr<int64_t>(),
                    lengths.mutable_data_ptr<int64_t>(), scores.mutable_data_ptr(),
                    ctc_scores.mutable_data_ptr(), lm_scores.mutable_data_ptr()};
  TORCH_CHECK_VALUE(!beam_threshold || *beam_threshold > 0, fn, ": beam_threshold = ", *beam_threshold,
                    " must be None or > 0");
  const double threshold = beam_threshold ? *beam_threshold : std::numeric_limits<double>::infinity();
  const int64_t* frames = il.const_data_ptr<int64_t>();
  const bool* mask = allowed.defined() ? allowed.const_data_ptr<bool>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, log_probs.scalar_type(), "ctcx_lm_beam_search_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* data = log_probs.const_data_ptr<scalar_t>();
    const int64_t st = log_probs.stride(0), sn = log_probs.stride(1);
    at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
      Search<scalar_t, acc_t> search(fusion, cfg, C, mask, threshold);
      for (int64_t n = begin; n < end; ++n) {
        search.run(data + n * sn, st, frames[n], static_cast<acc_t>(log_skip), T, top_k, n, out);
      }
    });
  });
  return {tokens, lengths, scores, timesteps, ctc_scores, lm_scores};
}

}  // namespace
}  // namespace ctcx

TORCH_LIBRARY_IMPL(ctcx, CPU, m) { m.impl("ctc_lm_beam_search", &ctcx::ctc_lm_beam_search_cpu); }
