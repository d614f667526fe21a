#include "ctcx/lm_beam_search_checks.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>

namespace ctcx {
namespace {

constexpr const char* kFn = "ctcx.beam_search";

void check_tensor(const at::Tensor& t, const at::Tensor& log_probs, at::ScalarType dtype, const char* what) {
  TORCH_CHECK_VALUE(t.scalar_type() == dtype, kFn, ": ", what, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == log_probs.device(), kFn, ": ", what, " must be on log_probs' device ",
                    log_probs.device(), ", got ", t.device());
  TORCH_CHECK_VALUE(t.is_contiguous(), kFn, ": ", what, " must be contiguous");
}

// A CSR trie over tokens [0, C) whose per-node arrays have `nodes` entries.
// Reads the tensors' values (CPU only; CUDA tries are checked on the host by
// ctcx/lexicon.py before they are moved).
lm::Trie check_trie(const at::Tensor& first, const at::Tensor& token, const at::Tensor& node,
                    const at::Tensor& log_probs, int64_t C, const char* what) {
  check_tensor(first, log_probs, at::kInt, what);
  check_tensor(token, log_probs, at::kInt, what);
  check_tensor(node, log_probs, at::kInt, what);
  TORCH_CHECK_VALUE(first.dim() == 1 && first.numel() >= 2 && token.dim() == 1 && node.dim() == 1 &&
                        token.numel() == node.numel(),
                    kFn, ": ", what, ": a trie needs first (V + 1,) with V >= 1 and token, node of one length");
  const int64_t nodes = first.numel() - 1, edges = token.numel();
  if (first.device().is_cpu()) {
    const int32_t* f = first.const_data_ptr<int32_t>();
    const int32_t* tk = token.const_data_ptr<int32_t>();
    const int32_t* nd = node.const_data_ptr<int32_t>();
    TORCH_CHECK_VALUE(f[0] == 0 && f[nodes] == edges, kFn, ": ", what, ": first must run from 0 to ", edges);
    for (int64_t i = 0; i < nodes; ++i) {
      TORCH_CHECK_VALUE(f[i] <= f[i + 1], kFn, ": ", what, ": first must not decrease");
    }
    for (int64_t e = 0; e < edges; ++e) {
      TORCH_CHECK_VALUE(tk[e] >= 0 && tk[e] < C && nd[e] > 0 && nd[e] < nodes, kFn, ": ", what,
                        ": edge ", e, " has token ", tk[e], " or node ", nd[e], " out of range");
    }
  }
  TORCH_CHECK_VALUE(nodes < (int64_t(1) << 31) - 1 && edges < (int64_t(1) << 31), kFn, ": ", what, " is too large");
  return {first.const_data_ptr<int32_t>(), token.const_data_ptr<int32_t>(), node.const_data_ptr<int32_t>(),
          static_cast<int32_t>(nodes), static_cast<int32_t>(edges)};
}

}  // namespace

lm::Fusion make_fusion(const at::Tensor& log_probs, at::TensorList lm_tables, at::IntArrayRef lm_info,
                       at::TensorList lexicon, at::TensorList hotwords, int64_t word_delimiter,
                       double lm_weight, double insertion_bonus, double max_gain) {
  const int64_t C = log_probs.size(2);
  lm::Fusion f{};
  TORCH_CHECK_VALUE(word_delimiter >= -1 && word_delimiter < C, kFn, ": word_delimiter = ", word_delimiter,
                    " must be -1 or a class id below C = ", C);
  TORCH_CHECK_VALUE(std::isfinite(lm_weight) && lm_weight >= 0, kFn, ": lm_weight = ", lm_weight,
                    " must be a finite number >= 0");
  TORCH_CHECK_VALUE(std::isfinite(insertion_bonus), kFn, ": insertion_bonus = ", insertion_bonus,
                    " must be finite");
  TORCH_CHECK_VALUE(std::isfinite(max_gain) && max_gain >= 0, kFn, ": max_gain = ", max_gain,
                    " must be a finite number >= 0");
  f.delimiter = static_cast<int32_t>(word_delimiter);
  f.alpha = lm_weight;
  f.beta = insertion_bonus;
  f.max_gain = max_gain;
  TORCH_CHECK_VALUE(lm_tables.empty() || lm_tables.size() == 7, kFn, ": lm_tables must hold 0 or 7 tensors, got ",
                    lm_tables.size());
  if (!lm_tables.empty()) {
    TORCH_CHECK_VALUE(lm_info.size() == 6, kFn, ": lm_info must hold 6 integers, got ", lm_info.size());
    const at::Tensor &keys = lm_tables[0], &values = lm_tables[1], &units = lm_tables[2];
    check_tensor(keys, log_probs, at::kLong, "the LM's keys");
    check_tensor(values, log_probs, at::kFloat, "the LM's values");
    check_tensor(units, log_probs, at::kInt, "the LM's token units");
    const int64_t order = lm_info[0], mask = lm_info[5];
    TORCH_CHECK_VALUE(order >= 1 && order <= lm::kMaxOrder, kFn, ": the LM's order ", order, " must be in [1, ",
                      lm::kMaxOrder, "]");
    TORCH_CHECK_VALUE(keys.dim() == 1 && values.dim() == 2 && values.size(0) == keys.size(0) && values.size(1) == 2,
                      kFn, ": the LM's keys must be (S,) and values (S, 2)");
    TORCH_CHECK_VALUE(mask >= 0 && ((mask + 1) & mask) == 0 && mask + 1 <= keys.size(0), kFn,
                      ": the LM's mask ", mask, " must be a power of two minus one below the table size ",
                      keys.size(0));
    f.has_lm = true;
    f.word_lm = lm_info[4] != 0;
    f.table = {keys.const_data_ptr<int64_t>(), values.const_data_ptr<float>(), keys.size(0),
               static_cast<uint64_t>(mask), static_cast<int32_t>(order), static_cast<int32_t>(lm_info[3])};
    f.bos = static_cast<int32_t>(lm_info[1]);
    f.eos = static_cast<int32_t>(lm_info[2]);
    f.unk = static_cast<int32_t>(lm_info[3]);
    if (f.word_lm) {
      f.vocab = check_trie(lm_tables[3], lm_tables[4], lm_tables[5], log_probs, C, "the LM's word trie");
      check_tensor(lm_tables[6], log_probs, at::kInt, "the LM's trie words");
      TORCH_CHECK_VALUE(lm_tables[6].numel() == lm_tables[3].numel() - 1, kFn,
                        ": the LM's trie words must have one entry per node");
      f.vocab_word = lm_tables[6].const_data_ptr<int32_t>();
    } else {
      TORCH_CHECK_VALUE(units.dim() == 1 && units.size(0) == C, kFn, ": the LM's token units must be (C,) = (", C,
                        ",), got ", units.sizes());
      f.token_units = units.const_data_ptr<int32_t>();
    }
  }
  TORCH_CHECK_VALUE(lexicon.empty() || lexicon.size() == 4, kFn, ": lexicon must hold 0 or 4 tensors");
  if (!lexicon.empty()) {
    f.has_lexicon = true;
    f.lexicon = check_trie(lexicon[0], lexicon[1], lexicon[2], log_probs, C, "the lexicon");
    check_tensor(lexicon[3], log_probs, at::kInt, "the lexicon's word ends");
    TORCH_CHECK_VALUE(lexicon[3].numel() == lexicon[0].numel() - 1, kFn,
                      ": the lexicon's word ends must have one entry per node");
    f.lexicon_end = lexicon[3].const_data_ptr<int32_t>();
  }
  TORCH_CHECK_VALUE(hotwords.empty() || hotwords.size() == 5, kFn, ": hotwords must hold 0 or 5 tensors");
  if (!hotwords.empty()) {
    f.has_hotwords = true;
    f.hot = check_trie(hotwords[0], hotwords[1], hotwords[2], log_probs, C, "the hotwords");
    for (int i = 3; i < 5; ++i) {
      check_tensor(hotwords[i], log_probs, at::kFloat, "the hotwords' bonuses");
      TORCH_CHECK_VALUE(hotwords[i].numel() == hotwords[0].numel() - 1, kFn,
                        ": the hotwords' bonuses must have one entry per node");
    }
    f.hot_partial = hotwords[3].const_data_ptr<float>();
    f.hot_full = hotwords[4].const_data_ptr<float>();
  }
  return f;
}

}  // namespace ctcx
