//! A noise schedule as the references describe it; [`crate::diffusion::schedule`] computes its
//! coefficients.

use serde::{Deserialize, Serialize};

use super::Family;

/// The shape of β over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BetaKind {
    /// β linear from start to end.
    Linear,
    /// Improved-DDPM cosine ᾱ (s = 0.008); start/end ignored.
    Cosine,
    /// √β linear (cheff "quadratic", SR3 "quad").
    #[serde(alias = "quad")]
    Quadratic,
    /// sigmoid(linspace(−6, 6))·(end − start) + start (cheff only).
    Sigmoid,
    /// end everywhere, the first 10 % rising linearly from start (SR3 only).
    Warmup10,
    /// end everywhere, the first 50 % rising linearly from start (SR3 only).
    Warmup50,
    /// end everywhere (SR3 only).
    Const,
    /// 1/T, 1/(T−1), …, 1 (SR3 only).
    Jsd,
}

/// A schedule as the references describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    /// Whose precision rules to follow.
    pub family: Family,
    pub kind: BetaKind,
    /// Number of diffusion steps T.
    pub timesteps: usize,
    /// β at t = 0 (cheff default 1e-4).
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    /// β at t = T − 1 (cheff default 0.02).
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
}

fn default_beta_start() -> f64 {
    1e-4
}
fn default_beta_end() -> f64 {
    0.02
}

impl std::str::FromStr for BetaKind {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase())).map_err(|_| {
            crate::Error::Config(format!(
                "unknown beta schedule '{s}' (linear, cosine, quadratic|quad, sigmoid, warmup10, warmup50, const, jsd)"
            ))
        })
    }
}

/// The name a config file uses (`jsd`, `warmup10`), for messages.
impl std::fmt::Display for BetaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => f.write_str(&name),
            _ => write!(f, "{self:?}"),
        }
    }
}
