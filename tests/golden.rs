//! PyTorch reference bits (`tests/golden/`, copied from the shared golden set; format in its
//! README): every non-NaN output must match bit for bit on every device, contiguous and on
//! stride-2 views; NaN outputs must be NaN (PyTorch's own NaN bits are not stable; our NaN rule
//! is checked bit for bit in `contract.rs`).

mod common;

use candle_core::{DType, Device, Result, Tensor};
use candle_leaky_relu::{LeakyRelu, LeakyReluBackward};
use common::*;

struct Golden {
    dtype: DType,
    alpha: f64,
    /// Columns: x, y, y_scalar_path, g, dx, dx_scalar_path.
    cols: [Vec<u64>; 6],
}

fn load(name: &str) -> Golden {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines = text.lines();
    let meta: serde_json::Value =
        serde_json::from_str(lines.next().expect("header")).expect("json");
    let dtype = match meta["dtype"].as_str().expect("dtype") {
        "float16" => DType::F16,
        "bfloat16" => DType::BF16,
        "float32" => DType::F32,
        "float64" => DType::F64,
        d => panic!("{d}"),
    };
    let alpha_bits = meta["alpha_f64_bits"].as_str().expect("alpha_f64_bits");
    let alpha = f64::from_bits(u64::from_str_radix(alpha_bits, 16).expect("hex"));
    let mut cols: [Vec<u64>; 6] = Default::default();
    for line in lines.filter(|l| !l.is_empty()) {
        for (c, w) in cols.iter_mut().zip(line.split(' ')) {
            c.push(u64::from_str_radix(w, 16).expect("hex word"));
        }
    }
    let n = meta["n"].as_u64().expect("n") as usize;
    assert!(cols.iter().all(|c| c.len() == n), "{path}: {n} rows");
    Golden { dtype, alpha, cols }
}

fn is_nan(dtype: DType, b: u64) -> bool {
    let t = from_bits(dtype, &[b], &[1], &Device::Cpu).unwrap();
    t.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()[0].is_nan()
}

#[track_caller]
fn compare(what: &str, dtype: DType, got: &[u64], torch: &[u64]) {
    assert_eq!(got.len(), torch.len());
    let mut nans = 0;
    for (i, (&g, &t)) in got.iter().zip(torch).enumerate() {
        if is_nan(dtype, t) {
            assert!(
                is_nan(dtype, g),
                "{what}: row {i}: torch NaN {t:#x}, got {g:#x}"
            );
            nans += 1;
        } else {
            assert_eq!(g, t, "{what}: row {i}: got {g:#x}, torch {t:#x}");
        }
    }
    assert!(
        nans < got.len() / 10,
        "{what}: too many NaN rows to be meaningful"
    );
}

/// A stride-2 view over `bits`: the values sit at even positions of a twice-as-long tensor.
fn strided(dtype: DType, bits: &[u64], dev: &Device) -> Result<Tensor> {
    let doubled: Vec<u64> = bits.iter().flat_map(|&b| [b, 0]).collect();
    from_bits(dtype, &doubled, &[bits.len(), 2], dev)?
        .narrow(1, 0, 1)?
        .squeeze(1)
}

fn check_file(name: &str) -> Result<()> {
    let g = load(name);
    let [x, y, y_scalar, dy, dx, dx_scalar] = &g.cols;
    let (op, bwd) = (LeakyRelu(g.alpha), LeakyReluBackward(g.alpha));
    for dev in devices() {
        if !supports(&dev, g.dtype) {
            continue;
        }
        let what = |s: &str| format!("{name} {dev:?} {s}");
        let xt = from_bits(g.dtype, x, &[x.len()], &dev)?;
        let dyt = from_bits(g.dtype, dy, &[dy.len()], &dev)?;
        compare(&what("forward"), g.dtype, &to_bits(&xt.apply_op1(op)?)?, y);
        let xs = strided(g.dtype, x, &dev)?;
        compare(
            &what("forward strided"),
            g.dtype,
            &to_bits(&xs.apply_op1(op)?)?,
            y_scalar,
        );
        let dxt = xt.apply_op2_no_bwd(&dyt, &bwd)?;
        compare(&what("backward"), g.dtype, &to_bits(&dxt)?, dx);
        let dys = strided(g.dtype, dy, &dev)?;
        let dxs = xs.apply_op2_no_bwd(&dys, &bwd)?;
        compare(
            &what("backward strided"),
            g.dtype,
            &to_bits(&dxs)?,
            dx_scalar,
        );
    }
    Ok(())
}

macro_rules! golden {
    ($($test:ident: $file:literal,)*) => {$(
        #[test]
        fn $test() -> Result<()> {
            check_file($file)
        }
    )*};
}

golden! {
    f16_alpha_0_01: "float16_alpha_0.01.txt",
    f16_alpha_0_2: "float16_alpha_0.2.txt",
    f16_alpha_m0_5: "float16_alpha_-0.5.txt",
    bf16_alpha_0_01: "bfloat16_alpha_0.01.txt",
    bf16_alpha_0_2: "bfloat16_alpha_0.2.txt",
    bf16_alpha_m0_5: "bfloat16_alpha_-0.5.txt",
    f32_alpha_0_01: "float32_alpha_0.01.txt",
    f32_alpha_0_2: "float32_alpha_0.2.txt",
    f32_alpha_m0_5: "float32_alpha_-0.5.txt",
    f64_alpha_0_01: "float64_alpha_0.01.txt",
    f64_alpha_0_2: "float64_alpha_0.2.txt",
    f64_alpha_m0_5: "float64_alpha_-0.5.txt",
}
