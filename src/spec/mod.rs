//! What every part of the crate shares, as plain data: a network's [`Family`], its objective
//! ([`Prediction`]), the whole model description ([`ModelSpec`]) and the one call the samplers make
//! of a network ([`Unet`]). It imports no other module of the crate, so that `model` (how a
//! network computes), `diffusion` (how a sampler steps) and `checkpoint` (how weights are read)
//! meet here instead of importing each other. Reading and checking a spec from JSON: `json.rs`.

mod json;
mod network;
mod schedule;
mod tone;

pub(crate) use network::LayerPlan;
pub use network::{CheffUnetConfig, MemoryNeed, NetworkConfig, Sr3UnetConfig};
pub use schedule::{BetaKind, ScheduleConfig};
pub use tone::{ToneSpec, check_strength as check_tone_strength, interpolate as interpolate_curve};

use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Which reference a network (and its checkpoint layout and schedule rules) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// qureai/DiffusionXray `cheff.sr` (input `cat[x_t, lq]`, integer t).
    Cheff,
    /// The public SR3 code (input `cat[lq, x_t]`, continuous √ᾱ).
    Sr3,
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Cheff => "cheff",
            Family::Sr3 => "sr3",
        })
    }
}

/// An image's size in pixels wherever it crosses a function boundary: never a bare pair whose
/// order (width first or height first) a reader must guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Size {
    pub width: usize,
    pub height: usize,
}

impl Size {
    pub const fn new(width: usize, height: usize) -> Self {
        Self { width, height }
    }

    /// `[width, height]`, the order the page's JSON and the messages use.
    pub const fn wh(self) -> [usize; 2] {
        [self.width, self.height]
    }

    /// Both sides rounded up to a multiple of `m`.
    pub const fn next_multiple_of(self, m: usize) -> Self {
        Self::new(
            self.width.next_multiple_of(m),
            self.height.next_multiple_of(m),
        )
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}", self.width, self.height)
    }
}

/// What a network's output means: its training objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prediction {
    /// The noise ε (the authors' and SR3's objective).
    #[default]
    Eps,
    /// The clean image x₀. For restoration it learns in far fewer steps (the output is a
    /// sharpened LQ from the start, where an ε model first has to learn to remove fine noise);
    /// the samplers see it as ε through [`Prediction::eps`].
    X0,
}

impl std::str::FromStr for Prediction {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "eps" => Ok(Prediction::Eps),
            "x0" => Ok(Prediction::X0),
            _ => Err(crate::Error::Config(format!(
                "unknown prediction '{s}' (eps or x0)"
            ))),
        }
    }
}

impl Prediction {
    /// True for the authors' objective (kept out of saved specs, so they read as before).
    pub fn is_eps(&self) -> bool {
        *self == Prediction::Eps
    }
}

/// Everything needed to rebuild a model apart from its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub network: NetworkConfig,
    pub schedule: ScheduleConfig,
    /// The training objective (ε unless the file says `"prediction": "x0"`).
    #[serde(default, skip_serializing_if = "Prediction::is_eps")]
    pub prediction: Prediction,
    /// The pixel scale of the training images; `None` for a checkpoint that does not say (then
    /// an input is restored at its own scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<ModelScale>,
    /// The sampler steps this model's restorations were measured to need (its recipe's
    /// quality/speed curve): the CLI's and the page's default for it. `None`: the sampler's own
    /// default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// The way from the restoration's grey scale (the input's: a DRR's) toward a radiograph's,
    /// applied after it at a chosen strength. `None`: the model has none to offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tone: Option<ToneSpec>,
}

/// The pixel scale a model was trained at. A diffusion UNet learns textures of a given size in
/// pixels, so an input is brought to this scale before it is restored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelScale {
    /// Millimetres per pixel at the detector (DRR detector pitch; DICOM Imager Pixel Spacing),
    /// when the training images said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel_mm: Option<f64>,
    /// Typical chest width, in pixels, of the training images (always known: it is measured on
    /// the images themselves, see [`crate::scale::estimate_chest_px`]).
    pub chest_px: f64,
}

impl std::fmt::Display for ModelScale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pixel_mm {
            Some(mm) => write!(
                f,
                "{mm:.3} mm/px, lung fields ~{:.0} px wide",
                self.chest_px
            ),
            None => write!(
                f,
                "lung fields ~{:.0} px wide (mm/px not known)",
                self.chest_px
            ),
        }
    }
}

/// The network as the samplers call it: implemented by [`crate::model::Network`], so that
/// `diffusion` needs nothing of `model`.
pub trait Unet {
    /// Which family the network belongs to: it decides the time input
    /// ([`crate::diffusion::Schedule::time_value`]) and the channel order of the input.
    fn family(&self) -> Family;

    /// The network's raw output for noisy `x` and its conditioning image at the given time
    /// values (one per item, as [`crate::diffusion::Schedule::time_value`] gives them).
    ///
    /// # Shapes
    /// - x: `[batch, image_channels, height, width]`, cond: `[batch, cond_channels, height, width]`
    /// - output: `[batch, image_channels, height, width]`
    fn predict_at(&self, x: Tensor<4>, cond: Tensor<4>, time: &[f32]) -> Tensor<4>;
}
