//! The `compare` plot: validation loss and dead-unit share over training, ReLU vs LeakyReLU.

use crate::train::Point;
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;

/// Draws two panels (validation loss, dead units %) with one line per run into an SVG file.
pub fn plot(path: &Path, runs: &[(String, &[Point])]) -> Result<()> {
    let e = |e: &dyn std::fmt::Display| anyhow!("plot {}: {e}", path.display());
    let root = SVGBackend::new(path, (1100, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let panels = root.split_evenly((1, 2));
    let steps = runs
        .iter()
        .flat_map(|r| r.1.iter().map(|p| p.step))
        .max()
        .unwrap_or(1);
    type Get = fn(&Point) -> f64;
    let specs: [(&str, &str, Get); 2] = [
        ("validation loss", "nats/char", |p| p.val_loss),
        ("dead hidden units", "% of units", |p| p.dead_pct),
    ];
    for (area, (title, unit, get)) in panels.iter().zip(specs) {
        let values = runs.iter().flat_map(|r| r.1.iter().map(get));
        let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
        let pad = ((hi - lo) * 0.05).max(0.5);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0..steps, (lo - pad).max(0.0)..hi + pad)
            .map_err(|x| e(&x))?;
        (chart.configure_mesh())
            .x_desc("step")
            .y_desc(unit)
            .draw()
            .map_err(|x| e(&x))?;
        for (i, (name, points)) in runs.iter().enumerate() {
            let color = Palette99::pick(i).stroke_width(2);
            let line = LineSeries::new(points.iter().map(|p| (p.step, get(p))), color);
            (chart.draw_series(line).map_err(|x| e(&x))?)
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
        (chart.configure_series_labels())
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
