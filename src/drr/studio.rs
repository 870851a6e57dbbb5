//! The page's DRR studio: one CT held in memory and rendered as one `dxr drr` view at a time
//! while its settings change, with nodules drawn at random or placed where the user clicks.
//! Everything here runs natively too, so the page's output can be compared with `dxr drr`.
//!
//! A render travels: [`StudioSettings::set_settings`] turns the panel's settings into those of a
//! one-view set without jitter → [`Studio::projection`] → a renderer traces the nodule-free
//! view (CPU or WebGPU, awaited by the caller) → [`Studio::finish`] adds the nodules and the
//! labels ([`dataset::finish_view`], as `dxr drr` does).

use crate::limits::Limits;
use serde::{Deserialize, Serialize};

use super::dataset::{self, SetSettings, ViewLabel, ViewSettings, Window};
use super::nodule::{LungRegion, Nodule, NoduleSettings};
use super::{Cleanup, Geometry, Pose, Projection, Scene, View, Volume};
use crate::io::{BitDepth, GrayImage, encode_png};
use crate::{Error, Result};

/// Largest CT the studio takes, in voxels (4 bytes each, held about three times over while a CT
/// is prepared): the page's wasm memory is 4 GiB in all. The example CT has 35 M.
pub const MAX_STUDIO_VOXELS: usize = Limits::STUDIO_VOXELS.value as usize;

/// Detector sides the panel offers (pixels).
pub const STUDIO_PIXELS: std::ops::RangeInclusive<usize> = 64..=1024;

/// What the panel sets for one render; the defaults are those of one `dxr drr` view (PA, the
/// base pose without jitter, no nodules, a 256² detector, the automatic window).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StudioSettings {
    /// PA (default) or AP.
    pub view: View,
    /// Rotation about x, y, z (degrees) and shift (mm) of the patient; default 0.
    pub rotation_deg: [f64; 3],
    pub shift_mm: [f64; 3],
    /// Detector pixels per side, 64–1024 (default 256) over a 400 mm detector.
    pub pixels: usize,
    pub window: Window,
    /// Random nodules (default 0), drawn from `seed` as `dxr drr --seed` draws them.
    pub nodules: usize,
    pub seed: u64,
    pub nodule: NoduleSettings,
}

impl Default for StudioSettings {
    fn default() -> Self {
        Self {
            view: View::Pa,
            rotation_deg: [0.0; 3],
            shift_mm: [0.0; 3],
            pixels: 256,
            window: Window::default(),
            nodules: 0,
            seed: 0,
            nodule: NoduleSettings::default(),
        }
    }
}

impl StudioSettings {
    /// Parses the panel's JSON; unknown fields and impossible values are refused by name.
    pub fn from_json(text: &str) -> Result<Self> {
        let s: Self =
            serde_json::from_str(text).map_err(|e| Error::Drr(format!("studio settings: {e}")))?;
        s.set_settings().view.geometry.validate()?;
        s.nodule.validate()?;
        if !STUDIO_PIXELS.contains(&s.pixels) {
            return Err(Error::Drr(format!(
                "a detector of {} pixels: the studio renders {}–{}",
                s.pixels,
                STUDIO_PIXELS.start(),
                STUDIO_PIXELS.end()
            )));
        }
        if s.nodules > 50 {
            return Err(Error::Drr(format!(
                "{} nodules: the studio places at most 50",
                s.nodules
            )));
        }
        if s.rotation_deg
            .iter()
            .chain(&s.shift_mm)
            .any(|v| !v.is_finite())
        {
            return Err(Error::Drr("rotation and shift must be finite".into()));
        }
        Ok(s)
    }

    /// The one-view set `dxr drr --count 1 --rotation-jitter 0,0,0 --shift-jitter 0,0,0` with
    /// these settings would make.
    pub fn set_settings(&self) -> SetSettings {
        SetSettings {
            count: 1,
            seed: self.seed,
            first_index: 0,
            view: ViewSettings {
                geometry: Geometry {
                    pixels: [self.pixels, self.pixels],
                    view: self.view,
                    ..Geometry::default()
                },
                pose: Pose {
                    rotation_deg: self.rotation_deg,
                    translation_mm: self.shift_mm,
                },
                rotation_jitter_deg: [0.0; 3],
                translation_jitter_mm: [0.0; 3],
                nodules: self.nodules,
                nodule: self.nodule,
                window: self.window,
            },
            raw: false,
            contact_sheet: 0,
        }
    }
}

/// How a loaded CT is prepared (the panel's clean-up toggles).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StudioCleanup {
    /// Remove the table and everything outside the body (default on).
    pub remove_table: bool,
    /// Turn contrast-filled vessels into soft tissue (default on).
    pub neutralise_contrast: bool,
}

impl Default for StudioCleanup {
    fn default() -> Self {
        Self {
            remove_table: true,
            neutralise_contrast: true,
        }
    }
}

impl StudioCleanup {
    pub fn cleanup(&self) -> Cleanup {
        Cleanup {
            body_mask: self.remove_table,
            neutralise_contrast: self.neutralise_contrast,
            ..Cleanup::default()
        }
    }
}

/// gzip (a `.nii.gz`) or a single-file NIfTI-1 header, by content.
fn looks_like_nifti(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b]) || (b.len() >= 348 && &b[344..347] == b"n+1")
}

/// Reads a label mask for a CT (`dxr drr --mask`): one NIfTI file on the CT's grid, lobes 10–14.
pub fn read_mask(name: String, bytes: Vec<u8>) -> Result<Volume> {
    if !looks_like_nifti(&bytes) {
        return Err(Error::Volume(format!(
            "{name}: a lung mask is a label NIfTI (.nii, .nii.gz) on the CT's grid"
        )));
    }
    let vol = super::nifti::nifti_from_bytes_limited(bytes, &name, 4 * MAX_STUDIO_VOXELS as u64)?;
    within_studio_voxels(vol, &format!("{name}: the mask"))
}

/// `vol`, or the studio's voxel limit named for `what`.
fn within_studio_voxels(vol: Volume, what: &str) -> Result<Volume> {
    if vol.data.len() > MAX_STUDIO_VOXELS {
        return Err(Error::TooLarge(format!(
            "{what} has {} voxels; the studio takes at most {MAX_STUDIO_VOXELS}",
            vol.data.len()
        )));
    }
    Ok(vol)
}

/// Reads a CT from the files a user dropped: one NIfTI file (`.nii`, `.nii.gz`, by content), or
/// the slices of one DICOM series (one file or many).
pub fn read_ct(files: Vec<(String, Vec<u8>)>) -> Result<Volume> {
    if files.is_empty() {
        return Err(Error::Volume("no CT file given".into()));
    }
    let vol = if files.len() == 1 && looks_like_nifti(&files[0].1) {
        let (name, bytes) = files.into_iter().next().expect("one file");
        super::nifti::nifti_from_bytes_limited(bytes, &name, 4 * MAX_STUDIO_VOXELS as u64)?
    } else if files
        .iter()
        .all(|(_, b)| crate::io::dicom::looks_like_dicom(b))
    {
        let voxels: u64 = files.iter().map(|(_, b)| b.len() as u64 / 2).sum();
        if voxels > MAX_STUDIO_VOXELS as u64 {
            return Err(Error::TooLarge(format!(
                "the series holds about {voxels} voxels; the studio takes at most {MAX_STUDIO_VOXELS}"
            )));
        }
        super::dicom_series::series_from_files(&files)?
    } else {
        let odd: Vec<&str> = files
            .iter()
            .filter(|(_, b)| !looks_like_nifti(b) && !crate::io::dicom::looks_like_dicom(b))
            .map(|(n, _)| n.as_str())
            .take(3)
            .collect();
        return Err(Error::Volume(if files.len() == 1 {
            format!(
                "{}: neither a NIfTI CT (.nii, .nii.gz) nor a DICOM slice",
                files[0].0
            )
        } else if odd.is_empty() {
            "a CT is one NIfTI file or the DICOM slices of one series, not several NIfTI files"
                .to_string()
        } else {
            format!(
                "not DICOM slices: {} (a series is all DICOM files)",
                odd.join(", ")
            )
        }));
    };
    within_studio_voxels(vol, "the CT")
}

/// A CT ready for rendering, and the nodules the user placed on it.
pub struct Studio {
    pub scene: Scene,
    pub lungs: LungRegion,
    pub cleanup: StudioCleanup,
    /// Nodules placed by clicking, in the patient frame (they stay put when the pose changes).
    pub placed: Vec<Nodule>,
}

/// One finished render.
pub struct StudioRender {
    pub settings: StudioSettings,
    pub view: dataset::View,
    /// What `dxr drr` writes as `labels/00000.json` for the same view.
    pub label: ViewLabel,
}

impl Studio {
    /// Cleans and converts `ct` as `dxr drr` does, with its optional label mask `labels`
    /// (`dxr drr --mask`: nodules go into the lobes it labels, 10–14; without it, into the
    /// aerated lung found by threshold).
    pub fn new(ct: Volume, labels: Option<&Volume>, cleanup: StudioCleanup) -> Result<Self> {
        let scene = Scene::new(ct, labels, &cleanup.cleanup(), super::MU_WATER_PER_MM)?;
        let lungs = match labels {
            Some(l) => {
                let lungs = LungRegion::from_labels(l);
                if lungs.voxels.is_empty() {
                    return Err(Error::Volume(
                        "the label mask labels no lung lobe (labels 10–14): \
                         is it a lobe mask of this CT?"
                            .into(),
                    ));
                }
                lungs
            }
            None => LungRegion::from_hu(&scene.ct),
        };
        Ok(Self {
            scene,
            lungs,
            cleanup,
            placed: Vec::new(),
        })
    }

    /// Step 1 of a render: the projection of `s`.
    pub fn projection(&self, s: &StudioSettings) -> Result<Projection> {
        let (_, _, p) = dataset::view_projection(&self.scene, &s.set_settings(), 0)?;
        Ok(p)
    }

    /// Step 3: nodules and labels on the traced nodule-free line integrals `clean`.
    pub fn finish(&self, s: &StudioSettings, clean: Vec<f32>) -> Result<StudioRender> {
        let set = s.set_settings();
        let drawn = dataset::view_projection(&self.scene, &set, 0)?;
        let view = dataset::finish_view(
            &self.scene,
            Some(&self.lungs),
            &set,
            0,
            drawn,
            clean,
            &self.placed,
        )?;
        let label = ViewLabel::of_view(&view, &set);
        Ok(StudioRender {
            settings: s.clone(),
            view,
            label,
        })
    }

    /// A whole render on the CPU (this thread in the page, all cores natively).
    pub fn render_cpu(&self, s: &StudioSettings) -> Result<StudioRender> {
        let proj = self.projection(s)?;
        self.finish(s, self.scene.render(&proj))
    }

    /// Places a nodule (drawn from `last`'s nodule settings) where the user clicked on `last`,
    /// at detector point `at` (pixels); it is kept clear of the nodules shown there. Returns
    /// its index among the placed nodules.
    pub fn place_at(&mut self, last: &StudioRender, at: [f64; 2]) -> Result<usize> {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(last.settings.seed);
        rng.set_stream(1 + self.placed.len() as u64);
        let n = self.lungs.place_on_ray(
            &mut rng,
            &self.scene.ct,
            &last.settings.nodule,
            &last.view.nodules,
            &last.view.projection,
            at,
        )?;
        self.placed.push(n);
        Ok(self.placed.len() - 1)
    }
}

impl Studio {
    /// Removes nodule `id` of `last`'s label. The random ones become placed ones first, so
    /// that the others stay where they are; returns how many random nodules are left to draw
    /// (0 then, else `last`'s count).
    pub fn remove(&mut self, last: &StudioRender, id: usize) -> Result<usize> {
        let random = last.settings.nodules;
        if id >= last.view.nodules.len() {
            return Err(Error::Drr(format!(
                "there is no nodule {id} (the view has {})",
                last.view.nodules.len()
            )));
        }
        if id < random {
            let mut all = last.view.nodules[..random].to_vec();
            all.append(&mut self.placed);
            self.placed = all;
            self.placed.remove(id);
            Ok(0)
        } else {
            self.placed.remove(id - random);
            Ok(random)
        }
    }
}

impl StudioRender {
    /// The radiograph as shown, with nodules or without (`clean`), in [0, 1].
    pub fn display(&self, clean: bool) -> GrayImage {
        let v = &self.view;
        let data = if clean { &v.clean } else { &v.with_nodules };
        dataset::display(data, self.view.projection.geometry.size(), v.window)
    }

    /// The 16-bit PNG `dxr drr` writes (`png16/` or `clean/png16/`).
    pub fn png16(&self, clean: bool) -> Result<Vec<u8>> {
        encode_png(&self.display(clean), BitDepth::Sixteen)
    }

    /// The label as `dxr drr` writes it, and the one-image COCO file.
    pub fn label_json(&self) -> String {
        serde_json::to_string_pretty(&self.label).expect("serialisable")
    }

    pub fn coco_json(&self) -> String {
        serde_json::to_string_pretty(&dataset::coco(std::slice::from_ref(&self.label)))
            .expect("serialisable")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drr::nifti::nifti_bytes;

    /// A small chest: a body of soft tissue with two aerated lungs.
    fn phantom() -> Volume {
        let dims = [48, 40, 36];
        let mut data = vec![-1000.0f32; dims[0] * dims[1] * dims[2]];
        for k in 2..34 {
            for j in 4..36 {
                for i in 4..44 {
                    let lung =
                        (j > 10 && j < 30) && ((8..20).contains(&i) || (28..40).contains(&i));
                    data[i + dims[0] * (j + dims[1] * k)] = if lung { -850.0 } else { 40.0 };
                }
            }
        }
        let mut affine = [[0.0; 4]; 4];
        for c in 0..3 {
            affine[c][c] = 4.0;
        }
        affine[3][3] = 1.0;
        Volume::new(dims, data, affine).unwrap()
    }

    /// A 64² view with `nodules` random nodules of radius `radius_mm` drawn from `seed`.
    fn small_view(nodules: usize, seed: u64, radius_mm: [f64; 2]) -> StudioSettings {
        StudioSettings {
            pixels: 64,
            nodules,
            seed,
            nodule: NoduleSettings {
                radius_mm,
                margin_mm: 1.0,
                ..NoduleSettings::default()
            },
            ..StudioSettings::default()
        }
    }

    #[test]
    fn defaults_are_one_dxr_drr_view_without_jitter() {
        let s = StudioSettings::from_json("{}").unwrap();
        let set = s.set_settings();
        assert_eq!(set.view.geometry, Geometry::default());
        assert_eq!(set.view.pose, Pose::default());
        assert_eq!(set.view.rotation_jitter_deg, [0.0; 3]);
        assert_eq!(set.view.translation_jitter_mm, [0.0; 3]);
        assert_eq!(set.view.window, Window::default());
        assert_eq!(set.view.nodules, 0);
        for bad in [
            r#"{"pixels": 2048}"#,
            r#"{"pixels": 16}"#,
            r#"{"nodules": 51}"#,
            r#"{"colour": 1}"#,
            r#"{"nodule": {"radius_mm": [5, 2], "hu": [20, 100], "shape": "sphere", "edge_mm": 2, "margin_mm": 3}}"#,
        ] {
            assert!(StudioSettings::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_render_equals_render_view_of_the_same_set() {
        let studio = Studio::new(phantom(), None, StudioCleanup::default()).unwrap();
        let s = small_view(2, 7, [3.0, 5.0]);
        let r = studio.render_cpu(&s).unwrap();
        let set = s.set_settings();
        let v = dataset::render_view(
            &studio.scene,
            Some(&studio.lungs),
            &dataset::Renderer::Cpu,
            &set,
            0,
        )
        .unwrap();
        assert_eq!(r.view.with_nodules, v.with_nodules);
        assert_eq!(r.view.labels, v.labels);
        assert_eq!(r.label.nodules.len(), 2);
        assert!(r.view.with_nodules != r.view.clean);
        assert_eq!(r.png16(false).unwrap(), {
            let shown = dataset::display(&v.with_nodules, crate::spec::Size::new(64, 64), v.window);
            encode_png(&shown, BitDepth::Sixteen).unwrap()
        });
    }

    #[test]
    fn a_click_places_a_nodule_on_that_ray_or_says_why_not() {
        let mut studio = Studio::new(phantom(), None, StudioCleanup::default()).unwrap();
        let s = small_view(0, 0, [4.0, 4.0]);
        let first = studio.render_cpu(&s).unwrap();
        // a detector point over the middle of one lung
        let (at, _) = first
            .view
            .projection
            .project(studio.scene.ct.world([14.0, 20.0, 18.0]))
            .unwrap();
        studio.place_at(&first, at).unwrap();
        let r = studio.render_cpu(&s).unwrap();
        assert_eq!(r.label.nodules.len(), 1);
        let [x0, y0, x1, y1] = r.label.nodules[0].bbox_px;
        assert!(
            x0 <= at[0] && at[0] <= x1 && y0 <= at[1] && at[1] <= y1,
            "{:?}",
            r.label.nodules[0]
        );
        // the nodule is in the CT: it stays in the label when the view turns
        let turned = StudioSettings {
            rotation_deg: [0.0, 0.0, 10.0],
            ..s.clone()
        };
        assert_eq!(studio.render_cpu(&turned).unwrap().label.nodules.len(), 1);
        // a ray through air only, and one off the detector
        let e = studio.place_at(&r, [1.0, 1.0]).unwrap_err().to_string();
        assert!(e.contains("no lung along the ray"), "{e}");
        let e = studio.place_at(&r, [-3.0, 1.0]).unwrap_err().to_string();
        assert!(e.contains("outside the 64×64 detector"), "{e}");
        // a nodule too large for the lung is refused with its size
        let mut big = r.settings.clone();
        big.nodule.radius_mm = [30.0, 30.0];
        let r2 = StudioRender {
            settings: big,
            view: r.view,
            label: r.label,
        };
        let e = studio.place_at(&r2, at).unwrap_err().to_string();
        assert!(e.contains("does not fit"), "{e}");
        assert_eq!(studio.placed.len(), 1);
    }

    #[test]
    fn a_lobe_mask_decides_where_random_nodules_go_and_a_wrong_one_is_named() {
        let ct = phantom();
        // label only the lung at i in 28..40 (a left lobe, 11)
        let mut labels = ct.clone();
        let [nx, ny, _] = ct.dims;
        for (p, v) in labels.data.iter_mut().enumerate() {
            let (i, j, k) = (p % nx, (p / nx) % ny, p / (nx * ny));
            let lung = (2..34).contains(&k) && j > 10 && j < 30 && (28..40).contains(&i);
            *v = if lung { 11.0 } else { 0.0 };
        }
        let s = small_view(6, 3, [2.0, 3.0]);
        let side = |studio: &Studio| -> Vec<bool> {
            let r = studio.render_cpu(&s).unwrap();
            assert_eq!(r.label.nodules.len(), 6);
            r.label
                .nodules
                .iter()
                .map(|n| (28.0..40.0).contains(&n.centre_voxel[0]))
                .collect()
        };
        let masked = Studio::new(ct.clone(), Some(&labels), StudioCleanup::default()).unwrap();
        assert!(
            side(&masked).iter().all(|&left| left),
            "a nodule outside the labelled lobe"
        );
        let unmasked = Studio::new(ct.clone(), None, StudioCleanup::default()).unwrap();
        assert!(
            !side(&unmasked).iter().all(|&left| left),
            "the same seed without the mask"
        );
        // a mask without lobes, and one on another grid
        let mut empty = labels.clone();
        empty.data.iter_mut().for_each(|v| *v = 0.0);
        let e = Studio::new(ct.clone(), Some(&empty), StudioCleanup::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("labels no lung lobe"), "{e}");
        let other = Volume::new([8, 8, 8], vec![11.0; 512], ct.affine).unwrap();
        let e = Studio::new(ct, Some(&other), StudioCleanup::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("the label mask is [8, 8, 8] voxels"), "{e}");
    }

    #[test]
    fn removing_a_random_nodule_keeps_the_others_in_place() {
        let mut studio = Studio::new(phantom(), None, StudioCleanup::default()).unwrap();
        let s = small_view(3, 3, [2.0, 3.0]);
        let r = studio.render_cpu(&s).unwrap();
        let left = studio.remove(&r, 1).unwrap();
        assert_eq!(left, 0);
        let after = studio
            .render_cpu(&StudioSettings {
                nodules: left,
                ..s.clone()
            })
            .unwrap();
        let centres = |r: &StudioRender| -> Vec<[f64; 3]> {
            r.label.nodules.iter().map(|n| n.centre_mm).collect()
        };
        assert_eq!(centres(&after), [centres(&r)[0], centres(&r)[2]]);
        assert!(studio.remove(&after, 2).is_err());
        studio.remove(&after, 1).unwrap();
        assert_eq!(studio.placed.len(), 1);
    }

    #[test]
    fn bad_cts_are_refused_by_name() {
        let e = read_ct(vec![("notes.txt".into(), b"hello".to_vec())])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("notes.txt") && e.contains("neither a NIfTI"),
            "{e}"
        );
        // truncated gzip
        let nii = nifti_bytes(&phantom());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &nii).unwrap();
        let gz = gz.finish().unwrap();
        let e = read_ct(vec![("ct.nii.gz".into(), gz[..gz.len() / 2].to_vec())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ct.nii.gz"), "{e}");
        // the whole file reads
        let v = read_ct(vec![("ct.nii.gz".into(), gz)]).unwrap();
        assert_eq!(v.dims, [48, 40, 36]);
        assert!(read_ct(Vec::new()).is_err());
        let e = read_ct(vec![("a.nii".into(), nii.clone()), ("b.nii".into(), nii)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not several NIfTI"), "{e}");
    }
}
