//! Overlapping tiles for images whose network call would not fit the memory budget.
//!
//! The sampler keeps the whole image; at every step the network runs on overlapping tiles
//! (several per call, stacked in the batch) and its outputs are blended in the overlaps with
//! weights that fall smoothly to zero towards each inner tile edge. Blending the *denoiser output*
//! at every step, rather than restoring tiles independently and stitching, keeps one consistent
//! sample: every sampler update is linear in that output, so the seams never accumulate.
//!
//! The weights are zero within `margin` pixels of an inner edge, where a tile's output is
//! spoiled by the missing context, so a network whose output is local (receptive radius ≤
//! `margin`) gives exactly the untiled result.

use burn::prelude::*;

use crate::error::{Error, Result};
use crate::spec::Size;

/// How an image is cut into tiles.
#[derive(Debug, Clone, PartialEq)]
pub struct TileGrid {
    /// The image's size.
    pub size: Size,
    /// A tile's size (each side ≤ the image's).
    pub tile: Size,
    /// Tile origins along y and along x; the tiles are their Cartesian product.
    pub origins: [Vec<usize>; 2],
    /// Tiles stacked into one network call.
    pub per_call: usize,
    /// Blend weights along y and x, per origin, normalised so that they sum to 1 at every
    /// position (the grid is separable, so the 2-D weights are their outer products).
    weights: [Vec<Vec<f32>>; 2],
}

/// Origins of tiles of length `tile` covering `len` with neighbours overlapping by at least
/// `overlap`, spread evenly.
fn origins(len: usize, tile: usize, overlap: usize) -> Vec<usize> {
    if tile >= len {
        return vec![0];
    }
    let stride = tile - overlap;
    let n = (len - overlap).div_ceil(stride).max(2);
    (0..n)
        .map(|i| ((i * (len - tile)) as f64 / (n - 1) as f64).round() as usize)
        .collect()
}

/// Weight at distance `d` from an inner edge: 0 inside the margin, a raised cosine over `ramp`
/// pixels, then 1.
fn ramp(d: usize, margin: usize, ramp: usize) -> f64 {
    if d < margin {
        0.0
    } else if d >= margin + ramp {
        1.0
    } else {
        let u = (d - margin) as f64 + 0.5;
        0.5 - 0.5 * (std::f64::consts::PI * u / ramp as f64).cos()
    }
}

/// Normalised 1-D weights of every tile along one axis.
fn axis_weights(len: usize, tile: usize, origins: &[usize], margin: usize) -> Vec<Vec<f32>> {
    let overlap = origins
        .windows(2)
        .map(|w| w[0] + tile - w[1])
        .min()
        .unwrap_or(tile);
    let width = overlap.saturating_sub(2 * margin).max(1);
    let raw: Vec<Vec<f64>> = origins
        .iter()
        .map(|&o| {
            (0..tile)
                .map(|d| {
                    let left = if o > 0 { ramp(d, margin, width) } else { 1.0 };
                    let right = if o + tile < len {
                        ramp(tile - 1 - d, margin, width)
                    } else {
                        1.0
                    };
                    left * right
                })
                .collect()
        })
        .collect();
    let mut sum = vec![0f64; len];
    for (w, &o) in raw.iter().zip(origins) {
        for (d, v) in w.iter().enumerate() {
            sum[o + d] += v;
        }
    }
    raw.iter()
        .zip(origins)
        .map(|(w, &o)| {
            w.iter()
                .enumerate()
                .map(|(d, v)| (v / sum[o + d]) as f32)
                .collect()
        })
        .collect()
}

impl TileGrid {
    /// Tiles of `tile` pixels (clamped to the image) overlapping by at least `overlap`, whose
    /// weights ignore the `margin` pixels next to each inner edge.
    pub fn new(
        image: Size,
        tile: Size,
        overlap: usize,
        margin: usize,
        per_call: usize,
    ) -> Result<Self> {
        // [along y, along x] below
        let size = [image.height, image.width];
        let tile = [tile.height.min(image.height), tile.width.min(image.width)];
        for a in 0..2 {
            if tile[a] < size[a] && (overlap >= tile[a] || 2 * margin >= overlap) {
                return Err(Error::Failed(format!(
                    "tiles of {}×{} px cannot overlap by {overlap} px with a {margin} px margin",
                    tile[1], tile[0]
                )));
            }
        }
        let origins = [
            origins(size[0], tile[0], overlap),
            origins(size[1], tile[1], overlap),
        ];
        let weights = [
            axis_weights(size[0], tile[0], &origins[0], margin),
            axis_weights(size[1], tile[1], &origins[1], margin),
        ];
        Ok(Self {
            size: image,
            tile: Size::new(tile[1], tile[0]),
            origins,
            per_call: per_call.max(1),
            weights,
        })
    }

    /// Number of tiles.
    pub fn len(&self) -> usize {
        self.origins[0].len() * self.origins[1].len()
    }

    /// True when the grid is one tile: the image itself.
    pub fn is_single(&self) -> bool {
        self.len() == 1
    }

    /// Never empty; here for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `f` applied over the tiles of `input` and blended: `f` maps `[n·batch, c, th, tw]` to
    /// `[n·batch, c_out, th, tw]` (tile-major, `batch` items per tile).
    ///
    /// # Shapes
    /// - input: `[batch, c, height, width]` → `[batch, c_out, height, width]`
    pub fn apply(&self, input: Tensor<4>, f: &mut dyn FnMut(Tensor<4>) -> Tensor<4>) -> Tensor<4> {
        if self.is_single() {
            return f(input);
        }
        let [b, c, h, w] = input.dims();
        debug_assert_eq!(Size::new(w, h), self.size);
        let device = input.device();
        let (th, tw) = (self.tile.height, self.tile.width);
        let tiles: Vec<(usize, usize)> = (0..self.origins[0].len())
            .flat_map(|i| (0..self.origins[1].len()).map(move |j| (i, j)))
            .collect();
        let mut acc: Option<Tensor<4>> = None;
        for chunk in tiles.chunks(self.per_call) {
            // 1. gather the chunk's tiles into one batch
            let parts: Vec<Tensor<4>> = chunk
                .iter()
                .map(|&(i, j)| {
                    let (y, x) = (self.origins[0][i], self.origins[1][j]);
                    input.clone().slice([0..b, 0..c, y..y + th, x..x + tw])
                })
                .collect();
            let out = f(Tensor::cat(parts, 0)); // [n·b, c_out, th, tw]
            let c_out = out.dims()[1];
            let mut sum = acc
                .take()
                .unwrap_or_else(|| Tensor::zeros([b, c_out, h, w], &device));
            // 2. weigh each tile's output and add it into place
            for (k, &(i, j)) in chunk.iter().enumerate() {
                let (y, x) = (self.origins[0][i], self.origins[1][j]);
                let wy = Tensor::<1>::from_data(
                    TensorData::new(self.weights[0][i].clone(), [th]),
                    &device,
                )
                .reshape([1, 1, th, 1]);
                let wx = Tensor::<1>::from_data(
                    TensorData::new(self.weights[1][j].clone(), [tw]),
                    &device,
                )
                .reshape([1, 1, 1, tw]);
                let part = out
                    .clone()
                    .slice([k * b..(k + 1) * b, 0..c_out, 0..th, 0..tw])
                    * wy
                    * wx;
                let region = [0..b, 0..c_out, y..y + th, x..x + tw];
                let cur = sum.clone().slice(region.clone());
                sum = sum.slice_assign(region, cur + part);
            }
            acc = Some(sum);
        }
        acc.expect("at least one tile")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;

    #[test]
    fn weights_cover_every_pixel_and_sum_to_one() {
        for (len, tile, overlap, margin) in [
            (100, 32, 12, 3),
            (257, 64, 16, 4),
            (64, 64, 8, 2),
            (40, 16, 6, 2),
        ] {
            let o = origins(len, tile, overlap);
            assert_eq!(o[0], 0);
            assert_eq!(o.last().unwrap() + tile.min(len), len.max(tile.min(len)));
            for w in o.windows(2) {
                assert!(w[0] + tile - w[1] >= overlap, "{len} {tile}: {o:?}");
            }
            let ws = axis_weights(len, tile.min(len), &o, margin);
            let mut sum = vec![0f32; len];
            for (w, &s) in ws.iter().zip(&o) {
                for (d, v) in w.iter().enumerate() {
                    assert!(v.is_finite() && *v >= 0.0);
                    if s > 0 && d < margin {
                        assert_eq!(*v, 0.0, "inside the margin of an inner edge");
                    }
                    sum[s + d] += v;
                }
            }
            assert!(sum.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sum:?}");
        }
    }

    #[test]
    fn a_local_network_gives_the_same_result_tiled_and_untiled() {
        // Two 3×3 convolutions (no normalisation, no attention): receptive radius 2.
        let device = crate::device::cpu();
        let c1 = Conv2dConfig::new([2, 4], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let c2 = Conv2dConfig::new([4, 1], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let mut net = |x: Tensor<4>| c2.forward(burn::tensor::activation::tanh(c1.forward(x)));
        let (h, w) = (37, 70);
        let n = 2 * 2 * h * w;
        let x = Tensor::<4>::from_data(
            TensorData::new(
                (0..n)
                    .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
                    .collect::<Vec<f32>>(),
                [2, 2, h, w],
            ),
            &device,
        );
        let whole: Vec<f32> = net(x.clone()).into_data().try_to_vec::<f32>().unwrap();
        // max |tiled − whole| over a grid
        let mut error = |grid: &TileGrid| {
            let tiled: Vec<f32> = grid
                .apply(x.clone(), &mut net)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            whole
                .iter()
                .zip(&tiled)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max)
        };
        for (tile, per_call) in [([16, 24], 1), ([20, 20], 3), ([37, 32], 8)] {
            let grid = TileGrid::new(Size::new(w, h), Size::new(tile[1], tile[0]), 8, 2, per_call)
                .unwrap();
            assert!(grid.len() > 1);
            let err = error(&grid);
            assert!(err < 1e-5, "tile {tile:?}: max |tiled − whole| = {err}");
        }
        // With the margin below the receptive radius the seams show: the test can fail.
        let err = error(&TileGrid::new(Size::new(w, h), Size::new(24, 16), 8, 0, 2).unwrap());
        assert!(err > 1e-3, "a margin of 0 cannot be exact (err {err})");
    }

    #[test]
    fn impossible_grids_are_refused() {
        assert!(TileGrid::new(Size::new(100, 100), Size::new(32, 32), 32, 2, 1).is_err());
        assert!(TileGrid::new(Size::new(100, 100), Size::new(32, 32), 8, 4, 1).is_err());
        assert!(
            TileGrid::new(Size::new(20, 20), Size::new(32, 32), 64, 40, 1)
                .unwrap()
                .is_single()
        );
    }
}
