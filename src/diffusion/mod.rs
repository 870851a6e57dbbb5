//! Noise schedules and the samplers that turn noise plus a conditioning image into a restoration.

pub mod sampler;
pub mod schedule;
pub mod tiles;

pub use sampler::{
    Denoiser, FixedNoise, NoiseSource, SamplerKind, SamplerSettings, SeededNoise, StepInfo, sample,
};
pub use schedule::Schedule;
