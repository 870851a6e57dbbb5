//! Checking a dataset against its journal (`dxr generate --verify`) and joining the shards of
//! one dataset into the dataset one run would have made (`dxr merge`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::dataset::{DatasetFile, claim, write_sets};
use super::journal::{Journal, Line, check_files};
use super::settings::{Shard, item_name};
use crate::io::write_atomic;
use crate::{Error, Result};

/// What [`verify`] found.
#[derive(Debug, Clone, Default)]
pub struct Verified {
    /// Items of the dataset's shard, and how many the journal holds.
    pub expected: usize,
    pub finished: usize,
    /// Files missing or changed since the journal recorded them.
    pub problems: Vec<String>,
}

/// Checks every file of every finished item against the journal.
pub fn verify(dir: &Path) -> Result<Verified> {
    let file = DatasetFile::read(dir)?;
    let journal = Journal::open(dir)?;
    let done = journal.items();
    let skipped = journal.skipped();
    let mut out = Verified::default();
    for (c, v) in file.shard_items()? {
        let ct = &file.settings.cts[c].id;
        if skipped.contains_key(ct.as_str()) {
            continue;
        }
        out.expected += 1;
        if let Some(files) = done.get(item_name(ct, v).as_str()) {
            out.finished += 1;
            out.problems.extend(check_files(dir, files));
        }
    }
    Ok(out)
}

/// Joins finished shards of one dataset into `out` (new or empty): the items, a journal in
/// manifest order and the set files, byte-identical to what one unsharded run writes.
pub fn merge(shards: &[PathBuf], out: &Path) -> Result<usize> {
    let files: Vec<DatasetFile> = shards
        .iter()
        .map(|d| DatasetFile::read(d))
        .collect::<Result<_>>()?;
    let first = files
        .first()
        .ok_or_else(|| Error::Drr("merge needs at least one shard folder".into()))?;
    let n = first.shard.count;
    let mut seen = vec![None; n];
    for (f, dir) in files.iter().zip(shards) {
        let diffs = first.settings.differences(&f.settings);
        if !diffs.is_empty() {
            return Err(Error::Drr(format!(
                "{} was made with other settings than {}:\n  {}",
                dir.display(),
                shards[0].display(),
                diffs.join("\n  ")
            )));
        }
        if f.shard.count != n {
            return Err(Error::Drr(format!(
                "{} is shard {} but {} is one of {n}",
                dir.display(),
                f.shard,
                shards[0].display()
            )));
        }
        if let Some(other) = seen[f.shard.index].replace(dir) {
            return Err(Error::Drr(format!(
                "{} and {} are both shard {}",
                other.display(),
                dir.display(),
                f.shard
            )));
        }
    }
    if let Some(missing) = seen.iter().position(Option::is_none) {
        return Err(Error::Drr(format!(
            "shard {missing}/{n} is missing: give every shard's folder"
        )));
    }
    if out.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::Drr(format!(
            "{} is not empty: merge into a new folder",
            out.display()
        )));
    }
    // every shard finished and intact
    for (f, dir) in files.iter().zip(shards) {
        let v = verify(dir)?;
        if v.finished < v.expected || !v.problems.is_empty() {
            return Err(Error::Drr(format!(
                "shard {} ({}) is not finished or not intact: {} of {} items done{}; run it again (or `dxr generate --verify`)",
                f.shard,
                dir.display(),
                v.finished,
                v.expected,
                v.problems
                    .first()
                    .map(|p| format!(", {p}"))
                    .unwrap_or_default()
            )));
        }
    }
    let journals: Vec<Journal> = shards
        .iter()
        .map(|d| Journal::open(d))
        .collect::<Result<_>>()?;
    let whole = DatasetFile {
        shard: Shard::WHOLE,
        ..first.clone()
    };
    claim(out, &whole)?;
    let mut journal = Journal::open(out)?;
    // the lines in the order one run writes them: manifest order, a skipped CT where its first
    // item would be
    let mut lines: BTreeMap<usize, Line> = BTreeMap::new();
    let all = whole.all_items()?;
    let position: BTreeMap<String, usize> = all
        .iter()
        .enumerate()
        .map(|(k, &(c, v))| (item_name(&whole.settings.cts[c].id, v), k))
        .collect();
    let first_of_ct = |id: &str| {
        all.iter()
            .position(|&(c, _)| whole.settings.cts[c].id == id)
            .unwrap_or(usize::MAX)
    };
    let mut skipped_seen = std::collections::BTreeSet::new();
    for (j, dir) in journals.iter().zip(shards) {
        for line in &j.lines {
            match line {
                Line::Item { item, files } => {
                    for rel in files.keys() {
                        let bytes = std::fs::read(dir.join(rel))
                            .map_err(|e| Error::io(dir.join(rel), e))?;
                        let path = out.join(rel);
                        if let Some(p) = path.parent() {
                            std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
                        }
                        write_atomic(&path, &bytes)?;
                    }
                    let at = position.get(item).copied().unwrap_or(usize::MAX);
                    lines.insert(at, line.clone());
                }
                Line::Skipped { skipped, .. } => {
                    // a CT split over two shards is skipped by both: keep one line
                    if skipped_seen.insert(skipped.clone()) {
                        lines.insert(first_of_ct(skipped), line.clone());
                    }
                }
            }
        }
    }
    let count = lines.len();
    for (_, l) in lines {
        journal.append(l)?;
    }
    write_sets(out, &whole, &journal)?;
    Ok(count)
}
