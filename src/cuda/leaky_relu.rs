//! LeakyReLU on CUDA: the launches of `leaky_relu_{fwd,bwd,inplace}_*` over validated layouts.

use super::{output, view, view_mut, DeviceType, Launch};
use crate::base::{unsupported, Op, Slope};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice as Slice, WrapErr};
use candle_core::{CudaDevice, CudaStorage, Layout, Result};

fn fwd<T: DeviceType>(
    a: Slope,
    (x, l): (&CudaSlice<T>, &Layout),
    n: usize,
    dev: &CudaDevice,
) -> Result<CudaSlice<T>> {
    let mut y = output::<T>(dev, n)?;
    if let Some(k) = Launch::<T>::new(dev, Op::Fwd, a, &[l], n)? {
        let x = view(x, l, Op::Fwd)?;
        let mut b = k.args();
        b.arg(&x).arg(&mut y).arg(&k.a);
        // SAFETY: the arguments match `leaky_relu_fwd_*(n, nd, info, x, y, a)`; `x` reaches every
        // element of the layout (validated against the storage), `y` has `n` elements.
        unsafe { b.launch(k.cfg) }.w()?;
    }
    Ok(y)
}

fn bwd<T: DeviceType>(
    a: Slope,
    (x, lx): (&CudaSlice<T>, &Layout),
    (dy, ldy): (&CudaSlice<T>, &Layout),
    n: usize,
    dev: &CudaDevice,
) -> Result<CudaSlice<T>> {
    let mut dx = output::<T>(dev, n)?;
    if let Some(k) = Launch::<T>::new(dev, Op::Bwd, a, &[lx, ldy], n)? {
        let (x, dy) = (view(x, lx, Op::Bwd)?, view(dy, ldy, Op::Bwd)?);
        let mut b = k.args();
        b.arg(&x).arg(&dy).arg(&mut dx).arg(&k.a);
        // SAFETY: the arguments match `leaky_relu_bwd_*(n, nd, info, x, dy, dx, a)`; `x` and `dy`
        // reach every element of their validated layouts (same dims), `dx` has `n` elements.
        unsafe { b.launch(k.cfg) }.w()?;
    }
    Ok(dx)
}

fn fwd_inplace<T: DeviceType>(
    a: Slope,
    (x, l): (&mut CudaSlice<T>, &Layout),
    n: usize,
    dev: &CudaDevice,
) -> Result<()> {
    if let Some(k) = Launch::<T>::new(dev, Op::Inplace, a, &[l], n)? {
        let mut x = view_mut(x, l, Op::Inplace)?;
        let mut b = k.args();
        b.arg(&mut x).arg(&k.a);
        // SAFETY: the arguments match `leaky_relu_inplace_*(n, nd, info, x, a)`; `x` reaches every
        // element of the validated layout, whose elements do not overlap
        // (`base::check_inplace`).
        unsafe { b.launch(k.cfg) }.w()?;
    }
    Ok(())
}

/// `y = leaky_relu(x)`: a new contiguous storage of the view's `n` elements.
pub(crate) fn forward(a: Slope, s: &CudaStorage, l: &Layout, n: usize) -> Result<CudaStorage> {
    let dev = &s.device;
    let slice = match &s.slice {
        Slice::F16(x) => Slice::F16(fwd(a, (x, l), n, dev)?),
        Slice::BF16(x) => Slice::BF16(fwd(a, (x, l), n, dev)?),
        Slice::F32(x) => Slice::F32(fwd(a, (x, l), n, dev)?),
        Slice::F64(x) => Slice::F64(fwd(a, (x, l), n, dev)?),
        _ => return Err(unsupported(s.dtype(), Op::Fwd)),
    };
    Ok(CudaStorage {
        slice,
        device: dev.clone(),
    })
}

/// `dx` from `x` and `dy` (same dtype and dims): a new contiguous storage of `n` elements.
pub(crate) fn backward(
    a: Slope,
    (x, lx): (&CudaStorage, &Layout),
    (dy, ldy): (&CudaStorage, &Layout),
    n: usize,
) -> Result<CudaStorage> {
    let dev = &x.device;
    let slice = match (&x.slice, &dy.slice) {
        (Slice::F16(x), Slice::F16(g)) => Slice::F16(bwd(a, (x, lx), (g, ldy), n, dev)?),
        (Slice::BF16(x), Slice::BF16(g)) => Slice::BF16(bwd(a, (x, lx), (g, ldy), n, dev)?),
        (Slice::F32(x), Slice::F32(g)) => Slice::F32(bwd(a, (x, lx), (g, ldy), n, dev)?),
        (Slice::F64(x), Slice::F64(g)) => Slice::F64(bwd(a, (x, lx), (g, ldy), n, dev)?),
        _ => return Err(unsupported(x.dtype(), Op::Bwd)),
    };
    Ok(CudaStorage {
        slice,
        device: dev.clone(),
    })
}

/// `x = leaky_relu(x)` over the view's `n` elements, which do not overlap.
pub(crate) fn forward_inplace(a: Slope, s: &mut CudaStorage, l: &Layout, n: usize) -> Result<()> {
    let dtype = s.dtype();
    let CudaStorage { slice, device } = s;
    match slice {
        Slice::F16(x) => fwd_inplace(a, (x, l), n, device),
        Slice::BF16(x) => fwd_inplace(a, (x, l), n, device),
        Slice::F32(x) => fwd_inplace(a, (x, l), n, device),
        Slice::F64(x) => fwd_inplace(a, (x, l), n, device),
        _ => Err(unsupported(dtype, Op::Inplace)),
    }
}
