//! The measures of "which slope?" that are pure functions of a run's records: the median and
//! the largest gradient norm, and the steps at which knocked-out units came back.

/// The first steps of `series` (step, units alive) at which at least half and at least nine
/// tenths of `k` knocked-out units were alive; `None` where never, and both `None` for `k = 0`.
pub fn revival_steps(series: &[(usize, usize)], k: usize) -> (Option<usize>, Option<usize>) {
    let first = |num: usize, den: usize| {
        (k > 0)
            .then(|| series.iter().find(|&&(_, alive)| alive * den >= k * num))
            .flatten()
            .map(|&(step, _)| step)
    };
    (first(1, 2), first(9, 10))
}

/// The median of `xs` (the mean of the middle two for an even count; NaN for none). NaNs
/// sort above +inf.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The largest of `xs` (NaN if any is NaN, -inf for none).
pub fn max(xs: &[f64]) -> f64 {
    (xs.iter().copied()).fold(f64::NEG_INFINITY, |m, x| match m.is_nan() || x.is_nan() {
        true => f64::NAN,
        false => m.max(x),
    })
}
