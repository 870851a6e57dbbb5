//! Image grids for figures (DRR contact sheets, before/after sheets): rows of cells scaled to one
//! thumbnail size on a dark background, with optional red boxes (nodule labels) per cell.

use crate::error::{Error, Result};
use crate::io::GrayImage;

/// Pixels between cells and around the grid.
pub const GAP: usize = 4;

/// One cell: an image and boxes `[x0, y0, x1, y1]` in that image's own pixel coordinates.
pub struct Cell<'a> {
    pub image: &'a GrayImage,
    pub boxes: Vec<[f64; 4]>,
}

/// The part of `image` inside `frac` = `[x0, y0, x1, y1]` (fractions of its width and height, so
/// that columns of different sizes show the same region), and `boxes` moved into it (those that
/// fall wholly outside are dropped). For close-ups: a sheet never upscales, so a crop shows the
/// pixels themselves.
pub fn crop(
    image: &GrayImage,
    boxes: &[[f64; 4]],
    frac: [f64; 4],
) -> Result<(GrayImage, Vec<[f64; 4]>)> {
    let [fx0, fy0, fx1, fy1] = frac;
    if !(frac
        .iter()
        .all(|v| v.is_finite() && (0.0..=1.0).contains(v))
        && fx0 < fx1
        && fy0 < fy1)
    {
        return Err(Error::Image(format!(
            "a crop is x0,y0,x1,y1 in fractions of the image, 0 ≤ x0 < x1 ≤ 1 and 0 ≤ y0 < y1 ≤ 1; got {frac:?}"
        )));
    }
    let (w, h) = (image.width as f64, image.height as f64);
    let (x0, y0) = ((fx0 * w).floor() as usize, (fy0 * h).floor() as usize);
    let x1 = ((fx1 * w).ceil() as usize).clamp(x0 + 1, image.width);
    let y1 = ((fy1 * h).ceil() as usize).clamp(y0 + 1, image.height);
    let out = GrayImage::from_fn(x1 - x0, y1 - y0, |x, y| {
        image.data[(y + y0) * image.width + x + x0]
    });
    let moved = boxes
        .iter()
        .filter(|b| b[2] > x0 as f64 && b[0] < x1 as f64 && b[3] > y0 as f64 && b[1] < y1 as f64)
        .map(|b| {
            [
                b[0] - x0 as f64,
                b[1] - y0 as f64,
                b[2] - x0 as f64,
                b[3] - y0 as f64,
            ]
        })
        .collect();
    Ok((out, moved))
}

/// Thumbnail size for cells whose first image is `w`×`h`: the longer side becomes `thumb` (never
/// upscaled).
fn thumb_size(w: usize, h: usize, thumb: usize) -> (usize, usize) {
    let s = (thumb as f64 / w.max(h) as f64).min(1.0);
    (
        ((w as f64 * s).round() as usize).max(1),
        ((h as f64 * s).round() as usize).max(1),
    )
}

/// Lays `rows` out as a grid (every cell resized to the first cell's thumbnail size, rows padded
/// to the longest) and returns the RGB image.
pub fn grid(rows: &[Vec<Cell>], thumb: usize) -> Result<image::RgbImage> {
    let first = rows
        .iter()
        .flatten()
        .next()
        .ok_or_else(|| Error::Image("sheet: no images".into()))?;
    let (tw, th) = thumb_size(first.image.width, first.image.height, thumb);
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let (sw, sh) = (ncols * (tw + GAP) + GAP, rows.len() * (th + GAP) + GAP);
    let mut sheet = image::RgbImage::from_pixel(sw as u32, sh as u32, image::Rgb([32, 32, 32]));
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let (x0, y0) = (GAP + c * (tw + GAP), GAP + r * (th + GAP));
            let g = cell.image;
            let img = image::GrayImage::from_raw(
                g.width as u32,
                g.height as u32,
                g.data
                    .iter()
                    .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
                    .collect(),
            )
            .ok_or_else(|| Error::Image("sheet: image data does not match its size".into()))?;
            let t = image::imageops::resize(
                &img,
                tw as u32,
                th as u32,
                image::imageops::FilterType::Triangle,
            );
            for (x, y, p) in t.enumerate_pixels() {
                sheet.put_pixel(
                    (x0 + x as usize) as u32,
                    (y0 + y as usize) as u32,
                    image::Rgb([p[0]; 3]),
                );
            }
            let (sx, sy) = (tw as f64 / g.width as f64, th as f64 / g.height as f64);
            for b in &cell.boxes {
                draw_rect(
                    &mut sheet,
                    [
                        x0 as f64 + b[0] * sx,
                        y0 as f64 + b[1] * sy,
                        x0 as f64 + b[2] * sx,
                        y0 as f64 + b[3] * sy,
                    ],
                    [x0, y0, x0 + tw, y0 + th],
                );
            }
        }
    }
    Ok(sheet)
}

/// [`grid`] encoded as PNG.
pub fn grid_png(rows: &[Vec<Cell>], thumb: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(grid(rows, thumb)?)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| Error::Image(format!("sheet: {e}")))?;
    Ok(out)
}

/// A one-pixel red rectangle around `b` (grown by a pixel so it does not hide the edge of what it
/// marks), clipped to the cell `clip = [x0, y0, x1, y1)`.
fn draw_rect(img: &mut image::RgbImage, b: [f64; 4], clip: [usize; 4]) {
    let red = image::Rgb([255, 40, 40]);
    let cl =
        |v: f64, lo: usize, hi: usize| (v.round() as i64).clamp(lo as i64, hi as i64 - 1) as u32;
    let (x0, y0) = (
        cl(b[0] - 1.0, clip[0], clip[2]),
        cl(b[1] - 1.0, clip[1], clip[3]),
    );
    let (x1, y1) = (
        cl(b[2] + 1.0, clip[0], clip[2]),
        cl(b[3] + 1.0, clip[1], clip[3]),
    );
    for x in x0..=x1 {
        img.put_pixel(x, y0, red);
        img.put_pixel(x, y1, red);
    }
    for y in y0..=y1 {
        img.put_pixel(x0, y, red);
        img.put_pixel(x1, y, red);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crop_keeps_its_region_and_moves_the_boxes_into_it() {
        let img = GrayImage::from_fn(40, 20, |x, y| (x + 100 * y) as f32);
        let boxes = [[22.0, 6.0, 26.0, 10.0], [1.0, 1.0, 3.0, 3.0]];
        let (c, b) = crop(&img, &boxes, [0.5, 0.25, 1.0, 0.75]).unwrap();
        assert_eq!((c.width, c.height), (20, 10));
        assert_eq!(c.data[0], (20 + 100 * 5) as f32);
        assert_eq!(b, vec![[2.0, 1.0, 6.0, 5.0]]);
        for bad in [
            [0.5, 0.0, 0.5, 1.0],
            [0.0, 0.0, 1.5, 1.0],
            [f64::NAN, 0.0, 1.0, 1.0],
        ] {
            let e = crop(&img, &boxes, bad).unwrap_err().to_string();
            assert!(e.contains("a crop is x0,y0,x1,y1"), "{e}");
        }
    }

    fn flat(w: usize, h: usize, v: f32) -> GrayImage {
        GrayImage {
            width: w,
            height: h,
            data: vec![v; w * h],
        }
    }

    #[test]
    fn cells_land_in_their_slots_scaled_with_their_boxes() {
        let (a, b) = (flat(64, 32, 1.0), flat(128, 64, 0.5));
        let rows = vec![
            vec![
                Cell {
                    image: &a,
                    boxes: vec![],
                },
                Cell {
                    image: &b,
                    boxes: vec![[32.0, 16.0, 48.0, 32.0]],
                },
            ],
            vec![Cell {
                image: &b,
                boxes: vec![],
            }],
        ];
        let s = grid(&rows, 32).unwrap();
        // thumbnails 32×16 from the first cell; 2 columns, 2 rows
        assert_eq!((s.width(), s.height()), (2 * 36 + 4, 2 * 20 + 4));
        assert_eq!(s.get_pixel(4 + 10, 4 + 8)[0], 255);
        assert_eq!(
            s.get_pixel(40 + 3, 4 + 3)[1],
            128,
            "second cell scaled, not cropped"
        );
        // the box [32,16,48,32] of a 128×64 image → [8,4,12,8] in the thumbnail, grown by 1
        assert_eq!(*s.get_pixel(40 + 7, 4 + 5), image::Rgb([255, 40, 40]));
        assert_eq!(
            s.get_pixel(40 + 10, 4 + 6)[1],
            128,
            "inside the box untouched"
        );
        // the missing cell of row 2 stays background
        assert_eq!(s.get_pixel(40 + 5, 24 + 5)[0], 32);
        assert!(grid(&[], 32).is_err());
    }
}
