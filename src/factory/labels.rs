//! A dataset's labels in the formats detectors are trained from, all made from the items'
//! own labels in manifest order (so a merged sharded run writes the same bytes as one run):
//! COCO (`coco.json`, boxes `[x, y, w, h]`), a MONAI detection datalist (`monai.json`, boxes
//! `[x0, y0, x1, y1]`), YOLO (`labels/CT/ITEM.txt` + `yolo.yaml` and its two lists), the split
//! (`split.json`) and the dataset card (`README.md`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::settings::{GenerateSettings, split_key};
use crate::Result;
use crate::drr::coco::{coco_annotation, coco_file};
use crate::drr::nodule::NoduleLabel;
use crate::drr::{Geometry, Pose};
use crate::io::write_atomic;

/// The label of one item (`items/CT/ITEM.json`); paths relative to the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemLabel {
    pub item: String,
    pub ct: String,
    pub view: usize,
    /// The item's seed (its pose, nodules and restoration noise).
    pub seed: u64,
    /// The image a detector trains on: the restoration when the dataset is restored, else the DRR.
    pub image: String,
    /// The DRR before restoration (restored datasets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drr: Option<String>,
    /// The same view without nodules.
    pub clean: String,
    /// The lung fields (8-bit mask).
    pub lungs: String,
    /// The YOLO label file.
    pub yolo: String,
    pub width: usize,
    pub height: usize,
    pub pixel_mm: f64,
    pub geometry: Geometry,
    pub pose: Pose,
    /// Line integrals shown as black and white.
    pub window: [f64; 2],
    /// How the restoration was planned (scale, tiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restoration: Option<String>,
    pub nodules: Vec<NoduleLabel>,
}

impl ItemLabel {
    /// The nodules' boxes `[x0, y0, x1, y1]` clipped to the image; a nodule wholly outside it
    /// has none. Every format is made from these.
    pub fn boxes(&self) -> Vec<[f64; 4]> {
        let (w, h) = (self.width as f64, self.height as f64);
        self.nodules
            .iter()
            .map(|n| {
                let [x0, y0, x1, y1] = n.bbox_px;
                [
                    x0.clamp(0.0, w),
                    y0.clamp(0.0, h),
                    x1.clamp(0.0, w),
                    y1.clamp(0.0, h),
                ]
            })
            .filter(|[x0, y0, x1, y1]| x1 > x0 && y1 > y0)
            .collect()
    }

    /// The YOLO label file: `0 cx cy w h` per box, normalised to the image.
    pub fn yolo_text(&self) -> String {
        let (w, h) = (self.width as f64, self.height as f64);
        self.boxes()
            .iter()
            .map(|[x0, y0, x1, y1]| {
                format!(
                    "0 {:.6} {:.6} {:.6} {:.6}\n",
                    (x0 + x1) / 2.0 / w,
                    (y0 + y1) / 2.0 / h,
                    (x1 - x0) / w,
                    (y1 - y0) / h
                )
            })
            .collect()
    }
}

/// The validation CTs: the `round(fraction × n)` CTs with the smallest split keys, at least
/// one when the fraction is above 0 and there are two CTs or more, never all of them.
pub fn validation_cts(settings: &GenerateSettings) -> BTreeSet<String> {
    let n = settings.cts.len();
    let f = settings.split.validation;
    let mut k = (f * n as f64).round() as usize;
    if f > 0.0 && n >= 2 {
        k = k.max(1);
    }
    k = k.min(n.saturating_sub(1));
    let mut keyed: Vec<(u64, &str)> = settings
        .cts
        .iter()
        .map(|c| (split_key(settings.split.seed, &c.id), c.id.as_str()))
        .collect();
    keyed.sort();
    keyed
        .into_iter()
        .take(k)
        .map(|(_, id)| id.to_string())
        .collect()
}

/// What the set files are made from besides the items.
pub struct SetInfo<'a> {
    pub settings: &'a GenerateSettings,
    /// CTs left out while generating (id, why).
    pub skipped: Vec<(String, String)>,
    /// Manifest entries refused before generating (`--skip-bad`).
    pub refused: &'a [String],
}

/// Writes every set file for `items` (in manifest order) into `dir`.
pub fn write_set_files(dir: &Path, items: &[ItemLabel], info: &SetInfo) -> Result<()> {
    let validation = validation_cts(info.settings);
    let split_of = |ct: &str| {
        if validation.contains(ct) {
            "validation"
        } else {
            "training"
        }
    };
    let pretty = |v: &serde_json::Value| {
        let mut b = serde_json::to_vec_pretty(v).expect("serialisable");
        b.push(b'\n');
        b
    };
    // COCO: one file, each image with its split and CT
    let mut annotations = Vec::new();
    let mut images = Vec::new();
    for (k, it) in items.iter().enumerate() {
        for (b, n) in it.boxes().iter().zip(&it.nodules) {
            annotations.push(coco_annotation(
                annotations.len() + 1,
                k + 1,
                *b,
                json!({"radius_mm": n.radius_mm, "hu": n.hu}),
            ));
        }
        images.push(json!({
            "id": k + 1, "file_name": it.image, "width": it.width, "height": it.height,
            "ct": it.ct, "split": split_of(&it.ct),
        }));
    }
    let coco = coco_file(
        "DiffusionXRay synthetic chest radiographs with inserted lung nodules (dxr generate)",
        images,
        annotations,
    );
    write_atomic(&dir.join("coco.json"), &pretty(&coco))?;
    // MONAI detection datalist (load_decathlon_datalist): paths relative to this file's folder
    let entry = |it: &ItemLabel| {
        let boxes = it.boxes();
        json!({"image": it.image, "box": boxes, "label": vec![0; boxes.len()]})
    };
    let part = |s: &str| -> Vec<serde_json::Value> {
        items
            .iter()
            .filter(|i| split_of(&i.ct) == s)
            .map(entry)
            .collect()
    };
    let monai = json!({
        "description": "dxr generate: boxes in pixels as [x0, y0, x1, y1] (MONAI box mode xyxy), label 0 = nodule",
        "box_mode": "xyxy",
        "training": part("training"),
        "validation": part("validation"),
    });
    write_atomic(&dir.join("monai.json"), &pretty(&monai))?;
    // YOLO: lists of images (their labels are found by the images/ → labels/ rule)
    for s in ["training", "validation"] {
        let list: String = items
            .iter()
            .filter(|i| split_of(&i.ct) == s)
            .map(|i| format!("./{}\n", i.image))
            .collect();
        write_atomic(&dir.join(format!("yolo-{s}.txt")), list.as_bytes())?;
    }
    write_atomic(
        &dir.join("yolo.yaml"),
        b"# YOLO detection dataset (dxr generate); paths relative to this file\ntrain: yolo-training.txt\nval: yolo-validation.txt\nnames:\n  0: nodule\n",
    )?;
    let split = json!({
        "training": info.settings.cts.iter().map(|c| &c.id).filter(|id| !validation.contains(*id)).collect::<Vec<_>>(),
        "validation": info.settings.cts.iter().map(|c| &c.id).filter(|id| validation.contains(*id)).collect::<Vec<_>>(),
    });
    write_atomic(&dir.join("split.json"), &pretty(&split))?;
    write_atomic(
        &dir.join("README.md"),
        card(items, info, &validation).as_bytes(),
    )
}

/// The dataset card: how it was made, what it holds, where each thing is.
fn card(items: &[ItemLabel], info: &SetInfo, validation: &BTreeSet<String>) -> String {
    let s = info.settings;
    let r = &s.render;
    let mut c = String::new();
    let _ = writeln!(c, "# Synthetic chest radiographs with lung nodules\n");
    let _ = writeln!(
        c,
        "Made by `dxr generate` (DiffusionXRay {}) from {} CT(s): frontal DRRs with inserted \
         nodules{}. Synthetic images for training detectors; not for clinical use.\n",
        env!("CARGO_PKG_VERSION"),
        s.cts.len(),
        if s.restore.is_some() {
            ", restored toward a radiograph's look by a diffusion model"
        } else {
            ""
        }
    );
    let _ = writeln!(c, "## Command\n\n```");
    let mut cmd = format!(
        "dxr generate --cts MANIFEST --out DATASET --seed {} --views {} --size {} --nodules {} --validation {} --split-seed {} --device {}",
        s.seed,
        r.views,
        r.view.geometry.pixels[0],
        r.view.nodules,
        s.split.validation,
        s.split.seed,
        s.renderer
    );
    if let Some(x) = &s.restore {
        let _ = write!(
            cmd,
            " --restore --weights {} --sampler {} --steps {} --restore-device {} --memory-mib {} --tone {}",
            x.model, x.sampler, x.steps, x.device, x.memory_mib, x.tone
        );
    }
    let _ = writeln!(
        c,
        "{cmd}\n```\n\nThe other settings are in `generate.json` and below.\n"
    );
    // counts
    let count = |split: &str| {
        let its: Vec<&ItemLabel> = items
            .iter()
            .filter(|i| validation.contains(&i.ct) == (split == "validation"))
            .collect();
        let cts: BTreeSet<&str> = its.iter().map(|i| i.ct.as_str()).collect();
        let boxes: usize = its.iter().map(|i| i.boxes().len()).sum();
        (cts.len(), its.len(), boxes)
    };
    let _ = writeln!(
        c,
        "## Counts\n\n| split | CTs | images | nodule boxes |\n|---|---|---|---|"
    );
    for split in ["training", "validation"] {
        let (a, b, d) = count(split);
        let _ = writeln!(c, "| {split} | {a} | {b} | {d} |");
    }
    let _ = writeln!(
        c,
        "\nThe split is by CT (no CT in both): the validation CTs are the {:.0} % with the \
         smallest SHA-256(`dxr-split/1` NUL split seed NUL id).\n",
        100.0 * s.split.validation
    );
    if let Some(x) = &s.restore {
        let _ = writeln!(
            c,
            "## Model\n\n`{}`, SHA-256 `{}`; {} with {} steps on {}; tone {}.\n",
            x.model, x.model_sha256, x.sampler, x.steps, x.device, x.tone
        );
    }
    let _ = writeln!(
        c,
        "## Files\n\n\
         - `images/CT/ITEM.png`: the image to train on ({}), 16-bit grey.\n{}\
         - `clean/CT/ITEM.png`: the same view without nodules; `lungs/CT/ITEM.png`: its lung fields.\n\
         - `items/CT/ITEM.json`: the item's full label (seed, pose, geometry, nodules in mm and pixels).\n\
         - `coco.json` (boxes `[x, y, w, h]`), `monai.json` (MONAI detection datalist, boxes \
         `[x0, y0, x1, y1]`, box mode xyxy, label 0), `labels/CT/ITEM.txt` with `yolo.yaml` \
         (YOLO, normalised centre and size); pixel `i` spans `[i, i+1)`; boxes clipped to the image.\n\
         - `split.json`, `generate.json` (every setting), `journal.jsonl` (each item's files and \
         their SHA-256; `dxr generate --verify DATASET` checks them).\n",
        if s.restore.is_some() {
            "the restoration"
        } else {
            "the DRR"
        },
        if s.restore.is_some() {
            "- `drr/CT/ITEM.png`: the DRR before restoration.\n"
        } else {
            ""
        }
    );
    let _ = writeln!(
        c,
        "## CTs\n\n| id | CT | mask | views | split |\n|---|---|---|---|---|"
    );
    for ct in &s.cts {
        let views = s
            .render
            .with_overrides(&ct.overrides)
            .map(|r| r.views)
            .unwrap_or(0);
        let _ = writeln!(
            c,
            "| {} | {} | {} | {views} | {} |",
            ct.id,
            ct.ct,
            ct.mask.as_deref().unwrap_or("–"),
            if validation.contains(&ct.id) {
                "validation"
            } else {
                "training"
            }
        );
    }
    if !info.skipped.is_empty() || !info.refused.is_empty() {
        let _ = writeln!(c, "\n## Left out\n");
        for r in info.refused {
            let _ = writeln!(c, "- {r}");
        }
        for (id, why) in &info.skipped {
            let _ = writeln!(c, "- CT {id}: {why}");
        }
    }
    c
}
