//! A line chart of fractions per round, rendered to PNG without any system library: the plot of
//! the self-evolution table (`rstar evolve` writes `rounds.png`). Pixels are drawn here (lines,
//! markers, grid) and labelled with the public-domain 8x8 bitmap font of `font8x8`; `png` encodes.

use font8x8::UnicodeFonts;

use crate::error::{Error, Result};

/// One line of the chart: `(x, y)` points with `y` in [0, 1] (drawn as percent).
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub color: [u8; 3],
    pub points: Vec<(usize, f64)>,
}

/// Geometry of the chart (public for tests that look up where a point lands).
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    left: usize,
    right: usize,
    top: usize,
    bottom: usize,
    x_max: usize,
}

impl Frame {
    pub fn new(x_max: usize) -> Frame {
        Frame {
            width: 720,
            height: 440,
            left: 64,
            right: 24,
            top: 48,
            bottom: 56,
            x_max: x_max.max(1),
        }
    }

    /// The pixel of `(x, y)`.
    pub fn pixel(&self, x: usize, y: f64) -> (usize, usize) {
        let w = self.width - self.left - self.right;
        let h = self.height - self.top - self.bottom;
        let px = self.left + x.min(self.x_max) * w / self.x_max;
        let py = self.top + ((1.0 - y.clamp(0.0, 1.0)) * h as f64).round() as usize;
        (px, py)
    }
}

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            px: vec![255; w * h * 3],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.set(x, y, c);
            }
        }
    }

    /// A line `r` pixels thick (Bresenham, each point a square of side 2r+1).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), r: i64, c: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = ((x1 - x0).signum(), (y1 - y0).signum());
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.rect(x - r, y - r, x + r, y + r, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text with its top-left corner at (x, y), each font pixel `scale` pixels wide.
    fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            let glyph = font8x8::BASIC_FONTS.get(ch).unwrap_or([0; 8]);
            let gx = x + 8 * scale * k as i64;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        let (px, py) = (gx + col * scale, y + row as i64 * scale);
                        self.rect(px, py, px + scale - 1, py + scale - 1, c);
                    }
                }
            }
        }
    }

    fn png(&self) -> Result<Vec<u8>> {
        let err = |e: png::EncodingError| Error::Internal(format!("encoding PNG: {e}"));
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, self.w as u32, self.h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(err)?;
        w.write_image_data(&self.px).map_err(err)?;
        w.finish().map_err(err)?;
        Ok(out)
    }
}

const GRID: [u8; 3] = [225, 225, 225];
const INK: [u8; 3] = [40, 40, 40];

/// A PNG line chart: x from 0 to `x_max` (integer ticks labelled `x_label`), y in percent.
pub fn line_chart(title: &str, x_label: &str, x_max: usize, series: &[Series]) -> Result<Vec<u8>> {
    let f = Frame::new(x_max);
    let mut c = Canvas::new(f.width, f.height);
    let (x0, _) = f.pixel(0, 0.0);
    let (x1, _) = f.pixel(f.x_max, 0.0);
    for k in 0..=5 {
        let (_, y) = f.pixel(0, k as f64 / 5.0);
        c.line((x0 as i64, y as i64), (x1 as i64, y as i64), 0, GRID);
        let label = format!("{}%", 20 * k);
        c.text(
            x0 as i64 - 8 - 8 * label.len() as i64,
            y as i64 - 4,
            &label,
            1,
            INK,
        );
    }
    let (_, yb) = f.pixel(0, 0.0);
    let (_, yt) = f.pixel(0, 1.0);
    c.line((x0 as i64, yt as i64), (x0 as i64, yb as i64), 0, INK);
    c.line((x0 as i64, yb as i64), (x1 as i64, yb as i64), 0, INK);
    for x in 0..=f.x_max {
        let (px, _) = f.pixel(x, 0.0);
        c.line((px as i64, yb as i64), (px as i64, yb as i64 + 4), 0, INK);
        let s = x.to_string();
        c.text(px as i64 - 4 * s.len() as i64, yb as i64 + 10, &s, 1, INK);
    }
    let xl = x_label.chars().count() as i64;
    c.text(
        ((x0 + x1) / 2) as i64 - 4 * xl,
        yb as i64 + 28,
        x_label,
        1,
        INK,
    );
    let tl = title.chars().count() as i64;
    c.text(f.width as i64 / 2 - 8 * tl, 12, title, 2, INK);
    for s in series {
        let pts: Vec<(i64, i64)> = s
            .points
            .iter()
            .map(|&(x, y)| {
                let (px, py) = f.pixel(x, y);
                (px as i64, py as i64)
            })
            .collect();
        for w in pts.windows(2) {
            c.line(w[0], w[1], 1, s.color);
        }
        for &(px, py) in &pts {
            c.rect(px - 4, py - 4, px + 4, py + 4, s.color);
        }
    }
    // Legend, top left inside the plot.
    for (k, s) in series.iter().enumerate() {
        let (lx, ly) = (x0 as i64 + 12, yt as i64 + 10 + 16 * k as i64);
        c.rect(lx, ly, lx + 10, ly + 8, s.color);
        c.text(lx + 18, ly, &s.label, 1, INK);
    }
    c.png()
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
    fn points_land_where_the_frame_says_in_their_colors() {
        let a = Series {
            label: "greedy".into(),
            color: [30, 90, 200],
            points: vec![(0, 0.655), (1, 0.68), (2, 0.7)],
        };
        let b = Series {
            label: "ppm".into(),
            color: [220, 110, 20],
            points: vec![(1, 0.1), (2, 0.25)],
        };
        let png = line_chart("rounds", "round", 2, &[a.clone(), b.clone()]).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let (w, h, px) = decode(&png);
        let f = Frame::new(2);
        assert_eq!((w, h), (f.width, f.height));
        let at = |x: usize, y: usize| px[(y * w + x) * 3..(y * w + x) * 3 + 3].to_vec();
        for s in [&a, &b] {
            for &(x, y) in &s.points {
                let (px_, py) = f.pixel(x, y);
                assert_eq!(at(px_, py), s.color, "{} at ({x}, {y})", s.label);
            }
        }
        // y runs upward: 70% is above 65.5%; x runs right.
        assert!(f.pixel(2, 0.7).1 < f.pixel(0, 0.655).1);
        assert!(f.pixel(2, 0.7).0 > f.pixel(1, 0.7).0);
        // Far from every point and label, the background is white.
        assert_eq!(at(w - 3, h - 3), vec![255, 255, 255]);
        // Text was drawn: the title row has ink.
        assert!((0..w).any(|x| at(x, 20) == INK.to_vec()));
    }
}
