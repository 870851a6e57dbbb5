//! A model's optional tone curve: the way from a DRR's grey scale toward a radiograph's, kept
//! apart from the restoration. The network keeps the input's grey levels and restores detail;
//! the curve is applied afterwards at a strength the user picks (`dxr restore --tone`, the
//! page's slider), so that moving toward one radiograph's processing is a choice, never a side
//! effect that could erase anatomy.

use serde::{Deserialize, Serialize};

/// The fewest and most points a curve may have.
const POINTS: std::ops::RangeInclusive<usize> = 2..=4096;

/// Grey levels at or below this are air: the curve leaves them alone (black stays black).
const AIR: f32 = 0.04;

/// A monotone curve over [0, 1] with no flat stretch inside the body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToneSpec {
    /// `points[i]` is the output for input `i / (points − 1)`, linear in between.
    pub points: Vec<f32>,
    /// The strength the page starts at (the CLI's default is 0: the restoration as it is).
    #[serde(default)]
    pub page_default: f32,
}

impl ToneSpec {
    /// `curve` (any monotone curve, e.g. histogram matching DRRs → a radiograph) made gentle:
    /// its slope kept within `[min_slope, max_slope]` above the air level, then rescaled so
    /// that air and white stay where they are. A matching curve squeezes whole grey ranges
    /// together where the radiograph's processing did (a near-white mediastinum); with a floor
    /// on the slope, no stretch of the body can be flattened away.
    /// `curve` must hold at least 2 points ([`Self::validate`] of a curve read from a file).
    pub fn gentle(curve: &[f32], min_slope: f32, max_slope: f32, page_default: f32) -> Self {
        let n = curve.len();
        let dx = 1.0 / (n - 1) as f32;
        let mut points = Vec::with_capacity(n);
        let mut y = 0.0f32;
        for i in 0..n {
            let x = i as f32 * dx;
            if i > 0 {
                let raw =
                    (curve[i.min(curve.len() - 1)] - curve[(i - 1).min(curve.len() - 1)]) / dx;
                // air keeps the identity's slope: the body's curve starts from black
                let slope = if x <= AIR {
                    1.0
                } else {
                    raw.clamp(min_slope, max_slope)
                };
                y += slope * dx;
            }
            points.push(y);
        }
        let top = points.last().copied().unwrap_or(1.0).max(f32::EPSILON);
        // rescale the body's part so that 1 maps to 1, air untouched
        let air_top = AIR;
        for (i, p) in points.iter_mut().enumerate() {
            let x = i as f32 * dx;
            if x > AIR {
                *p = air_top + (*p - air_top) * (1.0 - air_top) / (top - air_top).max(f32::EPSILON);
            }
        }
        Self {
            points,
            page_default: page_default.clamp(0.0, 1.0),
        }
    }

    /// The smallest slope of the curve above the air level (a flat stretch has 0).
    pub fn min_body_slope(&self) -> f32 {
        let n = self.points.len() - 1;
        (1..=n)
            .filter(|&i| (i as f32 / n as f32) > AIR)
            .map(|i| (self.points[i] - self.points[i - 1]) * n as f32)
            .fold(f32::INFINITY, f32::min)
    }

    /// Checks what a file may hold: 2–4096 finite points in [0, 1], non-decreasing, and a page
    /// default in [0, 1].
    pub fn validate(&self) -> Result<(), String> {
        if !POINTS.contains(&self.points.len()) {
            return Err(format!(
                "tone curve: {} points, expected {}–{}",
                self.points.len(),
                POINTS.start(),
                POINTS.end()
            ));
        }
        if let Some(i) = self
            .points
            .iter()
            .position(|p| !p.is_finite() || !(0.0..=1.0).contains(p))
        {
            return Err(format!(
                "tone curve: point {i} is {}, expected a grey level in [0, 1]",
                self.points[i]
            ));
        }
        if let Some(i) = self.points.windows(2).position(|w| w[1] < w[0]) {
            return Err(format!(
                "tone curve: falls between points {i} and {} ({} → {}); a tone curve must be \
                 monotone",
                i + 1,
                self.points[i],
                self.points[i + 1]
            ));
        }
        if !(0.0..=1.0).contains(&self.page_default) {
            return Err(format!(
                "tone curve: page_default {} is not in [0, 1]",
                self.page_default
            ));
        }
        Ok(())
    }

    /// The curve at `x` (clamped to [0, 1]).
    pub fn curve(&self, x: f32) -> f32 {
        interpolate(&self.points, x)
    }

    /// `x` moved toward the curve by `strength` in [0, 1]: `x + s·(curve(x) − x)`. A blend of
    /// two increasing maps, so it stays monotone at every strength.
    pub fn map(&self, x: f32, strength: f32) -> f32 {
        let s = strength.clamp(0.0, 1.0);
        if s == 0.0 {
            return x;
        }
        x + s * (self.curve(x) - x)
    }

    /// Every value of `data` mapped at `strength`.
    pub fn apply(&self, data: &mut [f32], strength: f32) {
        if strength > 0.0 {
            for v in data {
                *v = self.map(*v, strength);
            }
        }
    }
}

/// A curve given by `points` over [0, 1] at `x` (clamped): `points[i]` is the value at
/// `i / (points − 1)`, linear in between. Every tone curve of the crate reads its points so
/// (the DRR look's fitted curve too), and the page's `www/tone.js` the same way.
pub fn interpolate(points: &[f32], x: f32) -> f32 {
    let n = points.len() - 1;
    let t = x.clamp(0.0, 1.0) * n as f32;
    let i = (t.floor() as usize).min(n - 1);
    let f = t - i as f32;
    points[i] * (1.0 - f) + points[i + 1] * f
}

/// Checks a `--tone` strength: a number in [0, 1].
pub fn check_strength(strength: f32) -> Result<(), String> {
    if strength.is_finite() && (0.0..=1.0).contains(&strength) {
        Ok(())
    } else {
        Err(format!(
            "--tone {strength}: a strength between 0 (the restoration's own grey scale) and 1 \
             (the model's whole tone curve)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A matching-like curve with a flat stretch where a processed radiograph's mediastinum is
    /// near white: 0.7–0.9 all map to 0.95.
    fn squeezing() -> Vec<f32> {
        (0..256)
            .map(|i| {
                let x = i as f32 / 255.0;
                if x < 0.7 {
                    x * 0.95 / 0.7
                } else if x < 0.9 {
                    0.95
                } else {
                    0.95 + (x - 0.9) * 0.5
                }
            })
            .collect()
    }

    #[test]
    fn gentle_removes_flat_stretches_and_keeps_the_ends() {
        let raw = squeezing();
        let t = ToneSpec::gentle(&raw, 0.4, 2.5, 0.5);
        t.validate().unwrap();
        assert!(
            t.min_body_slope() >= 0.3,
            "slope floor kept after rescaling: {}",
            t.min_body_slope()
        );
        assert!(t.points[0].abs() < 1e-6);
        assert!((t.points[255] - 1.0).abs() < 1e-5, "white stays white");
        // the raw curve had a flat stretch
        let flat = ToneSpec {
            points: raw,
            page_default: 0.0,
        };
        assert!(flat.min_body_slope() < 1e-6);
    }

    #[test]
    fn strength_blends_from_identity_to_the_curve() {
        let t = ToneSpec::gentle(&squeezing(), 0.4, 2.5, 0.0);
        for x in [0.0, 0.2, 0.5, 0.8, 1.0] {
            assert_eq!(t.map(x, 0.0), x);
            assert!((t.map(x, 1.0) - t.curve(x)).abs() < 1e-6);
            let half = t.map(x, 0.5);
            assert!((half - (x + t.curve(x)) / 2.0).abs() < 1e-6);
        }
        // monotone at every strength
        for s in [0.25, 0.5, 1.0] {
            let ys: Vec<f32> = (0..=100).map(|i| t.map(i as f32 / 100.0, s)).collect();
            assert!(ys.windows(2).all(|w| w[1] >= w[0]), "monotone at {s}");
        }
    }

    #[test]
    fn bad_curves_and_strengths_are_named() {
        let falling = ToneSpec {
            points: vec![0.0, 0.6, 0.5, 1.0],
            page_default: 0.0,
        };
        assert!(falling.validate().unwrap_err().contains("monotone"));
        let nan = ToneSpec {
            points: vec![0.0, f32::NAN, 1.0],
            page_default: 0.0,
        };
        assert!(nan.validate().unwrap_err().contains("point 1"));
        let one = ToneSpec {
            points: vec![0.5],
            page_default: 0.0,
        };
        assert!(one.validate().unwrap_err().contains("1 points"));
        assert!(check_strength(1.5).unwrap_err().contains("--tone 1.5"));
        assert!(check_strength(f32::NAN).is_err());
        assert!(check_strength(0.0).is_ok());
    }
}
