//! Line charts rendered to PNG: the plots that `rstar evolve` (per-round accuracy) and the
//! evaluation harness (accuracy against compute) write beside their tables.
//!
//! Owns: the chart layout (title, axes, grid, legend), drawn by `plotters` on its bitmap backend
//! into an RGB buffer, labelled with DejaVu Sans embedded in the binary (crate `dejavu`), and
//! encoded by `png`. No system library or font is needed. A leaf room: it imports only the error
//! type, so every higher room may draw with it.

use std::sync::OnceLock;

use plotters::prelude::*;

use crate::error::{Error, Result};

/// One line of a chart: `(x, y)` points, drawn in order with a marker on each.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub color: [u8; 3],
    pub points: Vec<(f64, f64)>,
}

/// What a chart shows besides its series.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// y values are fractions in [0, 1], labelled in percent; otherwise the axis spans the data.
    pub y_fraction: bool,
    /// x ticks only at whole numbers (rounds, levels).
    pub integer_x: bool,
}

/// A rendered chart: the PNG file's bytes, and where each series' points landed (pixels from the
/// top left, series by series), so that callers and tests can check the drawing.
#[derive(Debug, Clone)]
pub struct Plot {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<Vec<(i32, i32)>>,
}

const WIDTH: u32 = 720;
const HEIGHT: u32 = 440;
const FONT: &str = "sans-serif";

fn draw_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("drawing a chart: {e}"))
}

/// Registers the embedded font once per process (plotters keeps fonts in a global table).
fn font_ready() -> Result<()> {
    static READY: OnceLock<bool> = OnceLock::new();
    let ok = *READY.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(draw_err("the embedded DejaVu Sans font did not load"))
    }
}

/// The span of the data along one axis, widened so that a single value or a flat line still
/// gets a visible range.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        (0.0, 1.0)
    } else if hi - lo < 1e-12 {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo, hi)
    }
}

/// Renders `series` as a line chart of `WIDTH` x `HEIGHT` pixels.
pub fn line_chart(chart: &Chart, series: &[Series]) -> Result<Plot> {
    font_ready()?;
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = span(all().map(|p| p.0));
    let (y0, y1) = if chart.y_fraction {
        (0.0, 1.0)
    } else {
        span(all().map(|p| p.1))
    };
    let mut rgb = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    let pixels = draw(&mut rgb, chart, series, (x0, x1), (y0, y1))?;
    Ok(Plot {
        png: encode_png(&rgb, WIDTH, HEIGHT)?,
        width: WIDTH,
        height: HEIGHT,
        pixels,
    })
}

fn draw(
    rgb: &mut [u8],
    chart: &Chart,
    series: &[Series],
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> Result<Vec<Vec<(i32, i32)>>> {
    let root = BitMapBackend::with_buffer(rgb, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let mut ctx = ChartBuilder::on(&root)
        .caption(&chart.title, (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(draw_err)?;
    let x_ticks = if chart.integer_x {
        ((x1 - x0).round() as usize + 1).clamp(2, 12)
    } else {
        10
    };
    let fraction = chart.y_fraction;
    let integer_x = chart.integer_x;
    ctx.configure_mesh()
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .x_labels(x_ticks)
        .x_label_formatter(&|v| {
            if integer_x {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        })
        .y_label_formatter(&|v| {
            if fraction {
                format!("{:.0}%", v * 100.0)
            } else {
                format!("{v}")
            }
        })
        .draw()
        .map_err(draw_err)?;
    for s in series {
        let color = RGBColor(s.color[0], s.color[1], s.color[2]);
        ctx.draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
            .map_err(draw_err)?
            .label(s.label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 10, y + 4)], color.filled()));
        ctx.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(draw_err)?;
    }
    ctx.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 13))
        .draw()
        .map_err(draw_err)?;
    let pixels = series
        .iter()
        .map(|s| s.points.iter().map(|p| ctx.backend_coord(p)).collect())
        .collect();
    root.present().map_err(draw_err)?;
    Ok(pixels)
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(draw_err)?;
    w.write_image_data(rgb).map_err(draw_err)?;
    w.finish().map_err(draw_err)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
        let mut r = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        (info.width as usize, info.height as usize, buf)
    }

    #[test]
    fn points_land_in_their_colors_in_axis_order() {
        let a = Series {
            label: "greedy".into(),
            color: [30, 90, 200],
            points: vec![(0.0, 0.655), (1.0, 0.68), (2.0, 0.7)],
        };
        let b = Series {
            label: "ppm".into(),
            color: [220, 110, 20],
            points: vec![(1.0, 0.1), (2.0, 0.25)],
        };
        let chart = Chart {
            title: "rounds".into(),
            x_label: "round".into(),
            y_label: "accuracy".into(),
            y_fraction: true,
            integer_x: true,
        };
        let plot = line_chart(&chart, &[a.clone(), b.clone()]).unwrap();
        assert_eq!(&plot.png[..8], b"\x89PNG\r\n\x1a\n");
        let (w, h, px) = decode(&plot.png);
        assert_eq!((w as u32, h as u32), (plot.width, plot.height));
        let at = |(x, y): (i32, i32)| {
            let i = (y as usize * w + x as usize) * 3;
            px[i..i + 3].to_vec()
        };
        for (s, pixels) in [&a, &b].iter().zip(&plot.pixels) {
            assert_eq!(pixels.len(), s.points.len());
            for &p in pixels {
                assert_eq!(at(p), s.color.to_vec(), "{} at {p:?}", s.label);
            }
        }
        // y runs upward (70% above 65.5%, 10% below both); x runs right.
        let (pa, pb) = (&plot.pixels[0], &plot.pixels[1]);
        assert!(pa[2].1 < pa[0].1 && pb[0].1 > pa[0].1);
        assert!(pa[2].0 > pa[1].0 && pa[1].0 > pa[0].0);
        // A fraction of 1.0 sits at the top of the plot area, 0.0 at its bottom: 10% is nearer
        // the bottom than the top.
        assert!(pb[0].1 > (h as i32) / 2);
        // The title was drawn: the band above the plot area has dark pixels.
        let dark = |y: usize| (0..w).any(|x| px[(y * w + x) * 3] < 100);
        assert!((4..30).any(dark));
        // The bottom-left corner, outside the axes' labels, stays white.
        assert_eq!(at((2, h as i32 - 3)), vec![255, 255, 255]);
    }

    #[test]
    fn empty_and_flat_data_still_render() {
        let chart = Chart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            y_fraction: false,
            integer_x: false,
        };
        assert!(line_chart(&chart, &[]).is_ok());
        let flat = Series {
            label: "flat".into(),
            color: [0, 0, 0],
            points: vec![(3.0, 5.0), (3.0, 5.0)],
        };
        let plot = line_chart(&chart, &[flat]).unwrap();
        assert_eq!(plot.pixels[0].len(), 2);
    }
}
