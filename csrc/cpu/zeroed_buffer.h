// Large zero-filled CPU tensors without a memset pass and with few page faults.
#pragma once

#include <ATen/core/Tensor.h>

namespace ctcx {

// A zero-filled tensor with the sizes, dtype and (when it is dense and
// non-overlapping) the strides of `like`, so it can become `like`'s gradient
// without a layout copy. Buffers of a few MB and more come straight from
// mmap, which hands out zeroed pages, and are advised to use transparent huge
// pages: a 96 MB gradient then costs ~50 page faults instead of ~24,000.
at::Tensor zeroed_like(const at::Tensor& like);

}  // namespace ctcx
