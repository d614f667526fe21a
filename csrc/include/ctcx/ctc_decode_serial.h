// The single-thread group of ctc_decode.h, for the CPU (one group per sample,
// samples in parallel): the same step, with sequential primitives that do
// less work than the cooperative ones (a hash table instead of K^2 parent
// tests, partial sorting instead of a bitonic network, a heap for the
// frame's best tokens). Results are identical: every order is total.
#pragma once

#include <algorithm>
#include <vector>

#include "ctcx/ctc_decode.h"

namespace ctcx {
namespace decode {

class SerialGroup {
 public:
  int rank() const { return 0; }
  int size() const { return 1; }
  void sync() const {}

  int32_t exclusive_scan(int32_t* v, int32_t n, int32_t* /*tmp*/) const {
    int32_t run = 0;
    for (int32_t i = 0; i < n; ++i) {
      const int32_t x = v[i];
      v[i] = run;
      run += x;
    }
    return run;
  }

  // Open addressing, linear probing; entries inserted in beam order, so a
  // lookup finds the first match, like coop_find_parents.
  template <typename acc_t>
  void find_parents(const BeamView<acc_t>& b, int32_t nb, int32_t* parent) {
    const size_t slots = static_cast<size_t>(pow2_ceil(2 * (nb > 0 ? nb : 1)));
    const size_t mask = slots - 1;
    table_.assign(slots, -1);
    for (int32_t j = 0; j < nb; ++j) {
      size_t at = b.hash[j] & mask;
      while (table_[at] >= 0) at = (at + 1) & mask;
      table_[at] = j;
    }
    for (int32_t k = 0; k < nb; ++k) {
      parent[k] = -1;
      if (b.len[k] == 0) continue;
      for (size_t at = b.parent_hash[k] & mask; table_[at] >= 0; at = (at + 1) & mask) {
        const int32_t j = table_[at];
        if (b.hash[j] == b.parent_hash[k] && b.len[j] == b.len[k] - 1) {
          parent[k] = j;
          break;
        }
      }
    }
  }

  template <typename acc_t>
  void select_top(Candidate<acc_t>* c, int32_t n, int32_t k) const {
    auto order = [](const Candidate<acc_t>& a, const Candidate<acc_t>& b) { return better(a, b); };
    if (k < n) {
      std::nth_element(c, c + k, c + n, order);
      n = k;
    }
    std::sort(c, c + n, order);
  }

  // buf needs m entries here (the heap); cap and shared_int are unused.
  template <typename scalar_t, typename acc_t>
  int32_t top_tokens(const scalar_t* row, int64_t C, int32_t blank, const bool* allowed, int32_t m,
                     Candidate<acc_t>* buf, int32_t /*cap*/, int32_t* tok_out, acc_t* lp_out,
                     int32_t* /*shared_int*/) const {
    if (m == 0) return 0;
    // A heap with the worst kept token on top: most tokens lose one comparison.
    auto order = [](const Candidate<acc_t>& a, const Candidate<acc_t>& b) { return better(a, b); };
    int32_t n = 0;
    for (int64_t c = 0; c < C; ++c) {
      if (c == blank || (allowed != nullptr && !allowed[c])) continue;
      const acc_t v = read_lp<acc_t>(row, c);
      if (!(v > neg_inf<acc_t>())) continue;
      const Candidate<acc_t> x{v, static_cast<int32_t>(c)};
      if (n < m) {
        buf[n++] = x;
        std::push_heap(buf, buf + n, order);
      } else if (better(x, buf[0])) {
        std::pop_heap(buf, buf + n, order);
        buf[n - 1] = x;
        std::push_heap(buf, buf + n, order);
      }
    }
    std::sort_heap(buf, buf + n, order);
    for (int32_t i = 0; i < n; ++i) {
      tok_out[i] = buf[i].id;
      lp_out[i] = buf[i].score;
    }
    return n;
  }

 private:
  std::vector<int32_t> table_;
};

}  // namespace decode
}  // namespace ctcx
