// Stand-in for the CUDA toolkit header in the CUDA-on-CPU emulation (tests/cuda_emu).
#pragma once
#include "ctcx_cuda_emulation.h"
