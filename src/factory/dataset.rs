//! A dataset folder as a whole: its settings file (`generate.json`), which a run claims or
//! resumes, and its set files (labels, split, card), written from the journal's items.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::journal::Journal;
use super::labels::{ItemLabel, SetInfo, write_set_files};
use super::settings::{GenerateSettings, Shard, item_name};
use crate::io::write_atomic;
use crate::{Error, Result};

/// What `DATASET/generate.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetFile {
    pub format: String,
    pub shard: Shard,
    pub settings: GenerateSettings,
    /// Manifest entries refused before generating (`--skip-bad`), as `origin: problem`.
    #[serde(default)]
    pub refused: Vec<String>,
}

pub(super) const FORMAT: &str = "dxr-generate/1";
const SETTINGS_FILE: &str = "generate.json";

impl DatasetFile {
    /// Reads `dir/generate.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(SETTINGS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let f: Self = serde_json::from_str(&text)
            .map_err(|e| Error::Drr(format!("{}: not a dxr dataset ({e})", path.display())))?;
        if f.format != FORMAT {
            return Err(Error::Drr(format!(
                "{}: format {:?}, this dxr reads {FORMAT:?}",
                path.display(),
                f.format
            )));
        }
        Ok(f)
    }

    /// Every item of the dataset in manifest order: (CT index, view).
    pub fn all_items(&self) -> Result<Vec<(usize, usize)>> {
        let mut out = Vec::new();
        for (c, ct) in self.settings.cts.iter().enumerate() {
            let views = self.settings.render.with_overrides(&ct.overrides)?.views;
            out.extend((0..views).map(|v| (c, v)));
        }
        Ok(out)
    }

    /// The names of this file's shard's items, in order.
    pub fn shard_items(&self) -> Result<Vec<(usize, usize)>> {
        let all = self.all_items()?;
        Ok(all[self.shard.range(all.len())].to_vec())
    }
}

/// Checks `dir/generate.json` against the job's (writing it for a new dataset).
pub(super) fn claim(dir: &Path, file: &DatasetFile) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    match DatasetFile::read(dir) {
        Ok(old) => {
            let diffs = old.settings.differences(&file.settings);
            if !diffs.is_empty() {
                return Err(Error::Drr(format!(
                    "{} was made with other settings; use another --out, or the same settings to resume. Differences (was → now):\n  {}",
                    dir.display(),
                    diffs.join("\n  ")
                )));
            }
            if old.shard != file.shard {
                return Err(Error::Drr(format!(
                    "{} holds shard {}, not {}",
                    dir.display(),
                    old.shard,
                    file.shard
                )));
            }
            Ok(())
        }
        Err(_) if !dir.join(SETTINGS_FILE).exists() => {
            let busy = std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, e))?
                .next()
                .is_some();
            if busy {
                return Err(Error::Drr(format!(
                    "{} holds files but is not a dxr dataset: give a new or empty folder",
                    dir.display()
                )));
            }
            let mut b = serde_json::to_vec_pretty(file).expect("serialisable");
            b.push(b'\n');
            write_atomic(&dir.join(SETTINGS_FILE), &b)
        }
        Err(e) => Err(e),
    }
}

/// Writes the set files of `file`'s shard from the journal's items, in manifest order.
pub(super) fn write_sets(dir: &Path, file: &DatasetFile, journal: &Journal) -> Result<()> {
    let done = journal.items();
    let skipped = journal.skipped();
    let mut items = Vec::new();
    for (c, v) in file.shard_items()? {
        let ct = &file.settings.cts[c].id;
        if skipped.contains_key(ct.as_str()) {
            continue;
        }
        let name = item_name(ct, v);
        if !done.contains_key(name.as_str()) {
            return Err(Error::Drr(format!(
                "item {name} is not finished: run dxr generate again to complete the dataset"
            )));
        }
        let path = dir.join(format!("items/{ct}/{name}.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        items
            .push(serde_json::from_str::<ItemLabel>(&text).map_err(|e| {
                Error::Drr(format!("{}: damaged item label ({e})", path.display()))
            })?);
    }
    let info = SetInfo {
        settings: &file.settings,
        skipped: skipped
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        refused: &file.refused,
    };
    write_set_files(dir, &items, &info)
}
