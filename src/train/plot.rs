//! `loss.png`: the training loss per step (grey) and its running mean (blue) on a log scale,
//! drawn directly into an RGB image.

use image::{Rgb, RgbImage};

use super::LogRow;
use crate::{Error, Result};

const W: u32 = 720;
const H: u32 = 360;
const MARGIN: u32 = 30;

pub fn loss_plot(rows: &[LogRow]) -> Result<Vec<u8>> {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let axis = Rgb([90, 90, 90]);
    for x in MARGIN..W - MARGIN / 2 {
        img.put_pixel(x, H - MARGIN, axis);
    }
    for y in MARGIN / 2..=H - MARGIN {
        img.put_pixel(MARGIN, y, axis);
    }
    let pts: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.loss.is_finite() && r.loss > 0.0)
        .map(|r| (r.step as f64, r.loss.log10()))
        .collect();
    if pts.len() >= 2 {
        let (x0, x1) = (pts[0].0, pts[pts.len() - 1].0.max(pts[0].0 + 1.0));
        let (lo, hi) = pts
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        let (lo, hi) = if hi - lo < 1e-9 {
            (lo - 0.5, hi + 0.5)
        } else {
            (lo, hi)
        };
        let to_px = |(x, y): (f64, f64)| -> (f64, f64) {
            let px = MARGIN as f64 + (x - x0) / (x1 - x0) * (W - MARGIN * 3 / 2 - 1) as f64;
            let py = (H - MARGIN) as f64 - (y - lo) / (hi - lo) * (H - MARGIN * 3 / 2 - 1) as f64;
            (px, py)
        };
        // decade ticks
        for d in (lo.ceil() as i64)..=(hi.floor() as i64) {
            let (_, py) = to_px((x0, d as f64));
            for x in MARGIN..MARGIN + 6 {
                img.put_pixel(x, py as u32, axis);
            }
        }
        polyline(
            &mut img,
            pts.iter().map(|p| to_px(*p)),
            Rgb([180, 180, 180]),
        );
        let k = (pts.len() / 50).max(1);
        let smooth: Vec<(f64, f64)> = (0..pts.len())
            .map(|i| {
                let a = i.saturating_sub(k);
                let b = (i + k + 1).min(pts.len());
                let mean = pts[a..b].iter().map(|p| p.1).sum::<f64>() / (b - a) as f64;
                (pts[i].0, mean)
            })
            .collect();
        polyline(&mut img, smooth.into_iter().map(to_px), Rgb([20, 70, 200]));
        // axis labels: loss at the top and bottom (log scale), first and last step
        let ink = Rgb([40, 40, 40]);
        text(
            &mut img,
            2,
            MARGIN / 2,
            &format!("{:.3}", 10f64.powf(hi)),
            ink,
        );
        text(
            &mut img,
            2,
            H - MARGIN - 12,
            &format!("{:.3}", 10f64.powf(lo)),
            ink,
        );
        text(
            &mut img,
            MARGIN,
            H - MARGIN + 6,
            &format!("{}", x0 as u64),
            ink,
        );
        let last = format!("{}", x1 as u64);
        text(
            &mut img,
            W - MARGIN / 2 - 8 * last.len() as u32,
            H - MARGIN + 6,
            &last,
            ink,
        );
    }
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| Error::Image(format!("loss plot: {e}")))?;
    Ok(out)
}

/// The characters the labels use and their 3×5 glyphs (drawn at twice the size): five rows of
/// three bits, one octal digit a row, top row first.
const GLYPH_CHARS: &str = "0123456789.-e";
const GLYPH_ROWS: [u16; 13] = [
    0o75557, 0o26227, 0o71747, 0o71717, 0o55711, 0o74717, 0o74757, 0o71111, 0o75757, 0o75717,
    0o00002, 0o00700, 0o75747,
];

fn glyph(c: char) -> [u8; 5] {
    let Some(k) = GLYPH_CHARS.find(c) else {
        return [0; 5];
    };
    std::array::from_fn(|row| (GLYPH_ROWS[k] >> (3 * (4 - row)) & 7) as u8)
}

fn text(img: &mut RgbImage, x: u32, y: u32, s: &str, color: Rgb<u8>) {
    for (k, c) in s.chars().enumerate() {
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..3 {
                if bits >> (2 - col) & 1 == 1 {
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        let (px, py) = (x + 8 * k as u32 + 2 * col + dx, y + 2 * row as u32 + dy);
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, color);
                        }
                    }
                }
            }
        }
    }
}

fn polyline(img: &mut RgbImage, pts: impl Iterator<Item = (f64, f64)>, color: Rgb<u8>) {
    let mut last: Option<(f64, f64)> = None;
    for p in pts {
        if let Some(q) = last {
            let n = ((p.0 - q.0).abs().max((p.1 - q.1).abs()).ceil() as usize).max(1);
            for s in 0..=n {
                let t = s as f64 / n as f64;
                let (x, y) = (q.0 + t * (p.0 - q.0), q.1 + t * (p.1 - q.1));
                if x >= 0.0 && y >= 0.0 && (x as u32) < img.width() && (y as u32) < img.height() {
                    img.put_pixel(x as u32, y as u32, color);
                }
            }
        }
        last = Some(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_draws_the_curve_and_labels() {
        let rows: Vec<LogRow> = (1..=100)
            .map(|k| LogRow {
                step: k,
                loss: 1.0 / k as f64,
                val: None,
                seconds: 0.0,
            })
            .collect();
        let png = loss_plot(&rows).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (W, H));
        let blue = img.pixels().filter(|p| p.0 == [20, 70, 200]).count();
        let ink = img.pixels().filter(|p| p.0 == [40, 40, 40]).count();
        assert!(blue > 300 && ink > 50, "{blue} {ink}");
        // a falling loss: the curve starts high (small y) on the left and ends low on the right
        let ys = |x0: u32, x1: u32| -> Vec<u32> {
            img.enumerate_pixels()
                .filter(|(x, _, p)| *x >= x0 && *x < x1 && p.0 == [20, 70, 200])
                .map(|(_, y, _)| y)
                .collect()
        };
        let (left, right) = (ys(MARGIN, MARGIN + 20), ys(W - 60, W - 20));
        assert!(left.iter().min() < right.iter().min());
        assert!(loss_plot(&[]).is_ok());
    }

    #[test]
    fn glyphs_read_their_rows_top_first() {
        assert_eq!(glyph('1'), [2, 6, 2, 2, 7]);
        assert_eq!(glyph('4'), [5, 5, 7, 1, 1]);
        assert_eq!(glyph('.'), [0, 0, 0, 0, 2]);
        assert_eq!(glyph('e'), [7, 5, 7, 4, 7]);
        assert_eq!(glyph('x'), [0; 5]);
    }
}
