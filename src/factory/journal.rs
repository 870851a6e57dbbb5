//! The dataset's journal (`journal.jsonl`): one line per finished item with the SHA-256 of each
//! of its files, appended only after all of them are written (each atomically). An item is done
//! when its line is there, so a kill at any moment loses at most the items in flight, and a
//! half-written last line (a kill during the append) is dropped on the next open.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Line {
    /// A finished item: its files (relative to the dataset) and their SHA-256.
    Item {
        item: String,
        files: BTreeMap<String, String>,
    },
    /// A CT that could not be read (`--skip-bad`): its items are left out, by name.
    Skipped { skipped: String, error: String },
}

/// The journal of a dataset folder, open for appending.
pub struct Journal {
    path: PathBuf,
    file: std::fs::File,
    /// The lines read and appended, in order.
    pub lines: Vec<Line>,
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Journal {
    /// The file name inside a dataset.
    pub const FILE: &'static str = "journal.jsonl";

    /// Reads `dir/journal.jsonl` (created when missing). A last line that was cut short is
    /// dropped (and cut from the file); a damaged line before it is refused by its number.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(Self::FILE);
        let text = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let (lines, good_len) = parse(&text, &path)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        if good_len < text.len() {
            file.set_len(good_len as u64)
                .map_err(|e| Error::io(&path, e))?;
        }
        Ok(Self { path, file, lines })
    }

    /// Appends one line and waits until it is on disk.
    pub fn append(&mut self, line: Line) -> Result<()> {
        let mut text = serde_json::to_string(&line).expect("serialisable");
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, e))?;
        self.lines.push(line);
        Ok(())
    }

    /// The finished items: name → files.
    pub fn items(&self) -> BTreeMap<&str, &BTreeMap<String, String>> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Item { item, files } => Some((item.as_str(), files)),
                Line::Skipped { .. } => None,
            })
            .collect()
    }

    /// The CTs left out, id → why.
    pub fn skipped(&self) -> BTreeMap<&str, &str> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Skipped { skipped, error } => Some((skipped.as_str(), error.as_str())),
                Line::Item { .. } => None,
            })
            .collect()
    }
}

/// The complete lines of a journal's bytes, and how many bytes they span.
fn parse(text: &[u8], path: &Path) -> Result<(Vec<Line>, usize)> {
    let mut lines = Vec::new();
    let mut at = 0;
    let mut number = 0;
    while at < text.len() {
        number += 1;
        let Some(end) = text[at..].iter().position(|&b| b == b'\n') else {
            break; // cut short by a kill during the append: not done
        };
        let raw = &text[at..at + end];
        match serde_json::from_slice::<Line>(raw) {
            Ok(l) => lines.push(l),
            Err(e) => {
                return Err(Error::Drr(format!(
                    "{}: line {number} is damaged ({e}); the dataset cannot be resumed or verified",
                    path.display()
                )));
            }
        }
        at += end + 1;
    }
    Ok((lines, at))
}

/// Files of `files` (relative to `dir`) that are missing or whose content is not what the
/// journal recorded, as messages.
pub fn check_files(dir: &Path, files: &BTreeMap<String, String>) -> Vec<String> {
    files
        .iter()
        .filter_map(|(rel, sha)| match std::fs::read(dir.join(rel)) {
            Err(e) => Some(format!("{rel}: {e}")),
            Ok(b) if &sha256_hex(&b) != sha => Some(format!(
                "{rel}: content differs from the journal (SHA-256 {} ≠ {sha})",
                sha256_hex(&b)
            )),
            Ok(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_cut_short_is_dropped_and_a_damaged_one_named() {
        let dir = std::env::temp_dir().join(format!("dxr-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut j = Journal::open(&dir).unwrap();
        let files: BTreeMap<String, String> = [("a.png".to_string(), sha256_hex(b"a"))].into();
        j.append(Line::Item {
            item: "x_00000".into(),
            files: files.clone(),
        })
        .unwrap();
        drop(j);
        // a kill in the middle of the next append
        let path = dir.join(Journal::FILE);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(br#"{"item": "x_00001", "fil"#).unwrap();
        drop(f);
        let mut j = Journal::open(&dir).unwrap();
        assert_eq!(j.items().len(), 1);
        j.append(Line::Skipped {
            skipped: "y".into(),
            error: "bad".into(),
        })
        .unwrap();
        let j = Journal::open(&dir).unwrap();
        assert_eq!(
            (j.items().len(), j.skipped().len()),
            (1, 1),
            "{:?}",
            j.lines
        );
        // damage in the middle is refused with its line
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("garbage\n{text}")).unwrap();
        let e = Journal::open(&dir).err().unwrap().to_string();
        assert!(e.contains("line 1 is damaged"), "{e}");
        // a file whose content changed is named
        std::fs::write(dir.join("a.png"), b"b").unwrap();
        let bad = check_files(&dir, &files);
        assert!(
            bad.len() == 1 && bad[0].contains("a.png: content differs"),
            "{bad:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
