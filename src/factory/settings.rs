//! What a dataset is made from, recorded in `DATASET/generate.json` and compared on resume: the
//! render settings (the dataset's, and each CT's after its manifest overrides), the restoration's
//! and the split's; and the seeds of items and splits, derived by a documented hash.

use crate::limits::Limits;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::drr::Prep;
use crate::drr::dataset::{SetSettings, ViewSettings, Window};
use crate::{Error, Result};

/// Most views of one CT (a typo guard: 1,000 CTs × this is already 100 M images).
pub const MAX_VIEWS_PER_CT: usize = Limits::VIEWS_PER_CT.value as usize;

/// How the views of one CT are drawn and rendered. The manifest may override any of it per CT
/// with the same keys (`{"views": 8, "geometry": {"sdd": 2000}}`); a key that names no setting
/// is refused by [`RenderSettings::with_overrides`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderSettings {
    /// Views of this CT (items `0..views`).
    pub views: usize,
    /// The pose every view starts from and its jitter, the detector, nodules and window.
    #[serde(flatten)]
    pub view: ViewSettings,
    pub prep: Prep,
}

impl Default for RenderSettings {
    fn default() -> Self {
        Self {
            views: 1,
            view: ViewSettings::default(),
            prep: Prep::default(),
        }
    }
}

impl RenderSettings {
    /// Refuses settings no view can be drawn with, naming the setting.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_VIEWS_PER_CT).contains(&self.views) {
            return Err(Error::Drr(format!(
                "views {} is outside 1..={MAX_VIEWS_PER_CT}",
                self.views
            )));
        }
        self.view.geometry.validate()?;
        self.view.nodule.validate()?;
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        if !finite(&self.view.rotation_jitter_deg)
            || !finite(&self.view.translation_jitter_mm)
            || !finite(&self.view.pose.rotation_deg)
            || !finite(&self.view.pose.translation_mm)
            || self
                .view
                .rotation_jitter_deg
                .iter()
                .chain(&self.view.translation_jitter_mm)
                .any(|x| *x < 0.0)
        {
            return Err(Error::Drr(
                "pose and jitter must be finite, jitter not negative".into(),
            ));
        }
        if let Window::Fixed { low, high } = self.view.window
            && !(low.is_finite() && high.is_finite() && high > low)
        {
            return Err(Error::Drr(format!(
                "window {low}:{high}: HIGH must exceed LOW"
            )));
        }
        let p = &self.prep;
        // written so that NaN fails too
        let mu_ok = p.mu_water.is_finite() && p.mu_water > 0.0 && p.mu_water < 1.0;
        if !mu_ok || !p.contrast_hu.is_finite() {
            return Err(Error::Drr(format!(
                "prep: μ_water {} must be in (0, 1) and contrast_hu finite",
                p.mu_water
            )));
        }
        Ok(())
    }

    /// The `dxr drr` set of `count` views from `first_index` drawn with `seed`.
    pub fn set_settings(&self, count: usize, seed: u64, first_index: usize) -> SetSettings {
        SetSettings {
            count,
            seed,
            first_index,
            view: self.view,
            raw: false,
            contact_sheet: 0,
        }
    }

    /// These settings with a manifest entry's overrides merged in. Every key must name a
    /// setting (a typo is refused, never ignored); `window` is replaced whole.
    pub fn with_overrides(&self, overrides: &Map<String, Value>) -> Result<Self> {
        let mut v = serde_json::to_value(self).expect("serialisable");
        merge(&mut v, overrides, "")?;
        let s: Self =
            serde_json::from_value(v).map_err(|e| Error::Drr(format!("render settings: {e}")))?;
        s.validate()?;
        Ok(s)
    }
}

fn merge(base: &mut Value, over: &Map<String, Value>, path: &str) -> Result<()> {
    for (k, v) in over {
        let here = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        let known = base
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        let Some(slot) = base.as_object_mut().and_then(|m| m.get_mut(k)) else {
            return Err(Error::Drr(format!(
                "unknown render setting {here:?} (known here: {known})"
            )));
        };
        match (slot.is_object() && here != "window", v.as_object()) {
            (true, Some(o)) => merge(slot, o, &here)?,
            _ => *slot = v.clone(),
        }
    }
    Ok(())
}

/// One CT of a dataset as the manifest gives it (paths as written there, relative to the
/// manifest's folder unless absolute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CtSpec {
    pub id: String,
    pub ct: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub overrides: Map<String, Value>,
}

/// How items are restored (absent: render only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreSettings {
    /// The model file's name and content hash (the hash decides; the name is for people).
    pub model: String,
    pub model_sha256: String,
    pub sampler: String,
    pub steps: usize,
    pub eta: f64,
    /// The backend (`flex`, `ndarray`, `gpu`): results are byte-identical for one backend.
    pub device: String,
    /// Memory one network call may use (MiB): it decides the tiles, hence the bytes.
    pub memory_mib: u64,
    /// Strength of the model's tone curve, 0–1.
    pub tone: f32,
}

/// Which CTs are held out for validation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitSettings {
    /// Fraction of the CTs in the validation set.
    pub validation: f64,
    pub seed: u64,
}

/// Everything a dataset is made from. Two runs with equal settings make equal items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateSettings {
    pub seed: u64,
    /// The dataset's render settings, before each CT's overrides.
    pub render: RenderSettings,
    /// `cpu` or `gpu`: the projector (its floats may differ in the last bits).
    pub renderer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreSettings>,
    pub split: SplitSettings,
    pub cts: Vec<CtSpec>,
}

impl GenerateSettings {
    /// The keys whose values differ from `other`'s, as `path: a → b` (empty when equal).
    pub fn differences(&self, other: &Self) -> Vec<String> {
        let a = serde_json::to_value(self).expect("serialisable");
        let b = serde_json::to_value(other).expect("serialisable");
        let mut out = Vec::new();
        diff(&a, &b, "", &mut out);
        out
    }
}

fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &here,
                    out,
                );
            }
        }
        _ if a != b => {
            let short = |v: &Value| {
                let s = v.to_string();
                if s.chars().count() > 60 {
                    format!("{}…", s.chars().take(60).collect::<String>())
                } else {
                    s
                }
            };
            out.push(format!("{path}: {} → {}", short(a), short(b)));
        }
        _ => {}
    }
}

/// The first 8 bytes, little-endian, of SHA-256 of `parts` joined by NUL bytes.
fn hash64(parts: &[&str]) -> u64 {
    let digest = Sha256::digest(parts.join("\0").as_bytes());
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The seed of view `view` of CT `ct` in a dataset made with `seed`: the first 8 bytes
/// (little-endian) of SHA-256(`"dxr-item/1" NUL seed NUL ct NUL view`), numbers in decimal.
/// A hash, not a sum: two CTs (or two datasets whose seeds differ by one) share no stream.
/// In Python: `int.from_bytes(hashlib.sha256(f"dxr-item/1\0{seed}\0{ct}\0{view}".encode()).digest()[:8], "little")`.
pub fn item_seed(seed: u64, ct: &str, view: usize) -> u64 {
    hash64(&["dxr-item/1", &seed.to_string(), ct, &view.to_string()])
}

/// Where CT `ct` falls in the split order (SHA-256 of `"dxr-split/1" NUL seed NUL ct`, as
/// [`item_seed`]): the CTs with the smallest keys are the validation set.
pub fn split_key(seed: u64, ct: &str) -> u64 {
    hash64(&["dxr-split/1", &seed.to_string(), ct])
}

/// The file-name stem of an item.
pub fn item_name(ct: &str, view: usize) -> String {
    format!("{ct}_{view:05}")
}

/// A CT id must be a plain file name: letters, digits, `.`, `_`, `-`, at most 128, not
/// starting with `.` or `-`.
pub fn check_id(id: &str) -> std::result::Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if id.is_empty() || id.len() > 128 || !id.chars().all(ok_char) || id.starts_with(['.', '-']) {
        return Err(format!(
            "id {id:?} must be 1–128 letters, digits, '.', '_' or '-' (not starting with '.' or '-')"
        ));
    }
    Ok(())
}

/// Part `index` of `count` of a run: a contiguous block of the items in manifest order, so a
/// shard holds few CTs and every shard about as many items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// The items `start..end` of `total` that this shard makes.
    pub fn range(&self, total: usize) -> std::ops::Range<usize> {
        let cut = |i: usize| (i as u128 * total as u128 / self.count as u128) as usize;
        cut(self.index)..cut(self.index + 1)
    }
}

impl std::str::FromStr for Shard {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Usage(format!("--shard {s:?}: expected I/N with 0 ≤ I < N"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_seeds_are_hashes_not_sums() {
        // the documented formula, computed here by hand
        let d = Sha256::digest(b"dxr-item/1\x007\x00ct-a\x003");
        let want = u64::from_le_bytes(d[..8].try_into().unwrap());
        assert_eq!(item_seed(7, "ct-a", 3), want);
        // neighbours share nothing: not seed + index, not equal across CTs
        assert_ne!(item_seed(7, "ct-a", 4), item_seed(8, "ct-a", 3));
        assert_ne!(item_seed(7, "ct-a", 3), item_seed(7, "ct-b", 3));
    }

    #[test]
    fn shards_cover_every_item_once() {
        for total in [0, 1, 5, 17, 100] {
            for count in 1..7 {
                let mut seen = Vec::new();
                for index in 0..count {
                    seen.extend(Shard { index, count }.range(total));
                }
                assert_eq!(seen, (0..total).collect::<Vec<_>>(), "{total} in {count}");
            }
        }
        assert!("2/2".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
        assert_eq!(
            "1/3".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 3 }
        );
    }

    #[test]
    fn overrides_merge_and_typos_are_named() {
        let base = RenderSettings::default();
        let o: Map<String, Value> =
            serde_json::from_str(r#"{"views": 4, "geometry": {"sdd": 2000}}"#).unwrap();
        let s = base.with_overrides(&o).unwrap();
        assert_eq!((s.views, s.view.geometry.sdd), (4, 2000.0));
        assert_eq!(s.view.geometry.sid, base.view.geometry.sid);
        for (bad, names) in [
            (r#"{"nodels": 2}"#, "\"nodels\""),
            (r#"{"geometry": {"sdx": 2}}"#, "\"geometry.sdx\""),
            (r#"{"views": 0}"#, "views 0"),
            (r#"{"nodules": "two"}"#, "render settings"),
        ] {
            let o: Map<String, Value> = serde_json::from_str(bad).unwrap();
            let e = base.with_overrides(&o).unwrap_err().to_string();
            assert!(e.contains(names), "{bad}: {e}");
        }
    }

    #[test]
    fn ids_are_plain_file_names() {
        for ok in ["LIDC-IDRI-0001", "a.b_c", "7"] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "-x", "a b", "é"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}
