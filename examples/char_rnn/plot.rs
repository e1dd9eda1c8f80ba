//! The `compare` and `lab` plots. Loss panels start at the first evaluation after training
//! began (step 0 has no training loss, and its validation loss, near the uniform guess, would
//! flatten every curve); unit panels start at step 0.

use crate::lab::AlphaRuns;
use crate::train::Point;
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

type Get = fn(&Point) -> f64;

/// Line colours (matplotlib's first four), by run or slope.
const COLORS: [RGBColor; 4] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
];

/// One curve: its name, points, colour index and whether it is dashed.
struct Curve<'a> {
    name: String,
    points: &'a [Point],
    color: usize,
    dashed: bool,
}

/// One panel: title, y unit, the value, whether step 0 is drawn, the least y margin, and whether
/// the legend goes top right (else middle right).
struct Panel {
    title: &'static str,
    unit: &'static str,
    get: Get,
    from_zero: bool,
    min_pad: f64,
    legend_top: bool,
}

/// Validation loss over training, in `compare` and `lab`.
const LOSS: Panel = Panel {
    title: "validation loss",
    unit: "nats/char",
    get: |p| p.val_loss,
    from_zero: false,
    min_pad: 0.05,
    legend_top: true,
};

/// The share of inactive hidden units over training, in `compare` and `lab`.
const INACTIVE: Panel = Panel {
    title: "inactive hidden units (whole validation set)",
    unit: "% of units",
    get: |p| p.inactive_pct,
    from_zero: true,
    min_pad: 1.0,
    legend_top: false,
};

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    curves: &[Curve],
    y_floor: f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("plot: {x}");
    let shown = |c: &Curve<'_>| -> Vec<(usize, f64)> {
        (c.points.iter())
            .filter(|p| panel.from_zero || p.step > 0)
            .map(|p| (p.step, (panel.get)(p)))
            .filter(|p| p.1.is_finite())
            .collect()
    };
    let all: Vec<(usize, f64)> = curves.iter().flat_map(shown).collect();
    let steps = all.iter().map(|p| p.0).max().unwrap_or(1).max(1);
    let (lo, hi) = (all.iter()).fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (lo, hi) = if all.is_empty() { (0.0, 1.0) } else { (lo, hi) };
    let pad = ((hi - lo) * 0.05).max(panel.min_pad);
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0..steps, (lo - pad).max(y_floor)..hi + pad)
        .map_err(e)?;
    (chart.configure_mesh())
        .x_desc("step")
        .y_desc(panel.unit)
        .draw()
        .map_err(e)?;
    for c in curves {
        let style = COLORS[c.color % COLORS.len()].stroke_width(2);
        let points = shown(c);
        let series = match c.dashed {
            true => chart.draw_series(DashedLineSeries::new(points, 8, 5, style)),
            false => chart.draw_series(LineSeries::new(points, style)),
        };
        let legend = move |(x, y): (i32, i32)| PathElement::new([(x, y), (x + 20, y)], style);
        series.map_err(e)?.label(c.name.as_str()).legend(legend);
    }
    (chart.configure_series_labels())
        .position(match panel.legend_top {
            true => SeriesLabelPosition::UpperRight,
            false => SeriesLabelPosition::MiddleRight,
        })
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(e)?;
    Ok(())
}

/// `compare`: validation loss and inactive units over training, one line per run.
pub fn plot(path: &Path, runs: &[(String, &[Point])]) -> Result<()> {
    let e = |x: &dyn std::fmt::Display| anyhow!("plot {}: {x}", path.display());
    let root = SVGBackend::new(path, (1100, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let curves: Vec<Curve> = (runs.iter().enumerate())
        .map(|(i, (name, points))| Curve {
            name: name.clone(),
            points,
            color: i,
            dashed: false,
        })
        .collect();
    let panels = [LOSS, INACTIVE];
    for (area, panel) in root.split_evenly((1, 2)).iter().zip(&panels) {
        draw_panel(area, panel, &curves, 0.0).map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// `lab`: knocked-out units alive, inactive share and validation loss over training; one colour
/// per slope, knockout runs solid, baselines dashed.
pub fn plot_lab(path: &Path, runs: &[AlphaRuns]) -> Result<()> {
    let e = |x: &dyn std::fmt::Display| anyhow!("plot {}: {x}", path.display());
    let root = SVGBackend::new(path, (1500, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut knocked = Vec::new();
    let mut both = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        knocked.push(Curve {
            name: format!("alpha {} (of {})", r.alpha, r.knockout.knocked.len()),
            points: &r.knockout.history,
            color: i,
            dashed: false,
        });
        let kind = if r.knockout.knocked.is_empty() {
            ""
        } else {
            " knockout"
        };
        both.push(Curve {
            name: format!("alpha {}{kind}", r.alpha),
            ..knocked[i]
        });
        if let Some(b) = &r.baseline {
            both.push(Curve {
                name: format!("alpha {} baseline (dashed)", r.alpha),
                points: &b.history,
                color: i,
                dashed: true,
            });
        }
    }
    let panels = [
        Panel {
            title: "knocked-out units alive",
            unit: "units",
            get: |p| p.knocked_alive as f64,
            from_zero: true,
            min_pad: 1.0,
            legend_top: false,
        },
        INACTIVE,
        LOSS,
    ];
    let areas = root.split_evenly((1, 3));
    for (i, (area, panel)) in areas.iter().zip(&panels).enumerate() {
        let curves = if i == 0 { &knocked } else { &both };
        draw_panel(area, panel, curves, 0.0).map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
