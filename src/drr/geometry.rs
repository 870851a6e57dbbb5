//! Cone-beam geometry of a chest radiograph: a point source, a flat detector, the patient's pose.
//!
//! Room frame (RAS+ mm, origin at the isocentre): for a PA view the source is behind the patient
//! (−y) and the detector in front (+y); AP swaps them. Both are displayed as radiographs are, as if
//! facing the patient: the patient's left (−x) on the image's right, head at the top.

use crate::limits::Limits;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Which side the beam enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// Posterior → anterior: source behind the patient, detector at the chest (the usual
    /// standing chest radiograph).
    Pa,
    /// Anterior → posterior: source in front, detector behind (bedside radiographs).
    Ap,
}

/// Source, detector and pixel grid.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    /// Source → detector distance (mm). Default 1800, the usual chest SID.
    pub sdd: f64,
    /// Source → isocentre distance (mm). Default 1650: the chest's centre ~15 cm before the
    /// detector.
    pub sid: f64,
    /// Detector width and height (mm). Default 400 × 400.
    pub detector_mm: [f64; 2],
    /// Detector pixels (columns, rows). Default 256 × 256.
    pub pixels: [usize; 2],
    /// PA (default) or AP.
    pub view: View,
}

impl Default for Geometry {
    fn default() -> Self {
        Self {
            sdd: 1800.0,
            sid: 1650.0,
            detector_mm: [400.0, 400.0],
            pixels: [256, 256],
            view: View::Pa,
        }
    }
}

/// Largest detector side in pixels.
pub const MAX_DETECTOR_PIXELS: usize = Limits::DETECTOR_PIXELS.value as usize;

impl Geometry {
    /// The detector's size in pixels.
    pub fn size(&self) -> crate::spec::Size {
        crate::spec::Size::new(self.pixels[0], self.pixels[1])
    }

    /// Refuses settings that cannot describe a radiograph.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Drr(m));
        if !(self.sdd.is_finite() && self.sid.is_finite() && self.sid > 0.0 && self.sdd > self.sid)
        {
            return bad(format!(
                "source–detector distance {} mm must exceed the source–isocentre distance {} mm (> 0)",
                self.sdd, self.sid
            ));
        }
        if self.detector_mm.iter().any(|d| !d.is_finite() || *d <= 0.0) {
            return bad(format!(
                "detector size {:?} mm must be positive",
                self.detector_mm
            ));
        }
        if self
            .pixels
            .iter()
            .any(|&p| !(8..=MAX_DETECTOR_PIXELS).contains(&p))
        {
            return bad(format!(
                "detector of {:?} pixels: each side must be 8..={MAX_DETECTOR_PIXELS}",
                self.pixels
            ));
        }
        Ok(())
    }

    /// Pixel pitch (mm) along columns and rows.
    pub fn pitch(&self) -> [f64; 2] {
        [
            self.detector_mm[0] / self.pixels[0] as f64,
            self.detector_mm[1] / self.pixels[1] as f64,
        ]
    }
}

/// Patient pose relative to the standard position: rotations (degrees) about the isocentre
/// around x (left–right axis: tilt), y (front–back axis: in-plane rotation) and z (head–foot
/// axis: turning), applied in that order, then a shift (mm, room frame).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Pose {
    pub rotation_deg: [f64; 3],
    pub translation_mm: [f64; 3],
}

impl Pose {
    /// Rotation matrix R = Rz · Ry · Rx.
    pub fn rotation(&self) -> [[f64; 3]; 3] {
        let [a, b, c] = self.rotation_deg.map(f64::to_radians);
        let rx = [
            [1.0, 0.0, 0.0],
            [0.0, a.cos(), -a.sin()],
            [0.0, a.sin(), a.cos()],
        ];
        let ry = [
            [b.cos(), 0.0, b.sin()],
            [0.0, 1.0, 0.0],
            [-b.sin(), 0.0, b.cos()],
        ];
        let rz = [
            [c.cos(), -c.sin(), 0.0],
            [c.sin(), c.cos(), 0.0],
            [0.0, 0.0, 1.0],
        ];
        matmul(rz, matmul(ry, rx))
    }
}

/// One view set up for rendering: everything in the *patient* frame (the CT's world
/// coordinates), so the volume never moves.
#[derive(Debug, Clone, Copy)]
pub struct Projection {
    pub geometry: Geometry,
    /// Source position.
    pub source: [f64; 3],
    /// Centre of detector pixel (0, 0).
    pub pixel0: [f64; 3],
    /// Step from one pixel centre to the next column (image right).
    pub du: [f64; 3],
    /// Step to the next row (image down).
    pub dv: [f64; 3],
    /// Unit vector from the source to the detector centre.
    pub normal: [f64; 3],
}

impl Projection {
    /// Places the detector for `pose`, with the isocentre at `isocentre` (patient frame).
    pub fn new(geometry: Geometry, pose: &Pose, isocentre: [f64; 3]) -> Result<Self> {
        geometry.validate()?;
        if pose
            .rotation_deg
            .iter()
            .chain(&pose.translation_mm)
            .any(|v| !v.is_finite())
        {
            return Err(Error::Drr(format!("pose {pose:?} is not finite")));
        }
        // 1. room frame
        let side = match geometry.view {
            View::Pa => 1.0,
            View::Ap => -1.0,
        };
        let source = [0.0, -side * geometry.sid, 0.0];
        let centre = [0.0, side * (geometry.sdd - geometry.sid), 0.0];
        let u = [-1.0, 0.0, 0.0]; // image right = patient's left
        let v = [0.0, 0.0, -1.0]; // image down = feet
        let [pu, pv] = geometry.pitch();
        let [w, h] = geometry.pixels.map(|p| p as f64);
        let pixel0 = add(
            centre,
            add(
                scale(u, pu * (0.5 - w / 2.0)),
                scale(v, pv * (0.5 - h / 2.0)),
            ),
        );
        // 2. into the patient frame: X_pat = Rᵀ (X_room − t) + c
        let r = pose.rotation();
        let rt = transpose(r);
        let to_patient = |x: [f64; 3]| add(mat_vec(rt, sub(x, pose.translation_mm)), isocentre);
        let source_p = to_patient(source);
        let du = mat_vec(rt, scale(u, pu));
        let dv = mat_vec(rt, scale(v, pv));
        let normal = mat_vec(rt, [0.0, side, 0.0]);
        Ok(Self {
            geometry,
            source: source_p,
            pixel0: to_patient(pixel0),
            du,
            dv,
            normal,
        })
    }

    /// Centre of pixel `(x, y)` (column, row; fractional allowed).
    #[inline]
    pub fn pixel(&self, x: f64, y: f64) -> [f64; 3] {
        add(self.pixel0, add(scale(self.du, x), scale(self.dv, y)))
    }

    /// Where a patient-frame point lands on the detector, in continuous pixel coordinates with
    /// pixel `i` covering `[i, i + 1)` (so its centre is `i + 0.5`), and the magnification there.
    /// `None` when the point is not between source and detector.
    pub fn project(&self, p: [f64; 3]) -> Option<([f64; 2], f64)> {
        let ray = sub(p, self.source);
        let depth = dot(ray, self.normal);
        if depth <= 1e-9 {
            return None;
        }
        let m = self.geometry.sdd / depth;
        let hit = add(self.source, scale(ray, m));
        let rel = sub(hit, self.pixel0);
        let x = dot(rel, self.du) / dot(self.du, self.du) + 0.5;
        let y = dot(rel, self.dv) / dot(self.dv, self.dv) + 0.5;
        Some(([x, y], m))
    }
}

pub(crate) fn add(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
pub(crate) fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
pub(crate) fn scale(a: [f64; 3], s: f64) -> [f64; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}
pub(crate) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
pub(crate) fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}
fn matmul(a: [[f64; 3]; 3], b: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    std::array::from_fn(|r| std::array::from_fn(|c| (0..3).map(|k| a[r][k] * b[k][c]).sum()))
}
fn transpose(a: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    std::array::from_fn(|r| std::array::from_fn(|c| a[c][r]))
}
pub(crate) fn mat_vec(a: [[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    std::array::from_fn(|r| dot(a[r], v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isocentre_projects_to_the_detector_centre_with_the_magnification() {
        let g = Geometry::default();
        let p = Projection::new(g, &Pose::default(), [10.0, 20.0, 30.0]).unwrap();
        let ([x, y], m) = p.project([10.0, 20.0, 30.0]).unwrap();
        assert!((x - 128.0).abs() < 1e-9 && (y - 128.0).abs() < 1e-9);
        assert!((m - 1800.0 / 1650.0).abs() < 1e-12);
        // the patient's left (−x) lands right of the centre, the head (+z) above it, in PA and AP
        for view in [View::Pa, View::Ap] {
            let p = Projection::new(Geometry { view, ..g }, &Pose::default(), [0.0; 3]).unwrap();
            let ([x, y], _) = p.project([-50.0, 0.0, 50.0]).unwrap();
            assert!(x > 128.0 && y < 128.0, "{view:?}: {x} {y}");
        }
    }

    #[test]
    fn pose_moves_the_patient_not_the_detector() {
        let g = Geometry::default();
        let shifted = Pose {
            translation_mm: [-10.0, 0.0, 0.0],
            ..Default::default()
        };
        let p = Projection::new(g, &shifted, [0.0; 3]).unwrap();
        // shifting the patient 10 mm toward its left moves its centre right on the image
        let ([x, _], m) = p.project([0.0; 3]).unwrap();
        assert!((x - 128.0 - 10.0 * m / g.pitch()[0]).abs() < 1e-9);
        // a 90° turn about the head–foot axis brings the patient's front (+y) to the room's −x,
        // which is the image's right
        let turned = Pose {
            rotation_deg: [0.0, 0.0, 90.0],
            ..Default::default()
        };
        let p = Projection::new(g, &turned, [0.0; 3]).unwrap();
        let ([x, _], _) = p.project([0.0, 50.0, 0.0]).unwrap();
        assert!(x > 128.0 + 10.0, "{x}");
    }

    #[test]
    fn bad_geometry_is_refused() {
        let g = Geometry {
            sdd: 1000.0,
            sid: 1200.0,
            ..Default::default()
        };
        assert!(
            g.validate()
                .unwrap_err()
                .to_string()
                .contains("must exceed")
        );
        let g = Geometry {
            pixels: [4, 256],
            ..Default::default()
        };
        assert!(g.validate().unwrap_err().to_string().contains("8..="));
    }
}
