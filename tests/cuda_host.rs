//! Runs the CUDA kernel source on the host: `kernels/leaky_relu.cu` is compiled unchanged by g++
//! with `tests/cuda_host/shim.h` (CUDA's names, conversions that round to nearest even), and
//! `tests/cuda_host/driver.cpp` calls every entry point once per simulated thread over several
//! grids (one thread, grids much smaller than the work so the grid-stride loops wrap, one
//! thread per item). The results must equal the CPU path's bits for every case of
//! `common::host::standard_cases`, and deliberately wrong copies of the kernel must fail.
//! Runs in every `cargo test`, with or without the `cuda` feature, on any machine with g++.

mod common;
#[path = "common/host.rs"]
mod host;

use candle_core::{Device, Result};
use common::DTYPES;
use host::{case_file, mismatches, standard_cases, Case};
use std::path::{Path, PathBuf};
use std::process::Command;

const KERNEL: &str = include_str!("../kernels/leaky_relu.cu");

/// A scratch directory under the target dir.
fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cuda_host");
    std::fs::create_dir_all(&dir).expect("create the scratch dir");
    dir
}

/// Compiles `kernel_src` (the kernel's text) with the shim and the driver into `name` (warnings
/// are errors for the real kernel); `None` when there is no g++ on this machine.
fn build(name: &str, kernel_src: &str, werror: bool) -> Option<PathBuf> {
    if Command::new("g++").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no g++ on PATH, the CUDA kernel source was not run on the host");
        return None;
    }
    let dir = scratch();
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cuda_host");
    let src = dir.join(format!("{name}.cu"));
    std::fs::write(&src, kernel_src).expect("write the kernel copy");
    let exe = dir.join(name);
    let out = Command::new("g++")
        .args(["-std=c++17", "-O2", "-ffp-contract=off", "-Wall", "-Wextra"])
        .args(werror.then_some("-Werror"))
        .arg("-I")
        .arg(&here)
        .args(["-x", "c++"])
        .arg(&src)
        .arg(here.join("driver.cpp"))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run g++");
    assert!(
        out.status.success(),
        "g++ failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(exe)
}

/// Runs the driver on `cases`; a crash or error exit is reported as a mismatch line.
fn run(exe: &Path, tag: &str, cases: &[Case]) -> Vec<String> {
    let file = scratch().join(format!("{tag}.cases"));
    std::fs::write(&file, case_file(cases)).expect("write the case file");
    let out = Command::new(exe)
        .arg(&file)
        .output()
        .expect("run the driver");
    let mut bad = mismatches(cases, &String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        bad.push(format!(
            "driver exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    bad
}

#[test]
fn kernel_source_matches_cpu_path() -> Result<()> {
    let Some(exe) = build("leaky_relu", KERNEL, true) else {
        return Ok(());
    };
    for dtype in DTYPES {
        let cases = standard_cases(dtype, &Device::Cpu)?;
        let bad = run(&exe, &format!("{dtype:?}"), &cases);
        assert!(
            bad.is_empty(),
            "{dtype:?}: {} of {} cases differ:\n{}",
            bad.len(),
            cases.len(),
            bad.join("\n")
        );
    }
    Ok(())
}

/// Wrong kernels: (name, exact text in the kernel, replacement). Each must change the kernel
/// (the text occurs exactly once) and must make the comparison fail.
const MUTANTS: [(&str, &str, &str); 6] = [
    (
        "backward gradient at 0 is dy (>= for >)",
        "E<T>::up(x) > 0 ? dy",
        "E<T>::up(x) >= 0 ? dy",
    ),
    (
        "forward zero passes through (< for <=)",
        "v <= 0 ? scaled",
        "v < 0 ? scaled",
    ),
    (
        "NaN products not canonical",
        "p != p ? E<T>::nan() : E<T>::down(p)",
        "E<T>::down(p)",
    ),
    (
        "alpha rounded to the dtype",
        "p = v * a;",
        "p = v * E<T>::up(E<T>::down(a));",
    ),
    (
        "strides applied innermost-first",
        "for (size_t d = nd; d-- > 0;)",
        "for (size_t d = 0; d < nd; ++d)",
    ),
    (
        "last vector overruns the view",
        "(n - head) / W",
        "(n - head + W - 1) / W",
    ),
];

#[test]
fn mutated_kernels_fail() -> Result<()> {
    let cases: Vec<Case> = DTYPES
        .into_iter()
        .map(|d| standard_cases(d, &Device::Cpu))
        .collect::<Result<Vec<_>>>()?
        .concat();
    // One thread per mutant: each compiles and runs its own driver.
    std::thread::scope(|scope| {
        for (i, (what, from, to)) in MUTANTS.iter().enumerate() {
            let cases = &cases;
            scope.spawn(move || {
                let n = KERNEL.matches(from).count();
                assert_eq!(
                    n, 1,
                    "mutant `{what}`: `{from}` must occur once in the kernel"
                );
                let Some(exe) = build(&format!("mutant{i}"), &KERNEL.replace(from, to), false)
                else {
                    return;
                };
                let bad = run(&exe, &format!("mutant{i}"), cases);
                assert!(
                    !bad.is_empty(),
                    "mutant `{what}` passed the host-run comparison"
                );
                eprintln!(
                    "mutant `{what}`: {} failing runs, e.g. {}",
                    bad.len(),
                    bad[0]
                );
            });
        }
    });
    Ok(())
}
