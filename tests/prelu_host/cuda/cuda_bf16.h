// Host stand-in for CUDA's header when kernels/prelu.cu runs on the host: the LeakyReLU shim
// (tests/cuda_host/shim.h) plus the cooperating-thread names of ../cuda_sim.h.
#include "../../cuda_host/shim.h"
#include "../cuda_sim.h"
