// Runs the cooperative code of ctcx/ctc_decode.h (what each CUDA block runs:
// coop_top_tokens, the frame step with coop_exclusive_scan, coop_find_parents
// and coop_select_top, write_hypothesis) with real threads and a barrier for
// sync(), and checks that it returns exactly what the CPU's pruned step
// (ctcx/ctc_decode_serial.h) returns on random problems: the two
// implementations of one search check each other, bit for bit. Built by
// tests/test_ctc_decode_threads.py, under ThreadSanitizer when the compiler
// has it, so a missing barrier shows up as a data race or a mismatch without
// a GPU.
//
//   g++ -std=c++17 -O1 -pthread -fsanitize=thread -I csrc/include tests/cpp/ctc_decode_threads.cpp
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "ctcx/ctc_decode.h"
#include "ctcx/ctc_decode_serial.h"

namespace {

using namespace ctcx::decode;

class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const long generation = generation_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation != generation_; });
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  const int count_;
  int arrived_ = 0;
  long generation_ = 0;
};

// One emulated CUDA thread of a block.
struct ThreadGroup {
  int r, n;
  Barrier* barrier;
  int rank() const { return r; }
  int size() const { return n; }
  void sync() const { barrier->arrive_and_wait(); }
  int32_t exclusive_scan(int32_t* v, int32_t count, int32_t* tmp) {
    return coop_exclusive_scan(*this, v, count, tmp);
  }
  template <typename acc_t>
  void find_parents(const BeamView<acc_t>& b, int32_t nb, int32_t* parent) {
    coop_find_parents(*this, b, nb, parent);
  }
  template <typename acc_t>
  void select_top(Candidate<acc_t>* c, int32_t count, int32_t k) {
    coop_select_top(*this, c, count, k);
  }
  template <typename scalar_t, typename acc_t>
  int32_t top_tokens(const scalar_t* row, int64_t C, int32_t blank, const bool* allowed, int32_t m,
                     Candidate<acc_t>* buf, int32_t cap, int32_t* tok, acc_t* lp, int32_t* shared) {
    return coop_top_tokens(*this, row, C, blank, allowed, m, buf, cap, tok, lp, shared);
  }
};

template <typename acc_t>
struct Problem {
  int32_t T, frames, C, K, top_k;
  SearchConfig cfg;
  acc_t log_skip;
  std::vector<acc_t> lp;  // (T, C)
  std::vector<char> allowed;  // empty: all allowed
};

template <typename acc_t>
struct Result {
  std::vector<int64_t> tokens, timesteps, lengths;
  std::vector<acc_t> scores;
  bool operator==(const Result& o) const {
    return tokens == o.tokens && timesteps == o.timesteps && lengths == o.lengths &&
           std::memcmp(scores.data(), o.scores.data(), scores.size() * sizeof(acc_t)) == 0;
  }
};

// Shared memory of one block (or of the CPU's task).
template <typename acc_t>
struct Memory {
  std::vector<uint64_t> beam_words, scratch_words;
  BeamView<acc_t> beams[2];
  StepScratch<acc_t> scratch;
  std::vector<Candidate<acc_t>> buf;
  std::vector<int32_t> top_tok, hist_pred, hist_tok;
  std::vector<acc_t> top_lp;
  int32_t shared[2];

  Memory(const Problem<acc_t>& p, int group, int32_t cap)
      : beam_words(2 * beam_bytes<acc_t>(p.K) / 8 + 1),
        scratch_words(scratch_bytes<acc_t>(p.K, p.cfg.list_size, group) / 8 + 1),
        buf(cap > p.cfg.list_size ? cap : p.cfg.list_size),
        top_tok(p.cfg.list_size),
        hist_pred(static_cast<size_t>(p.frames) * p.K),
        hist_tok(static_cast<size_t>(p.frames) * p.K),
        top_lp(p.cfg.list_size) {
    Carver b{reinterpret_cast<unsigned char*>(beam_words.data())};
    beams[0] = carve_beam<acc_t>(b, p.K);
    beams[1] = carve_beam<acc_t>(b, p.K);
    Carver s{reinterpret_cast<unsigned char*>(scratch_words.data())};
    scratch = carve_scratch<acc_t>(s, p.K, p.cfg.list_size, group);
  }
};

// The per-sample search as the CUDA kernels run it (top tokens, then the
// step, for every frame; then the hypotheses), by one member of the group.
template <class Group, typename acc_t>
void search(Group& g, const Problem<acc_t>& p, Memory<acc_t>& mem, int32_t cap, Result<acc_t>& out) {
  const bool* allowed = p.allowed.empty() ? nullptr : reinterpret_cast<const bool*>(p.allowed.data());
  if (g.rank() == 0) mem.shared[0] = init_beam(mem.beams[0], p.frames, p.cfg.min_length);
  g.sync();
  int32_t nb = mem.shared[0];
  g.sync();
  for (int32_t t = 0; t < p.frames; ++t) {
    Frame<acc_t, acc_t> f;
    f.row = p.lp.data() + static_cast<size_t>(t) * p.C;
    f.top_tok = mem.top_tok.data();
    f.top_lp = mem.top_lp.data();
    f.remaining = p.frames - 1 - t;
    f.top_count = read_lp<acc_t>(f.row, p.cfg.blank) > p.log_skip
                      ? -1
                      : g.top_tokens(f.row, p.C, p.cfg.blank, allowed, p.cfg.list_size,
                                     mem.buf.data(), cap, mem.top_tok.data(), mem.top_lp.data(),
                                     &mem.shared[1]);
    nb = beam_step(g, p.cfg, f, nb, mem.beams[t & 1], mem.beams[(t + 1) & 1], mem.scratch,
                   mem.hist_pred.data() + static_cast<size_t>(t) * p.K,
                   mem.hist_tok.data() + static_cast<size_t>(t) * p.K);
  }
  for (int32_t i = g.rank(); i < p.top_k; i += g.size()) {
    write_hypothesis(i, nb, mem.beams[p.frames & 1], mem.hist_pred.data(), mem.hist_tok.data(),
                     p.K, p.frames, p.T, out.tokens.data() + static_cast<size_t>(i) * p.T,
                     out.timesteps.data() + static_cast<size_t>(i) * p.T, &out.lengths[i],
                     &out.scores[i]);
  }
}

template <typename acc_t>
Result<acc_t> empty_result(const Problem<acc_t>& p) {
  Result<acc_t> r;
  r.tokens.assign(static_cast<size_t>(p.top_k) * p.T, -7);
  r.timesteps.assign(static_cast<size_t>(p.top_k) * p.T, -7);
  r.lengths.assign(p.top_k, -7);
  r.scores.assign(p.top_k, acc_t(-7));
  return r;
}

int64_t quiet_frames = 0;  // frames the pruned step left as they were (its fast path)

// The CPU op's search: the pruned step, frame by frame.
template <typename acc_t>
Result<acc_t> run_pruned(const Problem<acc_t>& p) {
  Memory<acc_t> mem(p, 1, p.cfg.list_size);
  Result<acc_t> out = empty_result(p);
  const bool* allowed = p.allowed.empty() ? nullptr : reinterpret_cast<const bool*>(p.allowed.data());
  PrunedStep<acc_t> step;
  std::vector<int32_t> parents(p.K);
  KnownParents known{parents.data(), false};
  int32_t nb = init_beam(mem.beams[0], p.frames, p.cfg.min_length);
  for (int32_t t = 0; t < p.frames; ++t) {
    const acc_t* row = p.lp.data() + static_cast<size_t>(t) * p.C;
    const bool extend = !(read_lp<acc_t>(row, p.cfg.blank) > p.log_skip);
    nb = step.step(p.cfg, row, p.C, allowed, extend, p.frames - 1 - t, nb, mem.beams[t & 1],
                   mem.beams[(t + 1) & 1], mem.hist_pred.data() + static_cast<size_t>(t) * p.K,
                   mem.hist_tok.data() + static_cast<size_t>(t) * p.K, known);
  }
  quiet_frames += step.quiet_frames();
  for (int32_t i = 0; i < p.top_k; ++i) {
    write_hypothesis(i, nb, mem.beams[p.frames & 1], mem.hist_pred.data(), mem.hist_tok.data(),
                     p.K, p.frames, p.T, out.tokens.data() + static_cast<size_t>(i) * p.T,
                     out.timesteps.data() + static_cast<size_t>(i) * p.T, &out.lengths[i],
                     &out.scores[i]);
  }
  return out;
}

template <typename acc_t>
Result<acc_t> run_threads(const Problem<acc_t>& p, int threads, int32_t cap) {
  Memory<acc_t> mem(p, threads, cap);
  Result<acc_t> out = empty_result(p);
  Barrier barrier(threads);
  std::vector<std::thread> pool;
  for (int r = 0; r < threads; ++r) {
    pool.emplace_back([&, r] {
      ThreadGroup g{r, threads, &barrier};
      search(g, p, mem, cap, out);
    });
  }
  for (auto& th : pool) th.join();
  return out;
}

template <typename acc_t>
Problem<acc_t> random_problem(std::mt19937& rng) {
  auto pick = [&](std::initializer_list<int> v) {
    return *(v.begin() + std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng));
  };
  Problem<acc_t> p;
  p.T = pick({0, 1, 2, 5, 12, 20});
  p.frames = p.T == 0 ? 0 : std::uniform_int_distribution<int>(p.T / 2, p.T)(rng);
  p.C = pick({1, 2, 3, 6, 40, 300});
  p.K = pick({1, 2, 3, 10, 33, 64});
  p.top_k = std::uniform_int_distribution<int>(1, p.K)(rng);
  const int32_t blank = std::uniform_int_distribution<int>(0, p.C - 1)(rng);
  const int32_t min_length = pick({0, 0, 1, 3, 8});
  const int32_t max_length = pick({1, 2, 4, 30, 30});
  p.cfg = {p.K, token_list_size(p.K, p.C), blank, min_length,
           max_length < p.T ? max_length : p.T};
  p.log_skip = pick({0, 0, 1}) ? std::numeric_limits<acc_t>::infinity() : std::log(acc_t(0.9));
  const double scale = pick({1, 3, 8});
  std::normal_distribution<double> normal(0.0, scale);
  // Half the problems look like a trained model's output: each frame peaked
  // on the blank or on one token (most frames then leave the beam as it was).
  const bool peaked = pick({0, 1});
  std::uniform_int_distribution<int32_t> any_class(0, p.C - 1);
  p.lp.resize(static_cast<size_t>(p.T) * p.C);
  for (int32_t t = 0; t < p.T; ++t) {
    acc_t* row = p.lp.data() + static_cast<size_t>(t) * p.C;
    double m = -1e300, sum = 0;
    std::vector<double> x(p.C);
    for (auto& v : x) v = normal(rng);
    if (peaked) x[pick({0, 0, 1}) ? blank : any_class(rng)] += 6 * scale;
    for (double v : x) m = std::max(m, v);
    for (double v : x) sum += std::exp(v - m);
    for (int32_t c = 0; c < p.C; ++c) row[c] = static_cast<acc_t>(x[c] - m - std::log(sum));
    if (p.C > 2 && pick({0, 0, 0, 1})) row[(t * 7) % p.C] = -std::numeric_limits<acc_t>::infinity();
    if (p.C > 3 && pick({0, 0, 0, 0, 1})) row[(t * 5 + 1) % p.C] = std::numeric_limits<acc_t>::quiet_NaN();
    if (p.C > 4 && pick({0, 0, 0, 0, 0, 0, 1})) row[(t * 3 + 2) % p.C] = std::numeric_limits<acc_t>::infinity();
  }
  if (pick({0, 0, 1})) {
    p.allowed.resize(p.C);
    for (auto& a : p.allowed) a = pick({0, 1, 1});
  }
  return p;
}

template <typename acc_t>
int check(std::mt19937& rng, int cases, const char* name) {
  int failures = 0;
  for (int i = 0; i < cases; ++i) {
    const Problem<acc_t> p = random_problem<acc_t>(rng);
    const Result<acc_t> want = run_pruned(p);
    const int32_t M = p.cfg.list_size;
    // The CUDA kernels' buffer, and the smallest one (many chunks per row).
    for (const int32_t cap : {top_tokens_capacity(M, p.C), M ? pow2_ceil(M + 1) : 0}) {
      for (const int threads : {1, 2, 5, 8}) {
        if (!(run_threads(p, threads, cap) == want)) {
          ++failures;
          std::printf("MISMATCH %s case %d: T=%d frames=%d C=%d K=%d top_k=%d blank=%d min=%d "
                      "max=%d threads=%d cap=%d\n",
                      name, i, p.T, p.frames, p.C, p.K, p.top_k, p.cfg.blank, p.cfg.min_length,
                      p.cfg.max_length, threads, cap);
        }
      }
    }
  }
  return failures;
}

// The decoders' float log-sum-exp, shift + log(1 + exp(d)) for the float
// difference d <= 0 (a table on [-17.5, 0], the larger side below it): its
// log(1 + exp(d)) part within 7e-8 of the true value, and in [0, 0.6932],
// the bound by which the pruned step skips it when a merged extension's
// dominance is settled. Checked for every 97th float in [-88, 0] (the range
// once for all 1,118,830,593 of them); double's exp and log likewise.
int check_log1p_exp() {
  int bad = 0;
  double worst = 0;
  for (uint32_t bits = 0x80000000u;; bits += 97) {
    float d;
    std::memcpy(&d, &bits, sizeof d);
    if (!(d >= -88.0f)) break;
    const float r = decode_log_add_exp(0.0f, d);
    const double err = std::fabs(static_cast<double>(r) - std::log1p(std::exp(static_cast<double>(d))));
    worst = err > worst ? err : worst;
    if (!(r >= 0.0f && r <= 0.6932f) || !(err < 7e-8)) {
      if (++bad < 5) std::printf("log(1 + exp(%.9g)) = %.9g: outside [0, 0.6932] or off by %.3g\n", d, r, err);
    }
  }
  for (double d = 0; d > -746; d -= 0.0078125) {  // double: exp(-inf.. 0] in [0, 1], std::log
    const double r = decode_log_add_exp(0.0, d);
    if (!(r >= 0.0 && r <= 0.6932) || !(std::fabs(r - std::log1p(std::exp(d))) < 1e-15)) ++bad;
  }
  std::printf("float log(1 + exp(d)): largest error %.3g\n", worst);
  return bad;
}

}  // namespace

int main(int argc, char** argv) {
  const int cases = argc > 1 ? std::atoi(argv[1]) : 40;
  std::mt19937 rng(1234);
  const int failures = check<float>(rng, cases, "float") + check<double>(rng, cases, "double") +
                       check_log1p_exp();
  if (failures) {
    std::printf("%d mismatches\n", failures);
    return 1;
  }
  std::printf("ok: %d problems, cooperative == pruned; %lld quiet frames\n", 2 * cases,
              static_cast<long long>(quiet_frames));
  return 0;
}
