#!/usr/bin/env bash
# Installs a CUDA 13.0 compile toolchain from PyPI (no GPU, no root needed) and link-only stubs,
# then prints the environment to use it:
#
#     eval "$(scripts/cuda-toolchain.sh)"
#
# - DIR (default ~/.cache/candle-leaky-relu/cuda-13.0, or $CUDA_TOOLCHAIN_DIR) receives the pinned
#   wheels; DIR/nvidia/cu13 is then a CUDA root: bin/nvcc, bin/ptxas, include/cuda_fp16.h, ...
#   The versions are pinned: nvcc 13.5 breaks cudarc 0.19.10's build script and emits PTX that a
#   13.0 driver rejects.
# - DIR/nvidia/cu13/lib/stubs receives LINK-ONLY stubs of libcuda, libnvrtc, libcublas,
#   libcublasLt and libcurand (every function cudarc declares, each returning an error
#   code; the real sonames), so test binaries link without the 573 MB of real libraries; libcudart
#   is the wheel's real one. cudarc
#   searches CUDA_ROOT/lib/stubs on its own. NEVER put that directory on the library path of a
#   machine with a GPU: the stubs would shadow the driver.
#
# - CUDAFORGE_THREADS (default: every core) is how many nvcc processes candle-kernels' build
#   script (cudaforge) runs at once; cudaforge's own default is half the cores, one here.
#
# Idempotent: a second run finds bin/nvcc and the stubs and only prints the environment
# (a second `pip install --target` into the same directory would silently install nothing).
set -euo pipefail

DIR="${CUDA_TOOLCHAIN_DIR:-$HOME/.cache/candle-leaky-relu/cuda-13.0}"
ROOT="$DIR/nvidia/cu13"
STUBS="$ROOT/lib/stubs"
WHEELS=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
        nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96)

if [[ ! -x "$ROOT/bin/nvcc" ]]; then
    # A half-finished earlier install would make pip skip the wheels: start from scratch.
    rm -rf "$DIR"
    mkdir -p "$DIR"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$DIR" "${WHEELS[@]}" >&2
    [[ -x "$ROOT/bin/nvcc" ]] || { echo "cuda-toolchain: no $ROOT/bin/nvcc after pip install" >&2; exit 1; }
fi

if [[ ! -e "$STUBS/.done" ]]; then
    cudarc=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -mindepth 2 -maxdepth 2 -type d -name 'cudarc-0.19.*' | sort -V | tail -n1)
    if [[ -z "$cudarc" ]]; then
        # The stubs are generated from cudarc's FFI declarations: fetch the crate sources first.
        (cd "$(dirname "$0")/.." && cargo fetch --quiet >&2)
        cudarc=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -mindepth 2 -maxdepth 2 -type d -name 'cudarc-0.19.*' | sort -V | tail -n1)
    fi
    rm -rf "$STUBS"
    mkdir -p "$STUBS"
    # library  soname            cudarc module
    while read -r lib soname module; do
        src="$STUBS/$lib.c"
        echo "/* link-only stub of $soname generated from cudarc $module: NOT a usable library */" >"$src"
        grep -ohE '^pub unsafe fn [A-Za-z0-9_]+' "$cudarc/src/$module/sys/mod.rs" | awk '{print $4}' | sort -u |
            sed 's/.*/int &(void) { return 999; }/' >>"$src"
        gcc -shared -fPIC -O0 -Wl,-soname,"$soname" -o "$STUBS/$lib.so" "$src"
        ln -sf "$lib.so" "$STUBS/$soname"
    done <<'LIBS'
libcuda libcuda.so.1 driver
libnvrtc libnvrtc.so.13 nvrtc
libcublas libcublas.so.13 cublas
libcublasLt libcublasLt.so.13 cublaslt
libcurand libcurand.so.10 curand
LIBS
    # libcudart: the real one from the nvidia-cuda-runtime wheel (candle-kernels' static library
    # needs its internal __cuda* registration symbols; it loads without a GPU).
    ln -sf ../libcudart.so.13 "$STUBS/libcudart.so"
    ln -sf ../libcudart.so.13 "$STUBS/libcudart.so.13"
    touch "$STUBS/.done"
fi

cat <<ENV
export CUDA_ROOT='$ROOT'
export CUDA_PATH='$ROOT'
export PATH='$ROOT/bin':"\$PATH"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
export CUDA_STUBS='$STUBS'
export CUDAFORGE_THREADS="\${CUDAFORGE_THREADS:-\$(nproc)}"
ENV
