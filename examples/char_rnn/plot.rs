//! The `compare`, `lab` and `sweep` plots. Loss panels start at the first evaluation after
//! training began (step 0 has no training loss, and its validation loss, near the uniform
//! guess, would flatten every curve); unit and slope panels start at step 0.

use crate::lab::{AlphaRuns, SlopeSpec};
use crate::train::{Point, Run};
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

type Get = fn(&Point) -> f64;

/// Line colours (matplotlib's first four, then the rest of its ten), by run or slope.
const COLORS: [RGBColor; 10] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
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
/// per slope, knockout runs solid, baselines dashed; and the learned slopes, if any.
pub fn plot_lab(path: &Path, runs: &[AlphaRuns]) -> Result<()> {
    let e = |x: &dyn std::fmt::Display| anyhow!("plot {}: {x}", path.display());
    let width = if runs.iter().any(|r| r.slope.learned()) {
        2000
    } else {
        1500
    };
    let root = SVGBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut knocked = Vec::new();
    let mut both = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        knocked.push(Curve {
            name: format!("alpha {} (of {})", r.slope, r.knockout.knocked.len()),
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
            name: format!("alpha {}{kind}", r.slope),
            ..knocked[i]
        });
        if let Some(b) = &r.baseline {
            both.push(Curve {
                name: format!("alpha {} baseline (dashed)", r.slope),
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
    let learned: Vec<(usize, &AlphaRuns)> = (runs.iter().enumerate())
        .filter(|(_, r)| r.slope.learned())
        .collect();
    let areas = root.split_evenly((1, 3 + usize::from(!learned.is_empty())));
    for (i, (area, panel)) in areas.iter().zip(&panels).enumerate() {
        let curves = if i == 0 { &knocked } else { &both };
        draw_panel(area, panel, curves, 0.0).map_err(|x| e(&x))?;
    }
    if let Some(area) = areas.get(3) {
        let mut lines = Vec::new();
        for (i, r) in learned {
            let name = format!("alpha {}", r.slope);
            lines.extend(slope_lines(&r.knockout, Some(name), i));
        }
        let panel = XyPanel {
            title: "learned slopes (mean; min and max dashed)",
            x_desc: "step",
            y_desc: "slope",
            x_ticks: whole,
            legend: SeriesLabelPosition::UpperRight,
        };
        draw_xy(area, &panel, &lines).map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// One line of an x-y panel: name in the legend (`None`: not listed), points, colour index,
/// dashed or not, and whether its points are marked.
struct Line {
    name: Option<String>,
    points: Vec<(f64, f64)>,
    color: usize,
    dashed: bool,
    marks: Option<Mark>,
}

/// How a line's points are marked.
#[derive(Clone, Copy)]
enum Mark {
    Dot,
    Ring,
    Cross,
}

/// Title, axis labels and x tick labels of an x-y panel.
struct XyPanel {
    title: &'static str,
    x_desc: &'static str,
    y_desc: &'static str,
    x_ticks: fn(&f64) -> String,
    legend: SeriesLabelPosition,
}

/// Steps as whole numbers.
fn whole(x: &f64) -> String {
    format!("{x:.0}")
}

/// The learned slopes of a run over training: mean solid, min and max dashed, from the probes
/// (or the evaluations when there were none).
fn slope_lines(run: &Run, name: Option<String>, color: usize) -> Vec<Line> {
    let series: Vec<(f64, crate::model::SlopeStats)> = match run.probes.is_empty() {
        true => (run.history.iter())
            .map(|p| (p.step as f64, p.slope))
            .collect(),
        false => (run.probes.iter())
            .map(|p| (p.step as f64, p.slope))
            .collect(),
    };
    let line = |name: Option<String>, get: fn(&crate::model::SlopeStats) -> f64, dashed| Line {
        name,
        points: series.iter().map(|(x, s)| (*x, get(s))).collect(),
        color,
        dashed,
        marks: None,
    };
    let mut lines = vec![line(name, |s| s.mean, false)];
    if series.iter().any(|(_, s)| s.min != s.max) {
        lines.push(line(None, |s| s.min, true));
        lines.push(line(None, |s| s.max, true));
    }
    lines
}

fn draw_xy<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &XyPanel,
    lines: &[Line],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("plot: {x}");
    let all: Vec<(f64, f64)> = (lines.iter())
        .flat_map(|l| l.points.iter().copied())
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    let range = |get: fn(&(f64, f64)) -> f64, min_pad: f64| {
        let (lo, hi) = (all.iter()).fold((f64::MAX, f64::MIN), |(a, b), p| {
            (a.min(get(p)), b.max(get(p)))
        });
        let (lo, hi) = if all.is_empty() { (0.0, 1.0) } else { (lo, hi) };
        let pad = ((hi - lo) * 0.05).max(min_pad);
        (lo - pad)..(hi + pad)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(range(|p| p.0, 0.01), range(|p| p.1, 0.005))
        .map_err(e)?;
    (chart.configure_mesh())
        .x_desc(panel.x_desc)
        .y_desc(panel.y_desc)
        .x_labels(8)
        .x_label_formatter(&panel.x_ticks)
        .draw()
        .map_err(e)?;
    for l in lines {
        let color = COLORS[l.color % COLORS.len()];
        let style = color.stroke_width(if l.dashed { 1 } else { 2 });
        let points: Vec<(f64, f64)> = (l.points.iter().copied())
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        if let Some(m) = l.marks {
            let marks = points.iter().map(move |&p| -> DynElement<DB, (f64, f64)> {
                match m {
                    Mark::Dot => Circle::new(p, 4, color.filled()).into_dyn(),
                    Mark::Ring => Circle::new(p, 4, color.stroke_width(1)).into_dyn(),
                    Mark::Cross => Cross::new(p, 5, color.stroke_width(2)).into_dyn(),
                }
            });
            chart.draw_series(marks).map_err(e)?;
        }
        let drawn = match (l.marks, l.dashed) {
            (Some(_), _) if l.name.is_none() => None,
            (_, true) => {
                Some(chart.draw_series(DashedLineSeries::new(points.clone(), 6, 4, style)))
            }
            (_, false) => Some(chart.draw_series(LineSeries::new(points.clone(), style))),
        };
        if let (Some(series), Some(name)) = (drawn, &l.name) {
            let legend = move |(x, y): (i32, i32)| PathElement::new([(x, y), (x + 20, y)], style);
            series.map_err(e)?.label(name.as_str()).legend(legend);
        }
    }
    (chart.configure_series_labels())
        .position(panel.legend.clone())
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(e)?;
    Ok(())
}

/// `sweep`: left, validation loss at the end against the slope (fixed slopes: a mark per seed
/// and a line through the seeds' means, knockout runs solid, baselines dashed; learned slopes:
/// a cross per seed at its mean learned slope); right, the learned slopes over training.
pub fn plot_sweep(path: &Path, seeds: &[(u64, Vec<AlphaRuns>)]) -> Result<()> {
    let e = |x: &dyn std::fmt::Display| anyhow!("plot {}: {x}", path.display());
    let root = SVGBackend::new(path, (1300, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let end = |r: &Run| match r.diverged {
        Some(_) => f64::NAN,
        None => r.last().val_loss,
    };
    let specs: Vec<SlopeSpec> = seeds
        .first()
        .map_or(Vec::new(), |(_, r)| r.iter().map(|r| r.slope).collect());
    let mut loss = Vec::new();
    for (color, baseline) in [(0, false), (1, true)] {
        let kind = if baseline { "baseline" } else { "knockout" };
        let get = |r: &AlphaRuns| match baseline {
            true => r.baseline.as_ref().map_or(f64::NAN, end),
            false => end(&r.knockout),
        };
        let mut means = Vec::new();
        let mut marks = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let SlopeSpec::Fixed(a) = *spec else { continue };
            let vals: Vec<f64> = (seeds.iter())
                .filter_map(|(_, r)| r.get(i).map(get))
                .filter(|v| v.is_finite())
                .collect();
            marks.extend(vals.iter().map(|&v| (a, v)));
            if !vals.is_empty() {
                means.push((a, vals.iter().sum::<f64>() / vals.len() as f64));
            }
        }
        loss.push(Line {
            name: Some(format!("fixed slope, {kind} (mean of seeds)")),
            points: means,
            color,
            dashed: baseline,
            marks: None,
        });
        loss.push(Line {
            name: None,
            points: marks,
            color,
            dashed: baseline,
            marks: Some(if baseline { Mark::Ring } else { Mark::Dot }),
        });
    }
    let mut slopes = Vec::new();
    let learned = specs.iter().enumerate().filter(|(_, s)| s.learned());
    for (j, (i, spec)) in learned.enumerate() {
        let color = 2 + j;
        let ends: Vec<(f64, f64)> = (seeds.iter())
            .filter_map(|(_, r)| r.get(i))
            .map(|r| (r.knockout.last().slope.mean, end(&r.knockout)))
            .collect();
        loss.push(Line {
            name: Some(format!("{spec}, knockout (at its mean slope)")),
            points: Vec::new(),
            color,
            dashed: false,
            marks: None,
        });
        loss.push(Line {
            name: None,
            points: ends,
            color,
            dashed: false,
            marks: Some(Mark::Cross),
        });
        for (k, (_, runs)) in seeds.iter().enumerate() {
            if let Some(r) = runs.get(i) {
                let name = (k == 0).then(|| format!("{spec}, one line per seed"));
                slopes.extend(slope_lines(&r.knockout, name, color));
            }
        }
    }
    let areas = root.split_evenly((1, 1 + usize::from(!slopes.is_empty())));
    let panel = XyPanel {
        title: "validation loss at the end against the slope",
        x_desc: "slope",
        y_desc: "nats/char",
        x_ticks: |x| format!("{x:.1}"),
        legend: SeriesLabelPosition::UpperLeft,
    };
    draw_xy(&areas[0], &panel, &loss).map_err(|x| e(&x))?;
    if let Some(area) = areas.get(1) {
        let panel = XyPanel {
            title: "learned slopes, knockout runs (mean; min and max dashed)",
            x_desc: "step",
            y_desc: "slope",
            x_ticks: whole,
            legend: SeriesLabelPosition::UpperRight,
        };
        draw_xy(area, &panel, &slopes).map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
