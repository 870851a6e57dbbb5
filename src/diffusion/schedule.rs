//! Noise schedules (β_t) and every coefficient the samplers read, computed with the precision
//! rules of each reference so that sampler outputs match to float32 rounding:
//! - cheff (`schedule.py`): float32 arithmetic throughout (torch's cumprod accumulates in f64);
//! - SR3 (`diffusion.py`): float64 numpy arithmetic, each array cast to float32 at the end.

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::spec::{BetaKind, Family, ScheduleConfig};

impl ScheduleConfig {
    /// The authors' schedule: cosine, T = 2000.
    pub fn cheff_default() -> Self {
        Self {
            family: Family::Cheff,
            kind: BetaKind::Cosine,
            timesteps: 2000,
            beta_start: 1e-4,
            beta_end: 0.02,
        }
    }

    /// Computes β and the derived coefficients.
    pub fn build(&self) -> Result<Schedule> {
        let t = self.timesteps;
        if t == 0 {
            return Err(Error::Config(
                "a schedule needs at least one timestep".into(),
            ));
        }
        if t > MAX_TIMESTEPS {
            return Err(Error::TooLarge(format!(
                "a schedule of {t} timesteps; the limit is {MAX_TIMESTEPS}"
            )));
        }
        if !(self.beta_start.is_finite()
            && self.beta_end.is_finite()
            && self.beta_start >= 0.0
            && self.beta_end < 1.0)
        {
            return Err(Error::Config(format!(
                "beta_start {} and beta_end {} must lie in [0, 1)",
                self.beta_start, self.beta_end
            )));
        }
        match self.family {
            Family::Cheff => self.build_cheff(),
            Family::Sr3 => Ok(Schedule::from_betas_f64(&self.sr3_betas()?)),
        }
    }

    fn build_cheff(&self) -> Result<Schedule> {
        let (t, s, e) = (self.timesteps, self.beta_start, self.beta_end);
        let betas: Vec<f32> = match self.kind {
            BetaKind::Linear => linspace_f32(s as f32, e as f32, t),
            BetaKind::Quadratic => linspace_f32(s.sqrt() as f32, e.sqrt() as f32, t)
                .iter()
                .map(|b| b * b)
                .collect(),
            BetaKind::Sigmoid => linspace_f32(-6.0, 6.0, t)
                .iter()
                .map(|x| 1.0 / (1.0 + (-x).exp()) * (e - s) as f32 + s as f32)
                .collect(),
            BetaKind::Cosine => {
                let cos_s = 0.008f32;
                let f: Vec<f32> = linspace_f32(0.0, t as f32, t + 1)
                    .iter()
                    .map(|x| {
                        let a = ((x / t as f32) + cos_s) / (1.0 + cos_s)
                            * (std::f64::consts::PI * 0.5) as f32;
                        let c = a.cos();
                        c * c
                    })
                    .collect();
                let ac: Vec<f32> = f.iter().map(|v| v / f[0]).collect();
                ac.windows(2)
                    .map(|w| (1.0 - w[1] / w[0]).clamp(1e-4, 0.9999))
                    .collect()
            }
            other => {
                return Err(Error::Config(format!(
                    "the cheff family has no '{other}' schedule (linear, cosine, quadratic, sigmoid)"
                )));
            }
        };
        Ok(Schedule::from_betas_f32(&betas))
    }

    fn sr3_betas(&self) -> Result<Vec<f64>> {
        let (n, s, e) = (self.timesteps, self.beta_start, self.beta_end);
        let warmup = |frac: f64| {
            let mut b = vec![e; n];
            let w = (n as f64 * frac) as usize;
            b[..w].copy_from_slice(&linspace_f64(s, e, w));
            b
        };
        Ok(match self.kind {
            BetaKind::Linear => linspace_f64(s, e, n),
            BetaKind::Quadratic => linspace_f64(s.sqrt(), e.sqrt(), n)
                .iter()
                .map(|b| b * b)
                .collect(),
            BetaKind::Warmup10 => warmup(0.1),
            BetaKind::Warmup50 => warmup(0.5),
            BetaKind::Const => vec![e; n],
            BetaKind::Jsd => linspace_f64(n as f64, 1.0, n)
                .iter()
                .map(|v| 1.0 / v)
                .collect(),
            BetaKind::Cosine => {
                let cs = 8e-3;
                let f: Vec<f64> = (0..=n)
                    .map(|k| {
                        let a =
                            (k as f64 / n as f64 + cs) / (1.0 + cs) * std::f64::consts::PI / 2.0;
                        a.cos().powi(2)
                    })
                    .collect();
                let f: Vec<f64> = f.iter().map(|v| v / f[0]).collect();
                f.windows(2)
                    .map(|w| (1.0 - w[1] / w[0]).min(0.999))
                    .collect()
            }
            BetaKind::Sigmoid => {
                return Err(Error::Config(
                    "the SR3 family has no 'sigmoid' schedule".into(),
                ));
            }
        })
    }
}

/// Floor of ᾱ: a schedule that reaches ᾱ = 0 (SR3's `jsd` ends with β = 1) would make
/// 1/√ᾱ infinite and the first step NaN, as in the reference; the floor keeps it finite. No
/// schedule of the references' defaults comes near it (cosine ends around 1e-10).
pub const MIN_ALPHA_CUMPROD: f64 = 1e-20;

/// β and every per-timestep coefficient, in float32 as the references store them.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub betas: Vec<f32>,
    pub alphas_cumprod: Vec<f32>,
    pub alphas_cumprod_prev: Vec<f32>,
    /// √ᾱ: SR3's network input (noise level).
    pub sqrt_alphas_cumprod: Vec<f32>,
    pub sqrt_recip_alphas_cumprod: Vec<f32>,
    pub sqrt_recipm1_alphas_cumprod: Vec<f32>,
    pub posterior_log_variance_clipped: Vec<f32>,
    pub posterior_mean_coef1: Vec<f32>,
    pub posterior_mean_coef2: Vec<f32>,
}

/// Most timesteps T a schedule may have (the authors train with 2000; DDPM with 1000): a config
/// asking for more is refused before its tables are allocated.
pub const MAX_TIMESTEPS: usize = Limits::TIMESTEPS.value as usize;

impl Schedule {
    /// The time input a `family`'s network takes for integer timestep `t` (−1 means "before
    /// the first step", which PLMS asks for): cheff takes t itself, SR3 takes √ᾱ_t (1 at
    /// t = −1).
    pub fn time_value(&self, family: Family, t: i64) -> f32 {
        match family {
            Family::Cheff => t as f32,
            Family::Sr3 if t < 0 => 1.0,
            Family::Sr3 => self.sqrt_alphas_cumprod[t as usize],
        }
    }

    /// Number of timesteps T.
    pub fn len(&self) -> usize {
        self.betas.len()
    }
    /// Always false: a schedule has at least one step.
    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }
    /// ᾱ at timestep `t`, clamped into the schedule (t = −1, "before the first step", which
    /// PLMS evaluates, reads ᾱ₀).
    pub fn alpha_bar(&self, t: i64) -> f32 {
        self.alphas_cumprod[t.clamp(0, self.len() as i64 - 1) as usize]
    }

    /// Coefficients from float32 β with float32 arithmetic (cumprod accumulated in f64, as
    /// torch's CPU kernel does).
    pub fn from_betas_f32(betas: &[f32]) -> Self {
        let alphas: Vec<f32> = betas.iter().map(|b| 1.0 - b).collect();
        let mut acc = 1f64;
        let ac: Vec<f32> = alphas
            .iter()
            .map(|a| {
                acc *= *a as f64;
                (acc as f32).max(MIN_ALPHA_CUMPROD as f32)
            })
            .collect();
        let prev: Vec<f32> = std::iter::once(1.0)
            .chain(ac[..ac.len() - 1].iter().copied())
            .collect();
        Self::from_cumprod(betas, &alphas, &ac, &prev)
    }

    /// Coefficients from float64 β with float64 arithmetic, cast at the end (SR3's numpy).
    pub fn from_betas_f64(betas: &[f64]) -> Self {
        let n = betas.len();
        let mut acc = 1f64;
        let ac: Vec<f64> = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc.max(MIN_ALPHA_CUMPROD)
            })
            .collect();
        let prev: Vec<f64> = std::iter::once(1.0)
            .chain(ac[..n - 1].iter().copied())
            .collect();
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        Self::from_cumprod(betas, &alphas, &ac, &prev)
    }

    /// Every coefficient from β, α = 1 − β, ᾱ and ᾱ_{t−1}, computed in `F` (f32 for cheff,
    /// f64 for SR3) and stored as f32.
    fn from_cumprod<F: num_traits::Float>(betas: &[F], alphas: &[F], ac: &[F], prev: &[F]) -> Self {
        let one = F::one();
        let map = |f: &dyn Fn(usize) -> F| {
            (0..betas.len())
                .map(|i| f(i).to_f32().unwrap_or(f32::NAN))
                .collect::<Vec<f32>>()
        };
        Self {
            betas: map(&|i| betas[i]),
            alphas_cumprod: map(&|i| ac[i]),
            alphas_cumprod_prev: map(&|i| prev[i]),
            sqrt_alphas_cumprod: map(&|i| ac[i].sqrt()),
            sqrt_recip_alphas_cumprod: map(&|i| (one / ac[i]).sqrt()),
            sqrt_recipm1_alphas_cumprod: map(&|i| (one / ac[i] - one).sqrt()),
            posterior_log_variance_clipped: map(&|i| {
                let var = betas[i] * (one - prev[i]) / (one - ac[i]);
                var.max(F::from(1e-20).unwrap_or(F::min_positive_value()))
                    .ln()
            }),
            posterior_mean_coef1: map(&|i| betas[i] * prev[i].sqrt() / (one - ac[i])),
            posterior_mean_coef2: map(&|i| (one - prev[i]) * alphas[i].sqrt() / (one - ac[i])),
        }
    }

    /// The schedule restricted to an ascending subset of timesteps (respacing, Nichol & Dhariwal
    /// 2021): ᾱ is kept at those steps and β recomputed between them, so an ancestral sampler can
    /// run with fewer steps. The full set returns the schedule unchanged.
    pub fn respaced(&self, timesteps: &[usize]) -> Schedule {
        if timesteps.len() == self.len() {
            return self.clone();
        }
        let mut last = 1f64;
        let betas: Vec<f64> = timesteps
            .iter()
            .map(|&t| {
                let a = self.alphas_cumprod[t] as f64;
                let b = 1.0 - a / last;
                last = a;
                b
            })
            .collect();
        Schedule::from_betas_f64(&betas)
    }
}

/// torch.linspace in float32: the first half counts up from start, the second down from end.
fn linspace_f32(start: f32, end: f32, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                start + step * i as f32
            } else {
                end - step * (n - i - 1) as f32
            }
        })
        .collect()
}

/// numpy.linspace in float64 (last element exactly `end`).
fn linspace_f64(start: f64, end: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![start],
        _ => {
            let step = (end - start) / (n - 1) as f64;
            let mut v: Vec<f64> = (0..n).map(|i| start + i as f64 * step).collect();
            v[n - 1] = end;
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_number_of_timesteps_is_capped() {
        let mut c = ScheduleConfig::cheff_default();
        c.timesteps = MAX_TIMESTEPS;
        assert_eq!(c.build().unwrap().len(), MAX_TIMESTEPS);
        c.timesteps = MAX_TIMESTEPS + 1;
        let e = c.build().unwrap_err();
        assert!(
            matches!(e, Error::TooLarge(_)) && e.to_string().contains("100000"),
            "{e}"
        );
        c.timesteps = usize::MAX;
        assert!(matches!(c.build(), Err(Error::TooLarge(_))));
    }

    #[test]
    fn every_kind_builds_a_valid_schedule() {
        for (family, kinds) in [
            (
                Family::Cheff,
                vec![
                    BetaKind::Linear,
                    BetaKind::Cosine,
                    BetaKind::Quadratic,
                    BetaKind::Sigmoid,
                ],
            ),
            (
                Family::Sr3,
                vec![
                    BetaKind::Linear,
                    BetaKind::Cosine,
                    BetaKind::Quadratic,
                    BetaKind::Warmup10,
                    BetaKind::Warmup50,
                    BetaKind::Const,
                    BetaKind::Jsd,
                ],
            ),
        ] {
            for kind in kinds {
                let s = ScheduleConfig {
                    family,
                    kind,
                    timesteps: 100,
                    beta_start: 1e-4,
                    beta_end: 0.02,
                }
                .build()
                .unwrap();
                assert_eq!(s.len(), 100);
                assert!(
                    s.betas.iter().all(|b| *b > 0.0 && *b <= 1.0),
                    "{family:?} {kind:?}"
                );
                assert!(
                    s.alphas_cumprod.windows(2).all(|w| w[1] <= w[0]),
                    "{family:?} {kind:?} ᾱ must fall"
                );
            }
        }
        let bad = ScheduleConfig {
            family: Family::Cheff,
            kind: BetaKind::Jsd,
            timesteps: 10,
            beta_start: 1e-4,
            beta_end: 0.02,
        };
        let msg = bad.build().unwrap_err().to_string();
        assert!(msg.contains("no 'jsd' schedule"), "{msg}");
    }

    #[test]
    fn respacing_keeps_alphas_cumprod_at_the_kept_steps() {
        let s = ScheduleConfig::cheff_default().build().unwrap();
        let ts = [0usize, 500, 1000, 1999];
        let r = s.respaced(&ts);
        for (i, t) in ts.iter().enumerate() {
            assert!(
                (r.alphas_cumprod[i] - s.alphas_cumprod[*t]).abs()
                    <= 1e-6 * s.alphas_cumprod[*t].max(1e-3)
            );
        }
        assert_eq!(s.respaced(&(0..2000).collect::<Vec<_>>()), s);
    }

    #[test]
    fn linspace_matches_torch_endpoints() {
        let v = linspace_f32(0.1, 0.7, 7);
        assert_eq!(v[0], 0.1);
        assert_eq!(v[6], 0.7);
        assert_eq!(linspace_f64(1.0, 2.0, 3), vec![1.0, 1.5, 2.0]);
    }
}
