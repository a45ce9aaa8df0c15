// Over 700 lines: every figure the reports draw, each a short function over one palette and axis style.
//! Figures for reports, drawn with plotters into PNG bytes (no files, no clock).
//!
//! Text uses DejaVu Sans, embedded in the binary (`assets/`, Bitstream Vera
//! licence), so figures render the same on every machine without system fonts.
//! Every function returns PNG bytes or a [`PlotError`].

use std::sync::Once;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

/// A figure could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {figure}: {why}")]
pub struct PlotError {
    pub figure: &'static str,
    pub why: String,
}

const FONT: &str = "sans-serif";
static FONT_INIT: Once = Once::new();

fn init_font() {
    FONT_INIT.call_once(|| {
        let _ = register_font(FONT, FontStyle::Normal, include_bytes!("../../assets/DejaVuSans.ttf"));
    });
}

/// Two series' colours: pre-trained (blue) and tuned (orange).
pub const PRE: RGBColor = RGBColor(31, 119, 180);
pub const POST: RGBColor = RGBColor(255, 127, 14);

/// Line colours in order (matplotlib's first seven).
const PALETTE: [RGBColor; 7] = [
    PRE,
    POST,
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

/// Draw with `draw` on a `w × h` white canvas: the raw RGB pixels.
fn render_rgb<F>(figure: &'static str, w: u32, h: u32, draw: F) -> Result<Vec<u8>, PlotError>
where
    F: FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<(), String>,
{
    init_font();
    let err = |why: String| PlotError { figure, why };
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        draw(&root).map_err(err)?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(rgb)
}

/// Render with `draw` on a `w × h` white canvas and encode as PNG.
fn render<F>(figure: &'static str, w: u32, h: u32, draw: F) -> Result<Vec<u8>, PlotError>
where
    F: FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<(), String>,
{
    let rgb = render_rgb(figure, w, h, draw)?;
    let err = |why: String| PlotError { figure, why };
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| err(e.to_string()))?;
        writer.write_image_data(&rgb).map_err(|e| err(e.to_string()))?;
    }
    Ok(out)
}

/// Draw a chart's legend in the house style: boxed, on a translucent white
/// background, with `size`-point text at `position`.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    size: u32,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .label_font((FONT, size))
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .position(position)
        .draw()
        .map_err(e2s)
}

/// A panel over the rectangle `x × y` for a field drawn cell by cell: titled,
/// labelled, without grid lines (the heatmaps and the point-over-field panels).
fn field_chart<'a, 'b>(
    area: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    title: &str,
    (xl, yl): (&str, &str),
    x: (f64, f64),
    y: (f64, f64),
) -> Result<ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>, String> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 19))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(48)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)
        .map_err(e2s)?;
    chart.configure_mesh().disable_mesh().x_desc(xl).y_desc(yl).label_style((FONT, 13)).draw().map_err(e2s)?;
    Ok(chart)
}

fn e2s<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// Scatter of one or more point sets (colours in order: blue, orange) on the
/// rectangle `x × y`; points outside it are left out, the legend counts all.
pub fn scatter(
    title: &str,
    (xl, yl): (&str, &str),
    x: (f64, f64),
    y: (f64, f64),
    sets: &[(&str, &[(f64, f64)])],
) -> Result<Vec<u8>, PlotError> {
    let side = |r: (f64, f64)| r.1 - r.0;
    let h = (740.0 * side(y) / side(x)).clamp(400.0, 900.0) as u32 + 20;
    render("scatter", 800, h, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(56)
            .build_cartesian_2d(x.0..x.1, y.0..y.1)
            .map_err(e2s)?;
        chart.configure_mesh().x_desc(xl).y_desc(yl).label_style((FONT, 15)).draw().map_err(e2s)?;
        let inside = |(a, b): &(f64, f64)| *a >= x.0 && *a < x.1 && *b >= y.0 && *b < y.1;
        for ((name, pts), color) in sets.iter().zip([PRE, POST]) {
            chart
                .draw_series(pts.iter().filter(|p| inside(p)).map(|(a, b)| Cross::new((*a, *b), 3, color.mix(0.45))))
                .map_err(e2s)?
                .label(format!("{name} ({})", pts.len()))
                .legend(move |(x, y)| Circle::new((x, y), 5, color.filled()));
        }
        legend(&mut chart, 16, SeriesLabelPosition::UpperRight)
    })
}

/// Triangles drawn in the plane as the seed's `plot_triangle`: A = (0, 0),
/// B = (c, 0), C from the law of cosines (clipped). Two panels: valid, invalid.
pub fn triangles(valid: &[[f64; 3]], invalid: &[[f64; 3]]) -> Result<Vec<u8>, PlotError> {
    render("triangles", 1200, 560, |root| {
        let panels = root.split_evenly((1, 2));
        let palette = PALETTE;
        for (area, (title, tris)) in panels.iter().zip([("valid samples", valid), ("invalid samples", invalid)]) {
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{title} ({} shown)", tris.len()), (FONT, 22))
                .margin(14)
                .x_label_area_size(36)
                .y_label_area_size(44)
                .build_cartesian_2d(-0.6f64..1.4, -0.6f64..1.4)
                .map_err(e2s)?;
            chart.configure_mesh().label_style((FONT, 13)).draw().map_err(e2s)?;
            for (i, [a, b, c]) in tris.iter().enumerate() {
                let cos = ((a * a + c * c - b * b) / (2.0 * a * c)).clamp(-1.0, 1.0);
                let ang = cos.acos();
                let pts = [(0.0, 0.0), (*c, 0.0), (a * ang.cos(), a * ang.sin()), (0.0, 0.0)];
                if pts.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
                    continue;
                }
                let color = palette[i % palette.len()];
                chart
                    .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                    .map_err(e2s)?
                    .label(format!("({a:.2}, {b:.2}, {c:.2})"))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
                chart.draw_series(pts[..3].iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(e2s)?;
            }
            legend(&mut chart, 13, SeriesLabelPosition::UpperLeft)?;
        }
        Ok(())
    })
}

/// A panel of line series over a shared x axis.
pub struct Lines<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    /// The x axis counts something (steps, epochs): label integers only.
    pub x_integer: bool,
    pub series: Vec<(&'a str, Vec<(f64, f64)>)>,
}

/// Tick labels for an axis that counts: integers only, without a decimal point.
fn integer_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-9 { format!("{}", x.round() as i64) } else { String::new() }
}

/// Several line panels side by side.
pub fn line_panels(panels: &[Lines]) -> Result<Vec<u8>, PlotError> {
    let w = 560 * panels.len() as u32;
    render("lines", w, 460, |root| {
        let areas = root.split_evenly((1, panels.len()));
        let colors = PALETTE;
        for (area, panel) in areas.iter().zip(panels) {
            let pts = panel.series.iter().flat_map(|s| s.1.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
            let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
            for (x, y) in pts {
                (x0, x1, y0, y1) = (x0.min(*x), x1.max(*x), y0.min(*y), y1.max(*y));
            }
            if x0 > x1 {
                (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
            }
            // A flat series (a constant learning rate) still gets a readable range.
            let flat = y1 - y0 <= 1e-6 * y1.abs().max(y0.abs());
            let pad = if flat { y1.abs().max(y0.abs()) * 0.05 } else { (y1 - y0) * 0.08 }.max(1e-9);
            let mut chart = ChartBuilder::on(area)
                .caption(panel.title, (FONT, 20))
                .margin(14)
                .x_label_area_size(42)
                .y_label_area_size(60)
                .build_cartesian_2d(x0..x1.max(x0 + 1e-9), (y0 - pad)..(y1 + pad))
                .map_err(e2s)?;
            let mut mesh = chart.configure_mesh();
            mesh.x_desc(panel.x_desc).y_desc(panel.y_desc).label_style((FONT, 13));
            if panel.x_integer {
                // A short count (5 outer epochs) gets one tick per integer; a long one
                // (1600 steps) gets plotters' round ticks, printed without decimals.
                let span = (x1 - x0).round() as usize;
                if span <= 12 {
                    mesh.x_labels(2 * span + 1);
                }
                mesh.x_label_formatter(&integer_label);
            }
            mesh.draw().map_err(e2s)?;
            for (i, (name, s)) in panel.series.iter().enumerate() {
                let color = colors[i % colors.len()];
                chart
                    .draw_series(LineSeries::new(s.iter().copied(), color.stroke_width(2)))
                    .map_err(e2s)?
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            }
            legend(&mut chart, 13, SeriesLabelPosition::MiddleRight)?;
        }
        Ok(())
    })
}

/// Grouped bars: for each category, one bar per series.
pub fn grouped_bars(
    title: &str,
    y_desc: &str,
    categories: &[&str],
    series: &[(&str, Vec<f64>)],
) -> Result<Vec<u8>, PlotError> {
    render("bars", 1000, 520, |root| {
        let ymax = series.iter().flat_map(|s| s.1.iter()).copied().fold(0.0, f64::max).max(1e-9) * 1.12;
        let n = categories.len();
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, 0f64..ymax)
            .map_err(e2s)?;
        let cats: Vec<String> = categories.iter().map(|c| c.to_string()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 1e-6 && i < cats.len() { cats[i].clone() } else { String::new() }
            })
            .y_desc(y_desc)
            .label_style((FONT, 14))
            .draw()
            .map_err(e2s)?;
        let k = series.len() as f64;
        let value_style = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        for (j, (name, values)) in series.iter().enumerate() {
            let color = [PRE, POST][j % 2];
            let x0 = |i: usize| i as f64 + 0.1 + 0.8 * j as f64 / k;
            chart
                .draw_series(
                    values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| Rectangle::new([(x0(i), 0.0), (x0(i) + 0.8 / k, *v)], color.filled())),
                )
                .map_err(e2s)?
                .label(*name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
            // The value above each bar, so small shares can be read.
            chart
                .draw_series(values.iter().enumerate().map(|(i, v)| {
                    Text::new(format!("{v:.3}"), (x0(i) + 0.4 / k, *v + ymax * 0.01), value_style.clone())
                }))
                .map_err(e2s)?;
        }
        legend(&mut chart, 14, SeriesLabelPosition::MiddleRight)
    })
}

/// One panel of a [`heatmaps`] figure: `values[i * bins + j]` is the cell of
/// the `i`-th x bin and `j`-th y bin.
pub struct Heat<'a> {
    pub title: &'a str,
    pub values: Vec<f64>,
    /// A signed quantity (a difference): a blue–white–orange scale symmetric
    /// about 0. Otherwise a density: viridis from 0 to the largest value of all
    /// density panels (one scale for all, so they compare), empty cells white.
    pub diverging: bool,
}

/// Histograms (or their differences) on a `bins × bins` grid over `x × y`,
/// panels side by side, each with its colour bar.
pub fn heatmaps(
    (xl, yl): (&str, &str),
    x: (f64, f64),
    y: (f64, f64),
    bins: usize,
    scale_desc: &str,
    panels: &[Heat],
) -> Result<Vec<u8>, PlotError> {
    use plotters::style::colors::colormaps::{DerivedColorMap, ViridisRGB};
    let finite = |v: &&f64| v.is_finite();
    let dens_max = panels
        .iter()
        .filter(|p| !p.diverging)
        .flat_map(|p| p.values.iter())
        .filter(finite)
        .fold(0.0f64, |m, v| m.max(*v))
        .max(1e-12);
    let diverging = DerivedColorMap::new(&[PRE, WHITE, POST]);
    render("heatmaps", 540 * panels.len() as u32, 500, |root| {
        let areas = root.split_evenly((1, panels.len()));
        let (dx, dy) = ((x.1 - x.0) / bins as f64, (y.1 - y.0) / bins as f64);
        for (area, panel) in areas.iter().zip(panels) {
            let (plot_area, bar_area) = area.split_horizontally(area.dim_in_pixel().0 - 104);
            let (lo, hi) = if panel.diverging {
                let m = panel.values.iter().filter(finite).fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
                (-m, m)
            } else {
                (0.0, dens_max)
            };
            let color = |v: f64| -> RGBColor {
                if panel.diverging {
                    diverging.get_color_normalized(v.clamp(lo, hi), lo, hi)
                } else if v <= 0.0 {
                    WHITE
                } else {
                    ViridisRGB.get_color_normalized(v.min(hi), lo, hi)
                }
            };
            let mut chart = field_chart(&plot_area, panel.title, (xl, yl), x, y)?;
            chart
                .draw_series((0..bins * bins).filter(|k| panel.values[*k].is_finite()).map(|k| {
                    let (i, j) = (k / bins, k % bins);
                    let (x0, y0) = (x.0 + i as f64 * dx, y.0 + j as f64 * dy);
                    Rectangle::new([(x0, y0), (x0 + dx, y0 + dy)], color(panel.values[k]).filled())
                }))
                .map_err(e2s)?;
            let mut bar = ChartBuilder::on(&bar_area)
                .caption(scale_desc, (FONT, 12))
                .margin_top(14)
                .margin_bottom(52)
                .margin_left(4)
                .right_y_label_area_size(56)
                .build_cartesian_2d(0f64..1.0, lo..hi)
                .map_err(e2s)?;
            bar.configure_mesh()
                .disable_mesh()
                .disable_x_axis()
                .y_labels(5)
                .y_label_formatter(&|v| if panel.diverging { format!("{v:+.2}") } else { format!("{v:.2}") })
                .label_style((FONT, 13))
                .draw()
                .map_err(e2s)?;
            let steps = 100;
            bar.draw_series((0..steps).map(|s| {
                let (a, b) = (lo + (hi - lo) * s as f64 / steps as f64, lo + (hi - lo) * (s + 1) as f64 / steps as f64);
                Rectangle::new([(0.0, a), (1.0, b)], color(0.5 * (a + b)).filled())
            }))
            .map_err(e2s)?;
        }
        Ok(())
    })
}

/// An arrow: (x, y, dx, dy).
pub type Arrow = (f64, f64, f64, f64);

/// A vector field on a grid: `(x, y, dx, dy)` arrows, one panel per field,
/// arrows scaled by the largest magnitude across panels.
pub fn quiver(
    title: &str,
    (xl, yl): (&str, &str),
    range: (f64, f64),
    fields: &[(&str, Vec<Arrow>)],
) -> Result<Vec<u8>, PlotError> {
    render("quiver", 560 * fields.len() as u32, 560, |root| {
        let areas = root.split_evenly((1, fields.len()));
        let max = fields
            .iter()
            .flat_map(|f| f.1.iter())
            .map(|(_, _, dx, dy)| (dx * dx + dy * dy).sqrt())
            .filter(|m| m.is_finite())
            .fold(0.0, f64::max)
            .max(1e-12);
        let n = (fields.first().map_or(1, |f| f.1.len()) as f64).sqrt().max(1.0);
        let cell = (range.1 - range.0) / n;
        for ((area, (name, field)), color) in areas.iter().zip(fields).zip([PRE, POST].into_iter().cycle()) {
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{title}: {name}"), (FONT, 19))
                .margin(14)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(range.0..range.1, range.0..range.1)
                .map_err(e2s)?;
            chart.configure_mesh().x_desc(xl).y_desc(yl).label_style((FONT, 13)).draw().map_err(e2s)?;
            for (x, y, dx, dy) in field {
                if !(dx.is_finite() && dy.is_finite()) {
                    continue;
                }
                let s = 0.9 * cell / max;
                let (ex, ey) = (x + dx * s, y + dy * s);
                let len = ((ex - x).powi(2) + (ey - y).powi(2)).sqrt();
                let style = color.stroke_width(2);
                chart.draw_series(std::iter::once(PathElement::new(vec![(*x, *y), (ex, ey)], style))).map_err(e2s)?;
                if len > 1e-9 {
                    // Arrowhead: two short strokes at ±25° from the shaft.
                    let (ux, uy) = ((x - ex) / len, (y - ey) / len);
                    let h = len.min(cell * 0.35) * 0.45;
                    for a in [0.44f64, -0.44] {
                        let (c, sn) = (a.cos(), a.sin());
                        let (hx, hy) = (ux * c - uy * sn, ux * sn + uy * c);
                        chart
                            .draw_series(std::iter::once(PathElement::new(
                                vec![(ex, ey), (ex + hx * h, ey + hy * h)],
                                style,
                            )))
                            .map_err(e2s)?;
                    }
                }
            }
        }
        Ok(())
    })
}

/// One metric of a sweep against a swept value: every instance's point, and
/// the median over the instances at each value.
pub struct SweepPanel {
    pub title: String,
    pub x_desc: String,
    /// Tick labels when the swept values are not numbers (x = 0, 1, 2, …).
    pub categories: Option<Vec<String>>,
    pub points: Vec<(f64, f64)>,
    pub median: Vec<(f64, f64)>,
}

/// Sweep panels in a grid, three to a row.
pub fn sweep_panels(panels: &[SweepPanel]) -> Result<Vec<u8>, PlotError> {
    let cols = panels.len().clamp(1, 3);
    let rows = panels.len().div_ceil(cols).max(1);
    render("sweep", 440 * cols as u32, 340 * rows as u32, |root| {
        let areas = root.split_evenly((rows, cols));
        for (area, p) in areas.iter().zip(panels) {
            let finite = || p.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite());
            let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
            for (x, y) in finite() {
                (x0, x1, y0, y1) = (x0.min(*x), x1.max(*x), y0.min(*y), y1.max(*y));
            }
            if x0 > x1 {
                (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
            }
            let xpad = ((x1 - x0) * 0.08).max(0.5);
            let ypad = ((y1 - y0) * 0.1).max(1e-6 * y1.abs().max(1e-9));
            let mut chart = ChartBuilder::on(area)
                .caption(&p.title, (FONT, 16))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(64)
                .build_cartesian_2d((x0 - xpad)..(x1 + xpad), (y0 - ypad)..(y1 + ypad))
                .map_err(e2s)?;
            let mut mesh = chart.configure_mesh();
            mesh.x_desc(p.x_desc.as_str()).label_style((FONT, 12));
            let label = |x: &f64| -> String {
                let i = x.round();
                match &p.categories {
                    Some(c) if (x - i).abs() < 1e-9 && i >= 0.0 && (i as usize) < c.len() => c[i as usize].clone(),
                    Some(_) => String::new(),
                    None => format!("{x}"),
                }
            };
            if let Some(c) = &p.categories {
                mesh.x_labels(c.len().max(2));
            }
            mesh.x_label_formatter(&label);
            mesh.draw().map_err(e2s)?;
            chart
                .draw_series(finite().map(|&(x, y)| Circle::new((x, y), 4, PRE.mix(0.6).filled())))
                .map_err(e2s)?
                .label("instances")
                .legend(|(x, y)| Circle::new((x, y), 4, PRE.filled()));
            if !p.median.is_empty() {
                chart
                    .draw_series(LineSeries::new(p.median.iter().copied(), POST.stroke_width(2)))
                    .map_err(e2s)?
                    .label("median")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], POST.stroke_width(2)));
            }
            legend(&mut chart, 11, SeriesLabelPosition::UpperRight)?;
        }
        Ok(())
    })
}

/// One panel of [`points_on_field`].
pub struct PointPanel<'a> {
    pub title: &'a str,
    pub points: &'a [(f64, f64)],
}

/// Point sets drawn over a shaded scalar field (a log-density: darker is
/// higher), one panel each, side by side. `field[i * bins + j]` is the `i`-th
/// x bin and `j`-th y bin, in `[0, 1]` (the caller normalises it).
pub fn points_on_field(
    (xl, yl): (&str, &str),
    x: (f64, f64),
    y: (f64, f64),
    field: &[f64],
    bins: usize,
    panels: &[PointPanel],
) -> Result<Vec<u8>, PlotError> {
    render("points_on_field", 500 * panels.len() as u32, 520, |root| {
        let areas = root.split_evenly((1, panels.len()));
        let (dx, dy) = ((x.1 - x.0) / bins as f64, (y.1 - y.0) / bins as f64);
        for (area, panel) in areas.iter().zip(panels) {
            let title = format!("{} ({})", panel.title, panel.points.len());
            let mut chart = field_chart(area, &title, (xl, yl), x, y)?;
            chart
                .draw_series((0..bins * bins).map(|k| {
                    let (i, j) = (k / bins, k % bins);
                    let (x0, y0) = (x.0 + i as f64 * dx, y.0 + j as f64 * dy);
                    let g = (255.0 - 150.0 * field[k].clamp(0.0, 1.0)) as u8;
                    Rectangle::new([(x0, y0), (x0 + dx, y0 + dy)], RGBColor(g, g, g).filled())
                }))
                .map_err(e2s)?;
            let inside = |(a, b): &&(f64, f64)| *a >= x.0 && *a < x.1 && *b >= y.0 && *b < y.1;
            chart
                .draw_series(panel.points.iter().filter(inside).map(|(a, b)| Circle::new((*a, *b), 2, POST.filled())))
                .map_err(e2s)?;
        }
        Ok(())
    })
}

/// A point drawn in its own colour.
pub type ColoredPoint = (f64, f64, [u8; 3]);

/// One panel of [`colored_scatter`].
pub struct ColoredPanel<'a> {
    pub title: String,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub points: &'a [ColoredPoint],
    /// The points' radius in pixels.
    pub radius: i32,
}

fn draw_colored(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    panel: &ColoredPanel,
    range: (f64, f64),
) -> Result<(), String> {
    let inside = |p: &&ColoredPoint| p.0 >= range.0 && p.0 < range.1 && p.1 >= range.0 && p.1 < range.1;
    let outside = panel.points.len() - panel.points.iter().filter(inside).count();
    let title = if outside > 0 { format!("{} ({outside} outside the view)", panel.title) } else { panel.title.clone() };
    let mut chart = ChartBuilder::on(area)
        .caption(&title, (FONT, 16))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(40)
        .build_cartesian_2d(range.0..range.1, range.0..range.1)
        .map_err(e2s)?;
    // A light-grey ground, so whites and pastels show.
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(range.0, range.0), (range.1, range.1)],
            RGBColor(228, 228, 228).filled(),
        )))
        .map_err(e2s)?;
    chart
        .configure_mesh()
        .x_desc(panel.x_desc)
        .y_desc(panel.y_desc)
        .label_style((FONT, 11))
        .light_line_style(WHITE.mix(0.6))
        .bold_line_style(WHITE)
        .draw()
        .map_err(e2s)?;
    // The unit circle, for reference.
    chart
        .draw_series(LineSeries::new(
            (0..=120).map(|k| {
                let a = k as f64 / 120.0 * std::f64::consts::TAU;
                (a.cos(), a.sin())
            }),
            BLACK.mix(0.3),
        ))
        .map_err(e2s)?;
    // Each colour filled in itself with a thin dark outline.
    let r = panel.radius;
    chart
        .draw_series(
            panel
                .points
                .iter()
                .filter(inside)
                .map(|(x, y, c)| Circle::new((*x, *y), r, RGBColor(c[0], c[1], c[2]).filled())),
        )
        .map_err(e2s)?;
    chart
        .draw_series(
            panel.points.iter().filter(inside).map(|(x, y, _)| Circle::new((*x, *y), r, RGBColor(40, 40, 40).mix(0.7))),
        )
        .map_err(e2s)?;
    Ok(())
}

/// The square view `(−h, h)` that holds every point of `panels` with a
/// margin (at least the unit circle's).
pub fn fitted_view(panels: &[&[ColoredPoint]]) -> (f64, f64) {
    let h = panels
        .iter()
        .flat_map(|p| p.iter())
        .map(|p| p.0.abs().max(p.1.abs()))
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    (-1.08 * h, 1.08 * h)
}

/// Scatter panels in a grid of `cols` columns of `size` pixels, every point in
/// its own colour with a dark outline on a grey ground, on the square `range²`
/// with the unit circle drawn; a panel's title counts the points outside it.
pub fn colored_scatter(
    panels: &[ColoredPanel],
    cols: usize,
    size: u32,
    range: (f64, f64),
) -> Result<Vec<u8>, PlotError> {
    let rows = panels.len().div_ceil(cols.max(1));
    render("colored_scatter", size * cols as u32, size * rows as u32, |root| {
        let areas = root.split_evenly((rows, cols));
        for (area, panel) in areas.iter().zip(panels) {
            draw_colored(area, panel, range)?;
        }
        Ok(())
    })
}

/// One frame of [`colored_animation`]: its panels side by side, and the step
/// its cursor marks on the strip below.
pub struct AnimationFrame<'a> {
    pub panels: Vec<ColoredPanel<'a>>,
    pub step: f64,
}

/// An animated PNG (APNG), `delay_ms` a frame, looping: each frame's panels
/// side by side on the square `range²`, and below them a strip of `strip`'s
/// lines (e.g. the schedule's weights) with a cursor at the frame's step.
pub fn colored_animation(
    frames: &[AnimationFrame],
    range: (f64, f64),
    strip: &[(&str, Vec<(f64, f64)>)],
    delay_ms: u16,
) -> Result<Vec<u8>, PlotError> {
    let cols = frames.iter().map(|f| f.panels.len()).max().unwrap_or(1).max(1) as u32;
    let (w, top, strip_h) = (400 * cols, 400u32, if strip.is_empty() { 0u32 } else { 170 });
    let h = top + strip_h;
    let err = |why: String| PlotError { figure: "animation", why };
    let x1 = strip.iter().flat_map(|s| s.1.last()).map(|p| p.0).fold(1.0f64, f64::max);
    let ymax = strip.iter().flat_map(|s| s.1.iter().map(|p| p.1)).filter(|v| v.is_finite()).fold(0.0f64, f64::max);
    let ymax = ymax.max(1e-9) * 1.1;
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_animated(frames.len().max(1) as u32, 0).map_err(|e| err(e.to_string()))?;
        enc.set_frame_delay(delay_ms, 1000).map_err(|e| err(e.to_string()))?;
        let mut writer = enc.write_header().map_err(|e| err(e.to_string()))?;
        for frame in frames {
            let rgb = render_rgb("animation", w, h, |root| {
                let (upper, lower) = root.split_vertically(top);
                let areas = upper.split_evenly((1, cols as usize));
                for (area, panel) in areas.iter().zip(&frame.panels) {
                    draw_colored(area, panel, range)?;
                }
                if strip.is_empty() {
                    return Ok(());
                }
                let mut chart = ChartBuilder::on(&lower)
                    .margin(8)
                    .x_label_area_size(28)
                    .y_label_area_size(50)
                    .build_cartesian_2d(0.0..x1, 0.0..ymax)
                    .map_err(e2s)?;
                chart.configure_mesh().x_desc("step").label_style((FONT, 11)).draw().map_err(e2s)?;
                for (i, (name, pts)) in strip.iter().enumerate() {
                    let color = PALETTE[i % PALETTE.len()];
                    chart
                        .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                        .map_err(e2s)?
                        .label(*name)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2)));
                }
                chart
                    .draw_series(LineSeries::new([(frame.step, 0.0), (frame.step, ymax)], BLACK.stroke_width(2)))
                    .map_err(e2s)?;
                legend(&mut chart, 10, SeriesLabelPosition::UpperRight)
            })?;
            writer.write_image_data(&rgb).map_err(|e| err(e.to_string()))?;
        }
        writer.finish().map_err(|e| err(e.to_string()))?;
    }
    Ok(out)
}

/// One property of a [`timeline`] figure: its values at every step and its keyframes.
pub struct TimelineSeries<'a> {
    pub name: &'a str,
    pub values: Vec<(f64, f64)>,
    pub keys: Vec<(f64, f64)>,
}

/// Named marks on a timeline: (step, name).
pub type Marks<'a> = &'a [(f64, String)];

/// A dopesheet's timeline as the origin draws it: every property but `lr` in
/// a tall panel, `lr` below (on a linear axis as the origin's `plot_timeline`,
/// or log₁₀ with `lr_log`); keyframes as white-filled circles edged in the
/// line's colour; phase starts as grey vertical lines, actions as red dashed
/// lines with their names.
pub fn timeline(
    props: &[TimelineSeries],
    lr: Option<&TimelineSeries>,
    marks: (Marks, Marks),
    lr_log: bool,
) -> Result<Vec<u8>, PlotError> {
    render("timeline", 1100, 640, |root| draw_timeline(root, "Dopesheet timeline", props, lr, marks, lr_log))
}

/// One [`timeline`] figure in its parts, for [`timelines`].
pub struct TimelineParts<'a> {
    pub caption: String,
    pub props: Vec<TimelineSeries<'a>>,
    pub lr: Option<TimelineSeries<'a>>,
    pub phases: Vec<(f64, String)>,
    pub actions: Vec<(f64, String)>,
}

/// Several [`timeline`] figures stacked, each with its caption.
pub fn timelines(parts: &[TimelineParts], lr_log: bool) -> Result<Vec<u8>, PlotError> {
    render("timelines", 1100, 640 * parts.len().max(1) as u32, |root| {
        for (area, t) in root.split_evenly((parts.len().max(1), 1)).iter().zip(parts) {
            draw_timeline(area, &t.caption, &t.props, t.lr.as_ref(), (&t.phases, &t.actions), lr_log)?;
        }
        Ok(())
    })
}

fn draw_timeline(
    root: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    caption: &str,
    props: &[TimelineSeries],
    lr: Option<&TimelineSeries>,
    (phases, actions): (Marks, Marks),
    lr_log: bool,
) -> Result<(), String> {
    let palette = PALETTE;
    {
        let (top, bottom) = root.split_vertically(420);
        let x1 = props.iter().chain(lr).flat_map(|p| p.values.last()).map(|p| p.0).fold(1.0f64, f64::max);
        let ymax = props.iter().flat_map(|p| p.values.iter().map(|v| v.1)).fold(0.0f64, f64::max).max(1e-9) * 1.08;
        let mut chart = ChartBuilder::on(&top)
            .caption(caption, (FONT, 20))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x1, 0.0..ymax)
            .map_err(e2s)?;
        chart.configure_mesh().y_desc("weight").label_style((FONT, 12)).draw().map_err(e2s)?;
        for (x, name) in phases {
            chart.draw_series(LineSeries::new([(*x, 0.0), (*x, ymax)], RGBColor(150, 150, 150))).map_err(e2s)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    name.clone(),
                    (*x, ymax * 0.97),
                    (FONT, 13).into_font().style(FontStyle::Bold),
                )))
                .map_err(e2s)?;
        }
        let action_colour = RGBColor(200, 30, 30);
        for (x, name) in actions {
            chart
                .draw_series(DashedLineSeries::new([(*x, 0.0), (*x, ymax)], 6, 4, action_colour.stroke_width(2)))
                .map_err(e2s)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("▸ {name}"),
                    (*x, ymax * 0.90),
                    (FONT, 13).into_font().color(&action_colour),
                )))
                .map_err(e2s)?;
        }
        for (i, p) in props.iter().enumerate() {
            let color = palette[i % palette.len()];
            chart
                .draw_series(LineSeries::new(p.values.iter().copied(), color.mix(0.75).stroke_width(2)))
                .map_err(e2s)?
                .label(p.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            chart.draw_series(p.keys.iter().map(|k| Circle::new(*k, 4, WHITE.filled()))).map_err(e2s)?;
            chart.draw_series(p.keys.iter().map(|k| Circle::new(*k, 4, color.stroke_width(2)))).map_err(e2s)?;
        }
        legend(&mut chart, 12, SeriesLabelPosition::UpperRight)?;
        if let Some(lr) = lr {
            let f = |v: f64| if lr_log { v.max(1e-12).log10() } else { v };
            let vals: Vec<(f64, f64)> = lr.values.iter().map(|(x, v)| (*x, f(*v))).collect();
            let (lo, hi) = vals.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
            let pad = if lr_log { 0.3 } else { 0.08 * (hi - lo).max(1e-12) };
            let lo = if lr_log { lo - pad } else { 0.0f64.min(lo) };
            let mut c2 = ChartBuilder::on(&bottom)
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..x1, lo..(hi + pad))
                .map_err(e2s)?;
            let desc = if lr_log { "log10 lr" } else { "lr" };
            c2.configure_mesh().x_desc("step").y_desc(desc).label_style((FONT, 12)).draw().map_err(e2s)?;
            c2.draw_series(LineSeries::new(vals, PRE.stroke_width(2))).map_err(e2s)?;
            let keys: Vec<(f64, f64)> = lr.keys.iter().map(|(x, v)| (*x, f(*v))).collect();
            c2.draw_series(keys.iter().map(|k| Circle::new(*k, 4, WHITE.filled()))).map_err(e2s)?;
            c2.draw_series(keys.iter().map(|k| Circle::new(*k, 4, PRE.stroke_width(2)))).map_err(e2s)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        (info.width, info.height, buf)
    }

    #[test]
    fn figures_decode_and_are_not_blank() {
        let pts: Vec<(f64, f64)> = (0..50).map(|i| (i as f64 / 30.0, 1.0 - i as f64 / 80.0)).collect();
        let figs = [
            scatter("uv", ("u", "v"), (0.0, 2.0), (0.0, 2.0), &[("pre", &pts), ("post", &pts[..10])]).unwrap(),
            triangles(&[[0.3, 0.4, 0.5]], &[[0.1, 0.2, 0.6]]).unwrap(),
            line_panels(&[Lines {
                title: "loss",
                x_desc: "step",
                y_desc: "loss",
                x_integer: true,
                series: vec![("loss", pts.clone())],
            }])
            .unwrap(),
            heatmaps(
                ("u", "v"),
                (0.0, 2.0),
                (0.0, 2.0),
                4,
                "share",
                &[
                    Heat { title: "pre", values: (0..16).map(|k| k as f64).collect(), diverging: false },
                    Heat { title: "difference", values: (0..16).map(|k| k as f64 - 8.0).collect(), diverging: true },
                ],
            )
            .unwrap(),
            grouped_bars("types", "fraction", &["a", "b"], &[("pre", vec![0.2, 0.5]), ("post", vec![0.3, 0.4])])
                .unwrap(),
            quiver("field", ("a", "b"), (-1.0, 1.0), &[("pre", vec![(0.0, 0.0, 1.0, 0.5), (0.5, 0.5, -1.0, 0.0)])])
                .unwrap(),
        ];
        for f in figs {
            let (w, h, px) = decode(&f);
            assert!(w > 100 && h > 100);
            let non_white = px.chunks(3).filter(|p| p != &[255, 255, 255]).count();
            assert!(non_white > 1000, "figure is blank: {non_white} coloured pixels");
        }
    }

    #[test]
    fn rendering_is_deterministic() {
        let pts = [(0.5, 0.5), (1.0, 1.5)];
        let a = scatter("uv", ("u", "v"), (0.0, 2.0), (0.0, 2.0), &[("pre", &pts), ("post", &pts)]).unwrap();
        let b = scatter("uv", ("u", "v"), (0.0, 2.0), (0.0, 2.0), &[("pre", &pts), ("post", &pts)]).unwrap();
        assert_eq!(a, b);
    }
}
