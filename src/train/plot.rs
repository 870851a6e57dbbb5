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
    }
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| Error::Image(format!("loss plot: {e}")))?;
    Ok(out)
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
