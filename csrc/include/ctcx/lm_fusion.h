// Shallow fusion for CTC prefix beam search (Hannun et al. 2014, eq. 2): what
// a language model, a lexicon and hotwords add to a prefix's score, as a
// state carried by every prefix and updated once per emitted token. Shared
// by the host and the device; ctcx/beam_search.py documents the semantics
// and ctcx/_reference.py's lm_decode_brute_force is their reference.
//
// score(prefix) = ln P_ctc(prefix | x) + extra(state), extra = alpha ln P_lm
// + beta units + hotword bonus. A unit is a word for a word LM and a token
// otherwise. A char LM scores every token as it is emitted; a word LM
// scores a word when the delimiter after it is emitted (an empty word, from
// two delimiters in a row or a leading one, is not a word and scores
// nothing). At the end of a hypothesis (finish) a word LM scores the last
// word, and every LM scores </s>. A lexicon allows a token only while the
// current word stays a prefix of a lexicon word, the delimiter only after a
// complete word, and the end only after a complete word (so an empty
// hypothesis is refused). Hotwords: while the current word is a prefix of
// hotwords, it earns the largest weight x matched / length among them; a
// finished word (delimiter or end) keeps the weight of the hotword it equals,
// or nothing. Without a delimiter, the whole hypothesis is one word.
#pragma once

#include <cstdint>

#include "ctcx/log_math.h"
#include "ctcx/ngram_lm.h"

namespace ctcx {
namespace lm {

struct Fusion {
  bool has_lm;
  bool word_lm;              // the LM's unit is a word (else a token)
  NgramTable table;
  const int32_t* token_units;  // (C) char LM: class -> unit id
  Trie vocab;                  // word LM: its words spelled as tokens
  const int32_t* vocab_word;   // (nodes) word LM: unit id of the word ending there, or -1
  int32_t bos, eos, unk;
  bool has_lexicon;
  Trie lexicon;
  const int32_t* lexicon_end;  // (nodes) 1 where a lexicon word ends
  bool has_hotwords;
  Trie hot;
  const float* hot_partial;  // (nodes) bonus of a current word at this node
  const float* hot_full;     // (nodes) bonus of a finished word ending here (0: none)
  int32_t delimiter;         // class between words, -1: none
  double alpha, beta;
  double max_gain;  // an upper bound of extra(next) - extra(prev) over one token
};

// The fusion state of a prefix, besides its CTC probabilities.
template <typename acc_t>
struct FusionState {
  int32_t context[kMaxOrder - 1];  // the LM's last units, oldest first
  int32_t context_len;
  int32_t word_node;  // word LM: vocab trie node of the current word, -1: off the trie
  int32_t word_len;   // tokens of the current word
  int32_t lex_node;   // lexicon node of the current word
  int32_t hot_node;   // hotword node of the current word, -1: matches none
  int32_t units;
  acc_t lm;        // ln P_lm of the scored units (no weight)
  acc_t hot_done;  // hotword bonus of the finished words
};

template <typename acc_t>
CTCX_HOST_DEVICE void fusion_begin(const Fusion& f, FusionState<acc_t>& s) {
  s.context_len = 0;
  if (f.has_lm && f.table.order > 1) {
    s.context[0] = f.bos;
    s.context_len = 1;
  }
  s.word_node = 0;
  s.word_len = 0;
  s.lex_node = 0;
  s.hot_node = 0;
  s.units = 0;
  s.lm = 0;
  s.hot_done = 0;
}

template <typename acc_t>
CTCX_HOST_DEVICE acc_t fusion_extra(const Fusion& f, const FusionState<acc_t>& s) {
  acc_t e = static_cast<acc_t>(f.alpha) * s.lm + static_cast<acc_t>(f.beta) * static_cast<acc_t>(s.units) +
            s.hot_done;
  if (f.has_hotwords && s.hot_node >= 0) e += static_cast<acc_t>(f.hot_partial[s.hot_node]);
  return e;
}

template <typename acc_t>
CTCX_HOST_DEVICE void score_unit(const Fusion& f, FusionState<acc_t>& s, int32_t unit) {
  s.lm += ngram_query<acc_t>(f.table, s.context, s.context_len, unit);
  const int32_t keep = f.table.order - 1;
  if (keep == 0) return;
  if (s.context_len < keep) {
    s.context[s.context_len++] = unit;
  } else {
    for (int32_t i = 1; i < keep; ++i) s.context[i - 1] = s.context[i];
    s.context[keep - 1] = unit;
  }
}

template <typename acc_t>
CTCX_HOST_DEVICE int32_t current_word_unit(const Fusion& f, const FusionState<acc_t>& s) {
  const int32_t w = s.word_node >= 0 ? f.vocab_word[s.word_node] : -1;
  return w >= 0 ? w : f.unk;
}

// The state after emitting token c; false when the lexicon forbids it.
template <typename acc_t>
CTCX_HOST_DEVICE bool fusion_step(const Fusion& f, FusionState<acc_t>& s, int32_t c) {
  const bool boundary = c == f.delimiter;
  if (f.has_lexicon) {
    if (boundary) {
      if (!f.lexicon_end[s.lex_node]) return false;
      s.lex_node = 0;
    } else {
      s.lex_node = trie_child(f.lexicon, s.lex_node, c);
      if (s.lex_node < 0) return false;
    }
  }
  if (f.has_hotwords) {
    if (boundary) {
      if (s.hot_node >= 0) s.hot_done += static_cast<acc_t>(f.hot_full[s.hot_node]);
      s.hot_node = 0;
    } else {
      s.hot_node = trie_child(f.hot, s.hot_node, c);
    }
  }
  if (f.has_lm && f.word_lm) {
    if (boundary) {
      if (s.word_len > 0) {
        score_unit(f, s, current_word_unit(f, s));
        s.units += 1;
      }
      s.word_node = 0;
      s.word_len = 0;
    } else {
      s.word_node = trie_child(f.vocab, s.word_node, c);
      s.word_len += 1;
    }
  } else {
    if (f.has_lm) score_unit(f, s, f.token_units[c]);
    s.units += 1;
  }
  return true;
}

// The extra score of a finished hypothesis in state s (its last word and
// </s> scored, its hotword bonus settled); false when the lexicon refuses
// it. *lm_total receives its ln P_lm.
template <typename acc_t>
CTCX_HOST_DEVICE bool fusion_finish(const Fusion& f, const FusionState<acc_t>& s, acc_t* extra,
                                    acc_t* lm_total) {
  FusionState<acc_t> e = s;
  if (f.has_lexicon && !f.lexicon_end[e.lex_node]) return false;
  if (f.has_hotwords) {
    if (e.hot_node >= 0) e.hot_done += static_cast<acc_t>(f.hot_full[e.hot_node]);
    e.hot_node = -1;
  }
  if (f.has_lm) {
    if (f.word_lm && e.word_len > 0) {
      score_unit(f, e, current_word_unit(f, e));
      e.units += 1;
    }
    score_unit(f, e, f.eos);
  }
  *extra = fusion_extra(f, e);
  *lm_total = e.lm;
  return true;
}

}  // namespace lm
}  // namespace ctcx
