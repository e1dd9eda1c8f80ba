mod common;
use candle_leaky_relu::LeakyRelu;
use common::*;

#[test]
fn smoke_all_devices_all_dtypes() -> candle_core::Result<()> {
    for dev in devices() {
        for dtype in DTYPES {
            if !supports(&dev, dtype) {
                continue;
            }
            let x = candle_core::Tensor::new(&[-2.0f64, -0.0, 0.0, 1.5], &dev)?.to_dtype(dtype)?;
            let xb = to_bits(&x)?;
            let y = x.apply_op1(LeakyRelu(0.25))?;
            let want: Vec<u64> = xb.iter().map(|&b| ref_fwd(dtype, b, 0.25)).collect();
            assert_bits_eq(&format!("{dev:?} {dtype:?}"), &to_bits(&y)?, &want);
        }
    }
    Ok(())
}
