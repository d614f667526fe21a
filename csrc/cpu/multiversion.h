// CTCX_MULTIVERSION: compile a CPU kernel for AVX-512, AVX2+FMA and baseline
// x86-64 and let the dynamic loader pick the widest the CPU has (GCC function
// multi-versioning), so one wheel runs anywhere. A no-op elsewhere.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CTCX_MULTIVERSION __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#define CTCX_MULTIVERSION
#endif
