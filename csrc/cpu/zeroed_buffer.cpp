#include "zeroed_buffer.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <c10/util/strides.h>

#include <sys/mman.h>

#include <cstdint>

namespace ctcx {
namespace {

constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kMmapThreshold = size_t(4) << 20;

}  // namespace

at::Tensor gradient_buffer_like(const at::Tensor& like, bool* zeroed) {
  const c10::DimVector strides = like.is_non_overlapping_and_dense()
                                     ? c10::DimVector(like.strides())
                                     : c10::contiguous_strides(like.sizes());
  const size_t bytes = static_cast<size_t>(like.numel()) * like.element_size();
  const auto options = like.options().memory_format(std::nullopt);
  *zeroed = bytes >= kMmapThreshold;
  if (!*zeroed) return at::empty_strided(like.sizes(), strides, options);
  // Over-allocate by one huge page so the data can start on a 2 MB boundary.
  const size_t length = bytes + kHugePage;
  void* base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  TORCH_CHECK(base != MAP_FAILED, "ctcx: could not allocate ", bytes, " bytes for the gradient");
  const uintptr_t aligned = (reinterpret_cast<uintptr_t>(base) + kHugePage - 1) & ~(kHugePage - 1);
  void* data = reinterpret_cast<void*>(aligned);
#ifdef MADV_HUGEPAGE
  madvise(data, bytes - bytes % kHugePage, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  return at::from_blob(
      data, like.sizes(), strides, [base, length](void*) { munmap(base, length); }, options);
}

}  // namespace ctcx
