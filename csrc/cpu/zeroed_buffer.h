// Gradient buffers: large ones zero-filled without a memset pass and with few page faults.
#pragma once

#include <ATen/core/Tensor.h>

namespace ctcx {

// A buffer for a gradient with the sizes, dtype and (when it is dense and
// non-overlapping) the strides of `like`, so it can become `like`'s gradient
// without a layout copy. Buffers of a few MB and more come straight from
// mmap, which hands out zeroed pages, and are advised to use transparent huge
// pages: a 96 MB gradient then costs ~50 page faults instead of ~24,000.
// Smaller ones are left uninitialized (*zeroed = false): the kernel writes
// every row itself while it is in cache, cheaper than a separate zero pass.
at::Tensor gradient_buffer_like(const at::Tensor& like, bool* zeroed);

}  // namespace ctcx
