//! Build script: without the `cuda` feature it does nothing. With it, `kernels/*.cu` are compiled
//! to PTX in `OUT_DIR` by nvcc (through bindgen_cuda); `src/cuda.rs` embeds the PTX.
//!
//! The PTX targets `sm_80` (compute capability 8.0), not the GPU of the build machine: the CUDA
//! driver JIT-compiles PTX forward onto any newer GPU (Ampere, Hopper, Blackwell, ...), and the
//! kernels need nothing newer. `CUDA_COMPUTE_CAP` below 80 (e.g. 75 for Turing) lowers the target
//! to that capability; a higher one leaves it at 80 (it is still used by candle-kernels, which
//! turns 90 into `sm_90a` code that only runs on H100/H200).
//!
//! Requirements with `--features cuda`: `nvcc` on `PATH` (or in `$CUDA_ROOT/bin` /
//! `$CUDA_PATH/bin`), a CUDA root with `include/cuda.h` in `CUDA_ROOT`/`CUDA_PATH` or a standard
//! location, and either `CUDA_COMPUTE_CAP` or `nvidia-smi` (candle-kernels needs one of them;
//! without both, this script sets 80 for its own use). No fast math: the contract needs IEEE
//! subnormals and NaNs.

/// The capability our PTX targets (see the module docs).
#[cfg(feature = "cuda")]
const PTX_ARCH: usize = 80;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "cuda")]
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        cuda::build();
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Why the build cannot go on, and what to set; bindgen_cuda itself would only panic with
    /// "`nvcc` failed" or "`nvidia-smi` failed".
    fn fail(what: &str) -> ! {
        panic!(
            "\n\ncandle-leaky-relu (feature `cuda`): {what}\n\
             Set up a CUDA toolkit (12.x or 13.0; a PyPI-only one: `eval \"$(scripts/cuda-toolchain.sh)\"`):\n\
             - PATH must contain the directory of `nvcc` (e.g. /usr/local/cuda/bin);\n\
             - CUDA_ROOT or CUDA_PATH must name the CUDA root (the directory with include/cuda.h);\n\
             - CUDA_COMPUTE_CAP (e.g. 80, 90) must be set where `nvidia-smi` is absent (no GPU).\n"
        )
    }

    fn runs(cmd: &str, arg: &str) -> bool {
        Command::new(cmd)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// The capability to build our PTX for: `min(CUDA_COMPUTE_CAP, 80)`.
    fn arch() -> usize {
        println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
        match std::env::var("CUDA_COMPUTE_CAP") {
            Ok(v) => match v.trim().replace('.', "").parse::<usize>() {
                Ok(cap) => cap.min(super::PTX_ARCH),
                Err(_) => fail(&format!(
                    "CUDA_COMPUTE_CAP={v:?} is not a number like 80 or 90."
                )),
            },
            Err(_) => {
                if !runs("nvidia-smi", "-L") {
                    // bindgen_cuda's builder probes the GPU through nvidia-smi unless the variable
                    // is set; our PTX does not depend on the build machine's GPU.
                    std::env::set_var("CUDA_COMPUTE_CAP", super::PTX_ARCH.to_string());
                }
                super::PTX_ARCH
            }
        }
    }

    pub fn build() {
        for var in ["CUDA_ROOT", "CUDA_PATH", "NVCC_CCBIN"] {
            println!("cargo:rerun-if-env-changed={var}");
        }
        if !runs("nvcc", "--version") {
            fail("`nvcc` was not found on PATH or does not run.");
        }
        let roots = ["CUDA_PATH", "CUDA_ROOT", "CUDA_TOOLKIT_ROOT_DIR"]
            .into_iter()
            .filter_map(|v| std::env::var(v).ok())
            .chain(["/usr", "/usr/local/cuda", "/opt/cuda", "/usr/lib/cuda"].map(String::from));
        if !roots
            .into_iter()
            .any(|r| Path::new(&r).join("include/cuda.h").is_file())
        {
            fail("no CUDA root with include/cuda.h (checked CUDA_PATH, CUDA_ROOT, /usr/local/cuda, ...).");
        }
        let arch = arch();
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        let mut kernels: Vec<PathBuf> = std::fs::read_dir("kernels")
            .unwrap_or_else(|e| fail(&format!("cannot read kernels/: {e}")))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "cu"))
            .collect();
        kernels.sort();
        println!("cargo:rerun-if-changed=kernels");
        for k in &kernels {
            println!("cargo:rerun-if-changed={}", k.display());
            // bindgen_cuda skips nvcc when the old PTX is newer than the source, even when the
            // target arch or the flags changed: always rebuild (one small file, ~1 s).
            let ptx = out.join(Path::new(k.file_name().expect("a file")).with_extension("ptx"));
            let _ = std::fs::remove_file(ptx);
        }
        bindgen_cuda::Builder::default()
            .kernel_paths(kernels)
            .include_paths(Vec::<PathBuf>::new())
            .compute_cap(arch)
            // IEEE semantics: keep subnormals, no contraction, exact division and sqrt.
            .arg("-ftz=false")
            .arg("-fmad=false")
            .arg("-prec-div=true")
            .arg("-prec-sqrt=true")
            .arg("-std=c++17")
            .build_ptx()
            .unwrap_or_else(|e| match e {});
    }
}
