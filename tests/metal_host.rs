//! Host run of the Metal shader: `kernels/leaky_relu.metal`, unchanged, compiled as C++ with the
//! shim in `tests/metal_host/` (set `CXX` to pick the compiler; default `c++`), run over the grid
//! `src/metal/plan.rs` computes, in two thread orders, and compared bit for bit with the crate's
//! CPU path on the standard cases of `tests/host`. Deliberately wrong shaders must fail it.
mod common;
mod host;
#[path = "../src/metal/plan.rs"]
mod plan;

use candle_core::DType;
use host::{Case, Op};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The cases and their case file text, built once per test process.
fn cases() -> &'static (Vec<Case>, String) {
    static CASES: OnceLock<(Vec<Case>, String)> = OnceLock::new();
    CASES.get_or_init(|| {
        let cases = host::standard_cases(&[DType::F32, DType::F16, DType::BF16]).unwrap();
        // Vary the threadgroup width (a pipeline's max is at most 1024, often less) so that grids
        // are rounded up past the tiles, as candle's linear_split does.
        let text = host::write_cases(&cases, |i, c| {
            let kind = match c.op {
                Op::Fwd => plan::Kind::Fwd,
                Op::Bwd => plan::Kind::Bwd,
                Op::Inplace => plan::Kind::Inplace,
            };
            let contiguous =
                c.x.layout.is_contiguous() && c.dy.iter().all(|d| d.layout.is_contiguous());
            let name = plan::kernel_name(kind, c.dtype, !contiguous, "test").unwrap();
            let n = c.x.layout.shape().elem_count();
            let max = [1024, 32, 7, 256][i % 4];
            let (groups, width) = plan::grid(n, c.dtype.size_in_bytes(), max, "test").unwrap();
            format!("launch {name} {groups} {width}")
        });
        (cases, text)
    })
}

/// Compiles the driver against `source` (a `leaky_relu.metal`) in a scratch directory, runs
/// the cases through it and compares; the directory is removed afterwards.
fn run_shader(source: &str, tag: &str) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("leaky-relu-metal-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("leaky_relu.metal"), source).unwrap();
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let exe = dir.join("driver");
    let status = Command::new(&cxx)
        .args(["-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(Path::new(ROOT).join("tests/metal_host/include"))
        .arg("-I")
        .arg(&dir)
        .arg(Path::new(ROOT).join("tests/metal_host/driver.cpp"))
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C++ compiler `{cxx}` (set CXX): {e}"));
    assert!(status.success(), "{cxx} failed on the shader ({tag})");
    let (cases, text) = cases();
    let mut child = (Command::new(&exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped()))
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().unwrap();
    let _ = writer.join().unwrap(); // a driver that stops early closes the pipe: judged below
    std::fs::remove_dir_all(&dir).unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    host::check_output(cases, &String::from_utf8(out.stdout).unwrap())
}

fn shader() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("kernels/leaky_relu.metal")).unwrap()
}

#[test]
fn shader_matches_cpu_bit_for_bit() {
    let (cases, _) = cases();
    let strided = |op| {
        cases
            .iter()
            .filter(|c| c.op == op && !c.x.layout.is_contiguous())
            .count()
    };
    assert!([Op::Fwd, Op::Bwd, Op::Inplace]
        .iter()
        .all(|&op| strided(op) >= 5));
    run_shader(&shader(), "unchanged").unwrap();
}

/// Source edits that break the contract, each of which the harness must catch.
const MUTANTS: [(&str, &str, &str); 10] = [
    (">= in forward", "(c > 0.0f ||", "(c >= 0.0f ||"),
    (
        ">= in backward",
        "D::load(x) > 0.0f ?",
        "D::load(x) >= 0.0f ?",
    ),
    (
        "alpha rounded to the dtype (forward)",
        "D::store(c * a)",
        "D::store(c * D::load(D::store(a)))",
    ),
    (
        "alpha rounded to the dtype (backward)",
        "D::load(dy) * a)",
        "D::load(dy) * D::load(D::store(a)))",
    ),
    (
        "reversed stride order",
        "for (ulong d = num_dims; d-- > 0;)",
        "for (ulong d = 0; d < num_dims; d++)",
    ),
    (
        "dim / W instead of div_ceil",
        "div_ceil(dim, W)",
        "(dim / W)",
    ),
    (
        "no guard for threads past the tiles",
        "k < W && tid < step",
        "k < W",
    ),
    (
        "f16 rounding truncates",
        "(ax + 0xFFFu + ((ax >> 13) & 1) - ",
        "(ax - ",
    ),
    (
        "bf16 ties away from zero",
        "(x + 0x7FFFu + ((x >> 16) & 1))",
        "(x + 0x8000u)",
    ),
    (
        "f32 NaN product not canonical",
        "? 0x7FC00000u : u",
        "? u : u",
    ),
];

#[test]
fn wrong_shaders_fail() {
    let source = shader();
    cases();
    std::thread::scope(|s| {
        for (i, (what, from, to)) in MUTANTS.iter().enumerate() {
            let source = &source;
            s.spawn(move || {
                assert!(
                    source.contains(from),
                    "mutant `{what}`: `{from}` not in the shader"
                );
                let verdict = run_shader(&source.replace(from, to), &format!("mutant{i}"));
                assert!(verdict.is_err(), "mutant `{what}` passed the harness");
                eprintln!("mutant `{what}` caught: {}", verdict.unwrap_err().trim());
            });
        }
    });
}
