// Host shim stand-in for CUDA's header (see shim.h).
#include "shim.h"
