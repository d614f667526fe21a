// Back-off n-gram queries on the flat tables of ctcx.NgramLM (ctcx/lm.py),
// shared by the host and the device.
//
// The table holds every n-gram of the ARPA file under a 64-bit hash of its
// units taken newest first (the predicted unit, then its context backwards),
// so the queries of one unit at every back-off level extend one hash each:
//   full_j = hash(w, h_m, ..., h_{m-j+1}),  ctx_j = hash(h_m, ..., h_{m-j+1}).
// ln P(w | h_1..h_m) = p(full_J) + sum_{j > J} bow(ctx_j), J the longest j
// whose n-gram is listed (Katz back-off, as KenLM and SRILM compute it; a
// context that is not listed has bow 0). Open addressing with linear probing:
// a key lives at or after its home slot (hash & mask) with no empty slot in
// between (ctcx/lm.py builds it that way); 0 marks an empty slot. A false
// match needs two 64-bit hashes to collide (odds about 1e-19 per query for
// a million n-grams).
#pragma once

#include <cstdint>

#include "ctcx/log_math.h"

namespace ctcx {
namespace lm {

constexpr int32_t kMaxOrder = 6;
constexpr uint64_t kSeed = 0x6A09E667F3BCC908ull;

// ctcx/lm.py's _extend: one splitmix64-style mixing step per unit.
CTCX_HOST_DEVICE uint64_t ngram_extend(uint64_t h, int32_t unit) {
  uint64_t z = h + 0x9E3779B97F4A7C15ull * (static_cast<uint64_t>(static_cast<int64_t>(unit)) + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct NgramTable {
  const int64_t* keys;  // (size) hashes, 0 = empty
  const float* values;  // (size, 2) ln p, ln bow
  int64_t size;         // slots, at least mask + 2
  uint64_t mask;        // home slot = hash & mask
  int32_t order;
  int32_t unk;  // unit id of <unk>: the unigram that stands for unlisted units
};

// The slot of hash h, or -1 when it is not listed.
CTCX_HOST_DEVICE int64_t ngram_find(const NgramTable& t, uint64_t h) {
  const uint64_t k64 = h == 0 ? 1 : h;
  const int64_t key = static_cast<int64_t>(k64);
  for (int64_t i = static_cast<int64_t>(k64 & t.mask); i < t.size; ++i) {
    const int64_t k = t.keys[i];
    if (k == key) return i;
    if (k == 0) return -1;
  }
  return -1;
}

// ln P(unit | context), context[0..m) oldest first (m < order).
template <typename acc_t>
CTCX_HOST_DEVICE acc_t ngram_query(const NgramTable& t, const int32_t* context, int32_t m,
                                   int32_t unit) {
  uint64_t full = ngram_extend(kSeed, unit), ctx = kSeed;
  int64_t slot = ngram_find(t, full);
  if (slot < 0) slot = ngram_find(t, ngram_extend(kSeed, t.unk));
  acc_t best = slot >= 0 ? static_cast<acc_t>(t.values[2 * slot]) : neg_inf<acc_t>();
  acc_t bows = 0;  // sum of the back-off weights of contexts longer than the match
  for (int32_t j = 1; j <= m; ++j) {
    const int32_t h = context[m - j];
    full = ngram_extend(full, h);
    ctx = ngram_extend(ctx, h);
    const int64_t c = ngram_find(t, ctx);
    const acc_t bow = c >= 0 ? static_cast<acc_t>(t.values[2 * c + 1]) : acc_t(0);
    const int64_t f = ngram_find(t, full);
    if (f >= 0) {
      best = static_cast<acc_t>(t.values[2 * f]);
      bows = 0;
    } else {
      bows += bow;
    }
  }
  return best + bows;
}

// A token trie in CSR form (ctcx.NgramLM's words, ctcx.Lexicon, hotwords):
// node n's children sit at [first[n], first[n + 1]) of token/node, sorted by token.
// Lookups stay in bounds whatever the arrays hold (CUDA tries are not
// checked value by value on the host): offsets are clamped into [0, edges]
// and a child outside [0, nodes) reads as absent.
struct Trie {
  const int32_t* first;
  const int32_t* token;
  const int32_t* node;
  int32_t nodes;  // entries of every per-node array; first has nodes + 1
  int32_t edges;  // entries of token and node
};

CTCX_HOST_DEVICE int32_t clamp_edge(int32_t e, int32_t edges) { return e < 0 ? 0 : (e > edges ? edges : e); }

// The child of node n by token c, or -1 (also for n < 0).
CTCX_HOST_DEVICE int32_t trie_child(const Trie& t, int32_t n, int32_t c) {
  if (n < 0 || n >= t.nodes) return -1;
  const int32_t begin = clamp_edge(t.first[n], t.edges), end = clamp_edge(t.first[n + 1], t.edges);
  int32_t lo = begin, hi = end;
  while (lo < hi) {
    const int32_t mid = lo + (hi - lo) / 2;
    if (t.token[mid] < c) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  const int32_t child = lo < end && t.token[lo] == c ? t.node[lo] : -1;
  return child >= 0 && child < t.nodes ? child : -1;
}

}  // namespace lm
}  // namespace ctcx
