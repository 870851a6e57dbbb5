//! The CTs of a dataset: a JSONL manifest (one CT a line) or a folder whose NIfTI files and DICOM
//! series folders become one. Every entry is checked (its files, its id, its overrides, the grid
//! its header declares and its mask's) before anything is rendered, and named by its line.

use crate::limits::Limits;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::settings::{CtSpec, RenderSettings, check_id};
use crate::drr::{dicom_series, nifti};
use crate::{Error, Result};

/// Largest manifest file read.
pub const MAX_MANIFEST_BYTES: u64 = Limits::MANIFEST_BYTES.value;

/// One usable CT of the manifest.
#[derive(Debug, Clone)]
pub struct Entry {
    pub spec: CtSpec,
    /// Its render settings: the dataset's with the entry's overrides.
    pub render: RenderSettings,
    /// Where it was given (`manifest.jsonl:3`, or the folder's file).
    pub origin: String,
}

/// An entry that cannot be used, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadEntry {
    pub origin: String,
    pub problem: String,
}

/// A manifest read and checked.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Relative paths of the entries are relative to this folder.
    pub base: PathBuf,
    pub entries: Vec<Entry>,
    pub bad: Vec<BadEntry>,
}

impl Manifest {
    /// Reads `path` (a JSONL file or a folder of CTs) with `defaults` as every CT's settings
    /// before its overrides.
    pub fn read(path: &Path, defaults: &RenderSettings) -> Result<Self> {
        let raw: Vec<(String, std::result::Result<CtSpec, String>)> = if path.is_dir() {
            from_folder(path)?
                .into_iter()
                .map(|s| (format!("{}/{}", path.display(), s.ct), Ok(s)))
                .collect()
        } else {
            from_jsonl(path)?
        };
        let base = if path.is_dir() {
            path.to_path_buf()
        } else {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        };
        let mut m = Manifest {
            base,
            entries: Vec::new(),
            bad: Vec::new(),
        };
        let mut seen: Vec<(String, String)> = Vec::new();
        for (origin, spec) in raw {
            let checked = spec.and_then(|s| {
                if let Some((_, first)) = seen.iter().find(|(id, _)| *id == s.id) {
                    return Err(format!("id {:?} is also given at {first}", s.id));
                }
                seen.push((s.id.clone(), origin.clone()));
                let render = defaults
                    .with_overrides(&s.overrides)
                    .map_err(|e| e.to_string())?;
                m.check_files(&s).map_err(|e| e.to_string())?;
                Ok(Entry {
                    spec: s,
                    render,
                    origin: origin.clone(),
                })
            });
            match checked {
                Ok(e) => m.entries.push(e),
                Err(problem) => m.bad.push(BadEntry { origin, problem }),
            }
        }
        if m.entries.is_empty() && m.bad.is_empty() {
            return Err(Error::Drr(format!(
                "{}: no CTs (a JSONL file with one {{\"id\", \"ct\"}} a line, or a folder of NIfTI files and DICOM series folders)",
                path.display()
            )));
        }
        Ok(m)
    }

    /// A path of an entry, resolved against the manifest's folder.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// The CT and mask exist and their headers agree on the grid.
    fn check_files(&self, s: &CtSpec) -> Result<()> {
        let ct = self.resolve(&s.ct);
        if !ct.exists() {
            return Err(Error::Volume(format!(
                "ct {}: no such file or folder",
                ct.display()
            )));
        }
        let (dims, affine) = if ct.is_dir() {
            (dicom_series::series_dims(&ct)?, None)
        } else {
            let (d, a) = nifti::read_grid(&ct)?;
            (d, Some(a))
        };
        if let Some(mask) = &s.mask {
            let mask = self.resolve(mask);
            if !mask.is_file() {
                return Err(Error::Volume(format!(
                    "mask {}: no such file",
                    mask.display()
                )));
            }
            let (mdims, maffine) = nifti::read_grid(&mask)?;
            if mdims != dims {
                return Err(Error::Volume(format!(
                    "mask {} is {mdims:?} voxels but the CT is {dims:?}",
                    mask.display()
                )));
            }
            if let Some(a) = affine {
                let worst = crate::drr::volume::affine_difference(&a, &maffine);
                if worst > 1e-3 {
                    return Err(Error::Volume(format!(
                        "mask {} lies on another grid than the CT (affines differ by {worst:.3} mm)",
                        mask.display()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The problems of the bad entries, one a line.
    pub fn describe_bad(&self) -> String {
        self.bad
            .iter()
            .map(|b| format!("  {}: {}", b.origin, b.problem))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One `CtSpec` per non-empty line of a JSONL file, or the line's problem.
fn from_jsonl(path: &Path) -> Result<Vec<(String, std::result::Result<CtSpec, String>)>> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if size > MAX_MANIFEST_BYTES {
        return Err(Error::TooLarge(format!(
            "{}: {size} bytes, more than a manifest may be ({MAX_MANIFEST_BYTES})",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (format!("{}:{}", path.display(), i + 1), parse_line(l)))
        .collect())
}

fn parse_line(line: &str) -> std::result::Result<CtSpec, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(mut o) = v else {
        return Err("not a JSON object".into());
    };
    let mut text = |k: &str, required: bool| -> std::result::Result<Option<String>, String> {
        match o.remove(k) {
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            None if !required => Ok(None),
            None => Err(format!("no {k:?}")),
            Some(other) => Err(format!("{k:?} must be a non-empty string, is {other}")),
        }
    };
    let id = text("id", true)?.expect("required");
    let ct = text("ct", true)?.expect("required");
    let mask = text("mask", false)?;
    check_id(&id)?;
    let overrides: Map<String, Value> = o;
    Ok(CtSpec {
        id,
        ct,
        mask,
        overrides,
    })
}

/// A folder as a manifest: each `*.nii`/`*.nii.gz` file and each sub-folder holding DICOM files
/// is a CT, its id the name without extension. A NIfTI file named `ID_mask`, `ID.mask` or
/// `ID-mask` is the mask of CT `ID`; a lone `mask.nii.gz` belongs to the folder's only CT.
fn from_folder(dir: &Path) -> Result<Vec<CtSpec>> {
    let mut names: Vec<(String, bool)> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.path().is_dir(),
            )
        })
        .collect();
    names.sort();
    let stem = |n: &str| {
        n.strip_suffix(".nii.gz")
            .or_else(|| n.strip_suffix(".nii"))
            .map(str::to_owned)
    };
    let mask_of = |s: &str| -> Option<String> {
        if s == "mask" {
            return Some(String::new());
        }
        ["_mask", ".mask", "-mask"]
            .iter()
            .find_map(|suf| s.strip_suffix(suf).map(str::to_owned))
    };
    let mut cts = Vec::new();
    let mut masks: Vec<(String, String)> = Vec::new();
    for (name, is_dir) in &names {
        if *is_dir {
            let has_dicom = std::fs::read_dir(dir.join(name))
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .any(|e| crate::io::dicom::file_looks_like_dicom(&e.path()))
                })
                .unwrap_or(false);
            if has_dicom {
                cts.push(CtSpec {
                    id: name.clone(),
                    ct: name.clone(),
                    mask: None,
                    overrides: Map::new(),
                });
            }
        } else if let Some(s) = stem(name) {
            match mask_of(&s) {
                Some(owner) => masks.push((owner, name.clone())),
                None => cts.push(CtSpec {
                    id: s,
                    ct: name.clone(),
                    mask: None,
                    overrides: Map::new(),
                }),
            }
        }
    }
    let only = (cts.len() == 1).then(|| cts[0].id.clone());
    for (owner, file) in masks {
        let owner = if owner.is_empty() {
            only.clone().unwrap_or_default()
        } else {
            owner
        };
        if let Some(ct) = cts.iter_mut().find(|c| c.id == owner) {
            ct.mask = Some(file);
        }
    }
    Ok(cts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drr::Volume;

    fn phantom(dims: [usize; 3], spacing: f64) -> Vec<u8> {
        let mut affine = [[0.0; 4]; 4];
        for (c, row) in affine.iter_mut().enumerate().take(3) {
            row[c] = spacing;
        }
        affine[3][3] = 1.0;
        let n = dims.iter().product();
        nifti::nifti_bytes(&Volume::new(dims, vec![-1000.0; n], affine).unwrap())
    }

    #[test]
    fn bad_entries_are_named_by_line_and_good_ones_kept() {
        let dir = std::env::temp_dir().join(format!("dxr-manifest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.nii"), phantom([8, 8, 6], 2.0)).unwrap();
        std::fs::write(dir.join("b.nii"), phantom([8, 8, 6], 2.0)).unwrap();
        std::fs::write(dir.join("small.nii"), phantom([8, 8, 5], 2.0)).unwrap();
        std::fs::write(dir.join("shifted.nii"), phantom([8, 8, 6], 2.5)).unwrap();
        let lines = [
            r#"{"id": "a", "ct": "a.nii"}"#,
            r#"{"id": "b", "ct": "b.nii", "views": 3}"#,
            r#"{"id": "a", "ct": "b.nii"}"#,
            r#"{"id": "c", "ct": "missing.nii"}"#,
            r#"{"id": "d", "ct": "a.nii", "mask": "small.nii"}"#,
            r#"{"id": "e", "ct": "a.nii", "mask": "shifted.nii"}"#,
            r#"{"id": "f/g", "ct": "a.nii"}"#,
            r#"{"id": "h", "ct": "a.nii", "nodels": 2}"#,
            r#"["a"]"#,
            "",
            r#"{"id": "i", "ct": "a.nii", "mask": "a.nii"}"#,
        ];
        std::fs::write(dir.join("m.jsonl"), lines.join("\n")).unwrap();
        let m = Manifest::read(&dir.join("m.jsonl"), &RenderSettings::default()).unwrap();
        let ids: Vec<_> = m.entries.iter().map(|e| e.spec.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "i"]);
        assert_eq!(m.entries[1].render.views, 3);
        let want = [
            (3, "also given at"),
            (4, "no such file"),
            (5, "[8, 8, 5] voxels"),
            (6, "another grid"),
            (7, "id \"f/g\""),
            (8, "\"nodels\""),
            (9, "not a JSON object"),
        ];
        assert_eq!(m.bad.len(), want.len(), "{:?}", m.bad);
        for (b, (line, says)) in m.bad.iter().zip(want) {
            assert!(
                b.origin.ends_with(&format!("m.jsonl:{line}")) && b.problem.contains(says),
                "{b:?} should be line {line}: {says}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_folder_is_a_manifest_with_masks_beside_their_cts() {
        let dir = std::env::temp_dir().join(format!("dxr-manifest-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["x.nii", "x_mask.nii", "y.nii.gz"] {
            std::fs::write(dir.join(f), phantom([8, 8, 6], 2.0)).unwrap();
        }
        std::fs::write(dir.join("notes.txt"), "not a CT").unwrap();
        let specs = from_folder(&dir).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(
            (specs[0].id.as_str(), specs[0].mask.as_deref()),
            ("x", Some("x_mask.nii"))
        );
        assert_eq!(
            (specs[1].id.as_str(), specs[1].mask.as_deref()),
            ("y", None)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
