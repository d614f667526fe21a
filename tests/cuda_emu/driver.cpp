// Runs ctcx's CUDA launchers (ctc_loss_cuda, greedy_decode_cuda,
// beam_search_cuda, lm_beam_search_cuda, forced_align_cuda), compiled from the real csrc/cuda sources against the
// CUDA-on-CPU emulation, on cases written by tests/test_cuda_emulation.py.
//
//   driver CASE_DIR...
//
// Each CASE_DIR holds case.txt ("key value" lines) and the input arrays as
// raw little-endian .bin files; the driver fills the parameter struct as the
// CUDA glue (csrc/cuda/*.cpp) does, gives every output and workspace buffer
// an exact-size heap block full of garbage, runs the launcher and writes the
// outputs back as .bin files, then prints one line per case with the
// emulator's launch statistics. Any emulation error ends the process with
// exit code 86 (see ctcx_cuda_emulation.h).
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <iterator>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "ctc_decode_cuda.h"
#include "ctc_lm_beam_search_cuda.h"
#include "ctc_loss_cuda.h"
#include "forced_align_cuda.h"

namespace {

using Case = std::map<std::string, std::string>;

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "driver: %s\n", msg.c_str());
  std::exit(2);
}

Case read_case(const std::string& dir) {
  std::ifstream in(dir + "/case.txt");
  if (!in) die("cannot read " + dir + "/case.txt");
  Case c;
  std::string key, value;
  while (in >> key >> value) c[key] = value;
  return c;
}

int64_t num(const Case& c, const std::string& key) {
  auto it = c.find(key);
  if (it == c.end()) die("case.txt lacks " + key);
  return std::stoll(it->second);
}

double real(const Case& c, const std::string& key) {
  auto it = c.find(key);
  if (it == c.end()) die("case.txt lacks " + key);
  return it->second == "inf" ? std::numeric_limits<double>::infinity() : std::stod(it->second);
}

std::string text(const Case& c, const std::string& key) {
  auto it = c.find(key);
  if (it == c.end()) die("case.txt lacks " + key);
  return it->second;
}

// A "device" buffer: an exact-size heap block (so AddressSanitizer sees any
// access past it), 256-byte aligned like the caching allocator's.
struct Buffer {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Buffer(size_t n, uint64_t garbage_seed) : bytes(n) {
    if (posix_memalign(&p, 256, n ? n : 1) != 0) die("out of memory");
    ctcx_emu::fill_garbage(p, n, garbage_seed);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { std::free(p); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

std::unique_ptr<Buffer> load(const std::string& dir, const std::string& name) {
  std::ifstream in(dir + "/" + name + ".bin", std::ios::binary);
  if (!in) die("cannot read " + dir + "/" + name + ".bin");
  std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto b = std::make_unique<Buffer>(data.size(), 0);
  if (!data.empty()) std::memcpy(b->p, data.data(), data.size());
  return b;
}

void save(const std::string& dir, const std::string& name, const void* p, size_t bytes) {
  const std::string path = dir + "/" + name + ".bin";
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(p), static_cast<std::streamsize>(bytes));
  if (!out) die("cannot write " + path);
}

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) die(std::string(what) + " returned an error");
}

template <typename scalar_t, typename target_t>
void run_loss(const std::string& dir, const Case& c) {
  using acc_t = typename ctcx::cuda::AccType<scalar_t>::type;
  const auto input = load(dir, "input");
  const auto targets = load(dir, "targets");
  const auto il = load(dir, "input_lengths");
  const auto tl = load(dir, "target_lengths");
  ctcx::cuda::CtcLossParams<scalar_t, target_t> p{};
  p.input = input->as<scalar_t>();
  p.T = num(c, "T");
  p.N = num(c, "N");
  p.C = num(c, "C");
  p.input_stride_t = num(c, "stride_t");
  p.input_stride_n = num(c, "stride_n");
  p.logits = num(c, "logits") != 0;
  p.targets = targets->as<target_t>();
  p.padded = num(c, "padded") != 0;
  p.S = p.padded ? num(c, "S") : 0;
  p.numel = static_cast<int64_t>(targets->bytes / sizeof(target_t));
  p.input_lengths = il->as<int64_t>();
  p.target_lengths = tl->as<int64_t>();
  p.blank = num(c, "blank");
  p.zero_infinity = num(c, "zero_infinity") != 0;
  Buffer loss(static_cast<size_t>(p.N) * sizeof(acc_t), 11);
  p.loss = loss.as<acc_t>();
  const bool grad = num(c, "grad") != 0;
  std::unique_ptr<Buffer> grad_buf, weights;
  const size_t grad_elems = static_cast<size_t>(p.T * p.N * p.C);
  if (grad) {
    grad_buf = std::make_unique<Buffer>(grad_elems * sizeof(scalar_t), 12);
    weights = load(dir, "grad_weights");
    p.grad = grad_buf->as<scalar_t>();
    p.grad_stride_t = p.N * p.C;
    p.grad_stride_n = p.C;
    p.grad_weights = weights->as<acc_t>();
  }
  const ctcx::cuda::WorkspaceLayout layout = ctcx::cuda::workspace_layout(p);
  Buffer workspace(layout.total, 13);
  p.workspace = workspace.p;
  check(ctcx::cuda::ctc_loss_cuda(p, nullptr), "ctc_loss_cuda");
  save(dir, "loss", loss.p, loss.bytes);
  if (grad) save(dir, "grad", grad_buf->p, grad_buf->bytes);
  std::printf("alpha_shared_bytes=%zu ", layout.alpha_shared_bytes);
}

// The fields GreedyDecodeParams and BeamSearchParams share.
template <typename Params>
void read_decode_shape(Params& p, const Case& c, const Buffer& input_lengths) {
  p.T = num(c, "T");
  p.N = num(c, "N");
  p.C = num(c, "C");
  p.stride_t = num(c, "stride_t");
  p.stride_n = num(c, "stride_n");
  p.input_lengths = input_lengths.as<int64_t>();
}

template <typename scalar_t>
void run_greedy(const std::string& dir, const Case& c) {
  const auto input = load(dir, "input");
  const auto il = load(dir, "input_lengths");
  ctcx::cuda::GreedyDecodeParams<scalar_t> p{};
  p.log_probs = input->as<scalar_t>();
  read_decode_shape(p, c, *il);
  p.blank = num(c, "blank");
  Buffer tokens(static_cast<size_t>(p.N * p.T) * sizeof(int64_t), 21);
  Buffer lengths(static_cast<size_t>(p.N) * sizeof(int64_t), 22);
  Buffer best(static_cast<size_t>(p.N * p.T) * sizeof(int32_t), 23);
  p.tokens = tokens.as<int64_t>();
  p.lengths = lengths.as<int64_t>();
  p.best = best.as<int32_t>();
  check(ctcx::cuda::greedy_decode_cuda(p, nullptr), "greedy_decode_cuda");
  save(dir, "tokens", tokens.p, tokens.bytes);
  save(dir, "lengths", lengths.p, lengths.bytes);
}

template <typename scalar_t>
void run_beam(const std::string& dir, const Case& c) {
  using acc_t = typename ctcx::cuda::AccType<scalar_t>::type;
  const auto input = load(dir, "input");
  const auto il = load(dir, "input_lengths");
  ctcx::cuda::BeamSearchParams<scalar_t> p{};
  p.log_probs = input->as<scalar_t>();
  read_decode_shape(p, c, *il);
  p.cfg = ctcx::decode::make_config(num(c, "beam_width"), p.T, p.C, num(c, "blank"),
                                    num(c, "min_length"), num(c, "max_length"));
  p.top_k = static_cast<int32_t>(num(c, "top_k"));
  std::unique_ptr<Buffer> allowed;
  if (num(c, "allowed")) {
    allowed = load(dir, "allowed");
    p.allowed = allowed->as<bool>();
  }
  const double skip = real(c, "blank_skip_threshold");
  p.log_skip_threshold = static_cast<acc_t>(std::isinf(skip) ? skip : std::log(skip));
  const size_t K = static_cast<size_t>(p.top_k);
  Buffer tokens(static_cast<size_t>(p.N) * K * p.T * sizeof(int64_t), 31);
  Buffer timesteps(static_cast<size_t>(p.N) * K * p.T * sizeof(int64_t), 32);
  Buffer lengths(static_cast<size_t>(p.N) * K * sizeof(int64_t), 33);
  Buffer scores(static_cast<size_t>(p.N) * K * sizeof(acc_t), 34);
  p.tokens = tokens.as<int64_t>();
  p.timesteps = timesteps.as<int64_t>();
  p.lengths = lengths.as<int64_t>();
  p.scores = scores.as<acc_t>();
  p.max_shared_bytes = static_cast<size_t>(num(c, "max_shared_bytes"));
  p.token_list_budget = static_cast<size_t>(num(c, "token_list_budget"));
  const ctcx::cuda::BeamSearchLayout layout = ctcx::cuda::beam_search_layout(p);
  if (layout.top_shared_bytes > p.max_shared_bytes) die("top tokens need more shared memory");
  Buffer workspace(layout.total, 35);
  p.workspace = workspace.p;
  check(ctcx::cuda::beam_search_cuda(p, nullptr), "beam_search_cuda");
  save(dir, "tokens", tokens.p, tokens.bytes);
  save(dir, "timesteps", timesteps.p, timesteps.bytes);
  save(dir, "lengths", lengths.p, lengths.bytes);
  save(dir, "scores", scores.p, scores.bytes);
  std::printf("chunks=%lld scratch_in_shared=%d top_shared_bytes=%zu search_threads=%d ",
              static_cast<long long>((p.T + layout.chunk_frames - 1) / layout.chunk_frames),
              layout.scratch_in_shared ? 1 : 0, layout.top_shared_bytes, layout.search_threads);
}

// A token trie from PREFIX_first/_token/_node.bin; the buffers stay alive in `keep`.
ctcx::lm::Trie load_trie(const std::string& dir, const std::string& prefix,
                         std::vector<std::unique_ptr<Buffer>>& keep) {
  keep.push_back(load(dir, prefix + "_first"));
  keep.push_back(load(dir, prefix + "_token"));
  keep.push_back(load(dir, prefix + "_node"));
  const size_t k = keep.size();
  return {keep[k - 3]->as<int32_t>(), keep[k - 2]->as<int32_t>(), keep[k - 1]->as<int32_t>(),
          static_cast<int32_t>(keep[k - 3]->bytes / 4 - 1), static_cast<int32_t>(keep[k - 2]->bytes / 4)};
}

template <typename scalar_t>
void run_lm_beam(const std::string& dir, const Case& c) {
  using acc_t = typename ctcx::cuda::AccType<scalar_t>::type;
  const auto input = load(dir, "input");
  const auto il = load(dir, "input_lengths");
  ctcx::cuda::LmBeamSearchParams<scalar_t> p{};
  p.log_probs = input->as<scalar_t>();
  read_decode_shape(p, c, *il);
  p.cfg = ctcx::decode::make_config(num(c, "beam_width"), p.T, p.C, num(c, "blank"),
                                    num(c, "min_length"), num(c, "max_length"));
  p.top_k = static_cast<int32_t>(num(c, "top_k"));
  std::vector<std::unique_ptr<Buffer>> keep;
  if (num(c, "allowed")) {
    keep.push_back(load(dir, "allowed"));
    p.allowed = keep.back()->as<bool>();
  }
  const double skip = real(c, "blank_skip_threshold");
  p.log_skip_threshold = static_cast<acc_t>(std::isinf(skip) ? skip : std::log(skip));
  p.beam_threshold = static_cast<acc_t>(real(c, "beam_threshold"));
  ctcx::lm::Fusion& f = p.fusion;
  f.delimiter = static_cast<int32_t>(num(c, "delimiter"));
  f.alpha = real(c, "lm_weight");
  f.beta = real(c, "insertion_bonus");
  f.max_gain = real(c, "max_gain");
  if (num(c, "has_lm")) {
    f.has_lm = true;
    f.word_lm = num(c, "word_lm") != 0;
    keep.push_back(load(dir, "lm_keys"));
    keep.push_back(load(dir, "lm_values"));
    f.table = {keep[keep.size() - 2]->as<int64_t>(), keep.back()->as<float>(),
               static_cast<int64_t>(keep[keep.size() - 2]->bytes / 8), static_cast<uint64_t>(num(c, "mask")),
               static_cast<int32_t>(num(c, "order")), static_cast<int32_t>(num(c, "unk"))};
    f.bos = static_cast<int32_t>(num(c, "bos"));
    f.eos = static_cast<int32_t>(num(c, "eos"));
    f.unk = static_cast<int32_t>(num(c, "unk"));
    if (f.word_lm) {
      f.vocab = load_trie(dir, "vocab", keep);
      keep.push_back(load(dir, "vocab_word"));
      f.vocab_word = keep.back()->as<int32_t>();
    } else {
      keep.push_back(load(dir, "lm_units"));
      f.token_units = keep.back()->as<int32_t>();
    }
  }
  if (num(c, "has_lexicon")) {
    f.has_lexicon = true;
    f.lexicon = load_trie(dir, "lex", keep);
    keep.push_back(load(dir, "lex_end"));
    f.lexicon_end = keep.back()->as<int32_t>();
  }
  if (num(c, "has_hotwords")) {
    f.has_hotwords = true;
    f.hot = load_trie(dir, "hot", keep);
    keep.push_back(load(dir, "hot_partial"));
    f.hot_partial = keep.back()->as<float>();
    keep.push_back(load(dir, "hot_full"));
    f.hot_full = keep.back()->as<float>();
  }
  const size_t K = static_cast<size_t>(p.top_k);
  Buffer tokens(static_cast<size_t>(p.N) * K * p.T * sizeof(int64_t), 41);
  Buffer timesteps(static_cast<size_t>(p.N) * K * p.T * sizeof(int64_t), 42);
  Buffer lengths(static_cast<size_t>(p.N) * K * sizeof(int64_t), 43);
  Buffer scores(static_cast<size_t>(p.N) * K * sizeof(acc_t), 44);
  Buffer ctc_scores(static_cast<size_t>(p.N) * K * sizeof(acc_t), 45);
  Buffer lm_scores(static_cast<size_t>(p.N) * K * sizeof(acc_t), 46);
  p.tokens = tokens.as<int64_t>();
  p.timesteps = timesteps.as<int64_t>();
  p.lengths = lengths.as<int64_t>();
  p.scores = scores.as<acc_t>();
  p.ctc_scores = ctc_scores.as<acc_t>();
  p.lm_scores = lm_scores.as<acc_t>();
  const ctcx::cuda::LmBeamSearchLayout layout = ctcx::cuda::lm_beam_search_layout(p);
  Buffer workspace(layout.total, 47);
  p.workspace = workspace.p;
  check(ctcx::cuda::lm_beam_search_cuda(p, nullptr), "lm_beam_search_cuda");
  save(dir, "tokens", tokens.p, tokens.bytes);
  save(dir, "timesteps", timesteps.p, timesteps.bytes);
  save(dir, "lengths", lengths.p, lengths.bytes);
  save(dir, "scores", scores.p, scores.bytes);
  save(dir, "ctc_scores", ctc_scores.p, ctc_scores.bytes);
  save(dir, "lm_scores", lm_scores.p, lm_scores.bytes);
  std::printf("threads=%d candidates=%d ", layout.threads, layout.candidates);
}

template <typename scalar_t>
void run_align(const std::string& dir, const Case& c) {
  using acc_t = typename ctcx::cuda::AccType<scalar_t>::type;
  const auto input = load(dir, "input");
  const auto il = load(dir, "input_lengths");
  const auto targets = load(dir, "targets");
  const auto tl = load(dir, "target_lengths");
  ctcx::cuda::ForcedAlignParams<scalar_t> p{};
  p.log_probs = input->as<scalar_t>();
  read_decode_shape(p, c, *il);
  p.targets = targets->as<int64_t>();
  p.S = num(c, "S");
  p.target_lengths = tl->as<int64_t>();
  p.blank = num(c, "blank");
  std::unique_ptr<Buffer> star_values, star_classes;
  if (num(c, "star")) {
    star_values = load(dir, "star_values");
    star_classes = load(dir, "star_classes");
    p.star_values = star_values->as<acc_t>();
    p.star_classes = star_classes->as<int64_t>();
    p.K = num(c, "K");
  }
  Buffer labels(static_cast<size_t>(p.N * p.T) * sizeof(int64_t), 41);
  Buffer scores(static_cast<size_t>(p.N * p.T) * sizeof(scalar_t), 42);
  Buffer path(static_cast<size_t>(p.N) * sizeof(acc_t), 43);
  Buffer workspace(ctcx::cuda::forced_align_workspace_bytes(p), 44);
  p.labels = labels.as<int64_t>();
  p.scores = scores.as<scalar_t>();
  p.path_scores = path.as<acc_t>();
  p.workspace = workspace.p;
  check(ctcx::cuda::forced_align_cuda(p, nullptr), "forced_align_cuda");
  save(dir, "labels", labels.p, labels.bytes);
  save(dir, "scores", scores.p, scores.bytes);
  save(dir, "path_scores", path.p, path.bytes);
  std::printf("workspace_bytes=%zu ", workspace.bytes);
}

template <template <typename> class Run>
void by_dtype(const std::string& dtype, const std::string& dir, const Case& c) {
  if (dtype == "f16") return Run<c10::Half>::go(dir, c);
  if (dtype == "bf16") return Run<c10::BFloat16>::go(dir, c);
  if (dtype == "f32") return Run<float>::go(dir, c);
  if (dtype == "f64") return Run<double>::go(dir, c);
  die("unknown dtype " + dtype);
}

template <typename scalar_t>
struct Loss {
  static void go(const std::string& dir, const Case& c) {
    if (text(c, "target_dtype") == "i32") return run_loss<scalar_t, int32_t>(dir, c);
    return run_loss<scalar_t, int64_t>(dir, c);
  }
};
template <typename scalar_t>
struct Greedy {
  static void go(const std::string& dir, const Case& c) { run_greedy<scalar_t>(dir, c); }
};
template <typename scalar_t>
struct Beam {
  static void go(const std::string& dir, const Case& c) { run_beam<scalar_t>(dir, c); }
};
template <typename scalar_t>
struct LmBeam {
  static void go(const std::string& dir, const Case& c) { run_lm_beam<scalar_t>(dir, c); }
};
template <typename scalar_t>
struct Align {
  static void go(const std::string& dir, const Case& c) { run_align<scalar_t>(dir, c); }
};

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string dir = argv[i];
    const Case c = read_case(dir);
    const std::string op = text(c, "op"), dtype = text(c, "dtype");
    const long launches_before = ctcx_emu::stats().launches;
    {
      std::lock_guard<std::mutex> lock(ctcx_emu::stats().mu);
      ctcx_emu::stats().max_threads = 0;
      ctcx_emu::stats().shapes.clear();
    }
    {
      std::lock_guard<std::mutex> lock(ctcx_emu::attributes().mu);
      ctcx_emu::attributes().set_values.clear();
    }
    std::printf("case %s ", dir.c_str());
    if (op == "loss") {
      by_dtype<Loss>(dtype, dir, c);
    } else if (op == "greedy") {
      by_dtype<Greedy>(dtype, dir, c);
    } else if (op == "beam") {
      by_dtype<Beam>(dtype, dir, c);
    } else if (op == "lmbeam") {
      by_dtype<LmBeam>(dtype, dir, c);
    } else if (op == "align") {
      by_dtype<Align>(dtype, dir, c);
    } else {
      die("unknown op " + op);
    }
    std::string attrs;
    for (size_t v : ctcx_emu::attributes().set_values) attrs += (attrs.empty() ? "" : ",") + std::to_string(v);
    std::string shapes;
    for (const auto& [blocks, threads] : ctcx_emu::stats().shapes) {
      shapes += (shapes.empty() ? "" : ",") + std::to_string(blocks) + "x" + std::to_string(threads);
    }
    std::printf("launches=%ld max_threads=%d shapes=%s smem_attr=%s ok\n",
                ctcx_emu::stats().launches - launches_before, ctcx_emu::stats().max_threads,
                shapes.c_str(), attrs.empty() ? "-" : attrs.c_str());
    std::fflush(stdout);
  }
  return 0;
}
