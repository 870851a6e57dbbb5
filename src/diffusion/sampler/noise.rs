//! Where a sampler's random draws come from, keyed by their index in the loop: seeded for users
//! (the same image for the same seed on any backend), per item for batches, fixed for fixtures.

use burn::prelude::*;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// Source of standard-normal tensors; `index` 0 is x_T and `index` i + 1 the noise of loop
/// iteration i, as in the reference fixtures.
pub trait NoiseSource {
    fn normal(&mut self, index: usize, shape: [usize; 4], device: &Device) -> Tensor<4>;
}

/// Seeded host-side noise: the same seed gives the same numbers on every backend and platform.
pub struct SeededNoise {
    rng: rand_chacha::ChaCha8Rng,
}

impl SeededNoise {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl NoiseSource for SeededNoise {
    fn normal(&mut self, _index: usize, shape: [usize; 4], device: &Device) -> Tensor<4> {
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| StandardNormal.sample(&mut self.rng))
            .collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }
}

/// Noise for a batch whose item `k` draws from its own source exactly what it would draw alone
/// (a batch of seeded items then gives each item's own result).
pub struct PerItemNoise(pub Vec<SeededNoise>);

impl NoiseSource for PerItemNoise {
    fn normal(&mut self, index: usize, shape: [usize; 4], device: &Device) -> Tensor<4> {
        let [b, c, h, w] = shape;
        assert_eq!(
            b,
            self.0.len(),
            "a batch of {b} with {} noise sources",
            self.0.len()
        );
        let parts = self
            .0
            .iter_mut()
            .map(|s| s.normal(index, [1, c, h, w], device))
            .collect();
        Tensor::cat(parts, 0)
    }
}

/// Pre-drawn noise by index (the fixtures' `ddim_noise[i]`, ...).
pub struct FixedNoise(pub Vec<Tensor<4>>);

impl NoiseSource for FixedNoise {
    /// Panics when the fixture holds no tensor `index` of that shape (a test set-up error).
    fn normal(&mut self, index: usize, shape: [usize; 4], _device: &Device) -> Tensor<4> {
        let t = self.0[index].clone();
        assert_eq!(t.dims(), shape, "fixed noise {index} has the wrong shape");
        t
    }
}
