//! A CT as a folder of DICOM slices: slices sorted by their position along the slice normal,
//! modality rescale applied, spacing taken from Pixel Spacing and the positions themselves
//! (Slice Thickness is not the spacing when slices overlap or have gaps).

use crate::limits::Limits;
use std::io::Cursor;
use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use dicom_pixeldata::PixelDecoder;

use super::volume::{MAX_VOLUME_SIDE, Volume};
use crate::io::dicom::{check_declared_lengths, looks_like_dicom, preamble_of};
use crate::{Error, Result};

/// Largest slice file read.
const MAX_SLICE_BYTES: u64 = Limits::SLICE_BYTES.value;
/// Slice spacings may differ by this fraction before the series is refused.
const SPACING_TOLERANCE: f64 = 0.01;

struct Slice {
    name: String,
    position: [f64; 3],
    rows: usize,
    cols: usize,
    orientation: [f64; 6],
    spacing: [f64; 2],
    values: Vec<f32>,
}

/// The files of `dir`, sorted by name.
fn files_of(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    Ok(paths)
}

/// Reads every DICOM file of `dir` (files without the DICM magic are skipped, so a DICOMDIR
/// folder's stray files do not matter) as one volume. Files are read one at a time.
pub fn read_series(dir: &Path) -> Result<Volume> {
    let err = |m: String| Error::Volume(format!("{}: {m}", dir.display()));
    let paths = files_of(dir)?;
    let mut slices = Vec::new();
    for path in &paths {
        let size = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        check_slice_bytes(&path.display().to_string(), size).map_err(err)?;
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        add_file(&mut slices, &name, &bytes).map_err(err)?;
    }
    finish(slices).map_err(err)
}

/// The grid size `[columns, rows, slices]` of the series in `dir`, from the files' headers
/// only; a series whose slices differ in size is refused by name.
pub fn series_dims(dir: &Path) -> Result<[usize; 3]> {
    let err = |m: String| Error::Volume(format!("{}: {m}", dir.display()));
    let paths = files_of(dir)?;
    let mut size: Option<(usize, usize, String)> = None;
    let mut count = 0;
    for path in &paths {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if !looks_like_dicom(&bytes) {
            continue;
        }
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let obj = OpenFileOptions::new()
            .read_preamble(preamble_of(&bytes))
            .read_until(tags::PIXEL_DATA)
            .from_reader(Cursor::new(&bytes))
            .map_err(|e| err(format!("{name}: not a readable DICOM file ({e})")))?;
        let int = |tag, what: &str| -> Result<usize> {
            obj.element(tag)
                .ok()
                .and_then(|e| e.to_int::<u32>().ok())
                .map(|v| v as usize)
                .ok_or_else(|| err(format!("{name}: missing or bad {what}")))
        };
        let (rows, cols) = (int(tags::ROWS, "Rows")?, int(tags::COLUMNS, "Columns")?);
        match &size {
            None => size = Some((rows, cols, name)),
            Some((r, c, first)) if (*r, *c) != (rows, cols) => {
                return Err(err(format!(
                    "slices of different sizes: {first} is {c}×{r}, {name} is {cols}×{rows}"
                )));
            }
            _ => {}
        }
        count += 1;
    }
    match size {
        Some((rows, cols, _)) if count >= 2 => Ok([cols, rows, count]),
        _ => Err(err(format!(
            "a CT series needs at least 2 DICOM slices, found {count}"
        ))),
    }
}

/// Reads a CT series given as `(file name, bytes)` pairs in any order: what the page's file
/// picker gives. Files without the DICM magic are skipped.
pub fn series_from_files(files: &[(String, Vec<u8>)]) -> Result<Volume> {
    let mut slices = Vec::new();
    for (name, bytes) in files {
        check_slice_bytes(name, bytes.len() as u64).map_err(Error::Volume)?;
        add_file(&mut slices, name, bytes).map_err(Error::Volume)?;
    }
    finish(slices).map_err(Error::Volume)
}

fn check_slice_bytes(name: &str, size: u64) -> std::result::Result<(), String> {
    if size > MAX_SLICE_BYTES {
        return Err(format!(
            "{name} is {size} bytes, larger than a CT slice can be ({MAX_SLICE_BYTES})"
        ));
    }
    Ok(())
}

fn add_file(slices: &mut Vec<Slice>, name: &str, bytes: &[u8]) -> std::result::Result<(), String> {
    if !looks_like_dicom(bytes) {
        return Ok(());
    }
    slices.push(read_slice(bytes, name)?);
    if slices.len() > MAX_VOLUME_SIDE {
        return Err(format!("more than {MAX_VOLUME_SIDE} slices"));
    }
    Ok(())
}

fn finish(slices: Vec<Slice>) -> std::result::Result<Volume, String> {
    if slices.len() < 2 {
        return Err(format!(
            "a CT series needs at least 2 DICOM slices, found {}",
            slices.len()
        ));
    }
    assemble(slices)
}

fn read_slice(bytes: &[u8], name: &str) -> std::result::Result<Slice, String> {
    check_declared_lengths(bytes).map_err(|e| format!("{name}: {e}"))?;
    let obj = OpenFileOptions::new()
        .read_preamble(preamble_of(bytes))
        .from_reader(Cursor::new(bytes))
        .map_err(|e| format!("{name}: not a readable DICOM file ({e})"))?;
    let floats = |tag, what: &str, n: usize| -> std::result::Result<Vec<f64>, String> {
        let v: Vec<f64> = obj
            .element(tag)
            .map_err(|_| format!("{name}: missing {what} {tag}"))?
            .to_multi_float64()
            .map_err(|e| format!("{name}: {what} {tag} is not numeric ({e})"))?;
        if v.len() != n || v.iter().any(|x| !x.is_finite()) {
            return Err(format!(
                "{name}: {what} {tag} must hold {n} finite numbers, holds {v:?}"
            ));
        }
        Ok(v)
    };
    let position = floats(tags::IMAGE_POSITION_PATIENT, "Image Position (Patient)", 3)?;
    let orientation = floats(
        tags::IMAGE_ORIENTATION_PATIENT,
        "Image Orientation (Patient)",
        6,
    )?;
    let spacing = floats(tags::PIXEL_SPACING, "Pixel Spacing", 2)?;
    if spacing.iter().any(|s| *s <= 0.0) {
        return Err(format!(
            "{name}: Pixel Spacing {spacing:?} must be positive"
        ));
    }
    crate::io::dicom::check_pixel_module(&obj).map_err(|e| format!("{name}: {e}"))?;
    let pixels = obj
        .decode_pixel_data()
        .map_err(|e| format!("{name}: pixel data cannot be decoded ({e})"))?;
    if pixels.samples_per_pixel() != 1 || pixels.number_of_frames() != 1 {
        return Err(format!(
            "{name}: a CT slice has one greyscale frame, this has {} frames of {} samples",
            pixels.number_of_frames(),
            pixels.samples_per_pixel()
        ));
    }
    let (rows, cols) = (pixels.rows() as usize, pixels.columns() as usize);
    let values =
        crate::io::dicom::modality_frame(&obj, &pixels, 0).map_err(|e| format!("{name}: {e}"))?;
    if values.len() != rows * cols || rows == 0 || cols == 0 {
        return Err(format!("{name}: {} values for {rows}×{cols}", values.len()));
    }
    Ok(Slice {
        name: name.to_string(),
        position: [position[0], position[1], position[2]],
        rows,
        cols,
        orientation: std::array::from_fn(|k| orientation[k]),
        spacing: [spacing[0], spacing[1]],
        values,
    })
}

fn assemble(mut slices: Vec<Slice>) -> std::result::Result<Volume, String> {
    // 1. every slice on the same in-plane grid
    let first = &slices[0];
    let (rows, cols, orient, spacing) = (first.rows, first.cols, first.orientation, first.spacing);
    for s in &slices[1..] {
        if (s.rows, s.cols) != (rows, cols) {
            return Err(format!(
                "{} is {}×{} but {} is {rows}×{cols}: slices of different sizes",
                s.name, s.rows, s.cols, first.name
            ));
        }
        let d = (0..6)
            .map(|k| (s.orientation[k] - orient[k]).abs())
            .fold(0.0, f64::max);
        let ds = (0..2)
            .map(|k| (s.spacing[k] - spacing[k]).abs())
            .fold(0.0, f64::max);
        if d > 1e-4 || ds > 1e-4 {
            return Err(format!(
                "{} has a different orientation or pixel spacing than {}: not one series",
                s.name, first.name
            ));
        }
    }
    // 2. sort along the normal, check the spacing is regular
    let row_dir = [orient[0], orient[1], orient[2]];
    let col_dir = [orient[3], orient[4], orient[5]];
    let normal = cross(row_dir, col_dir);
    let norm = dot(normal, normal).sqrt();
    if !(0.99..1.01).contains(&norm) || dot(row_dir, col_dir).abs() > 1e-3 {
        return Err(format!(
            "Image Orientation (Patient) {orient:?} is not two orthogonal unit vectors"
        ));
    }
    let along = |s: &Slice| dot(s.position, normal);
    slices.sort_by(|a, b| along(a).total_cmp(&along(b)));
    let gaps: Vec<f64> = slices
        .windows(2)
        .map(|w| along(&w[1]) - along(&w[0]))
        .collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    for (k, g) in gaps.iter().enumerate() {
        if *g < 1e-3 {
            return Err(format!(
                "{} and {} are at the same position: duplicate slices",
                slices[k].name,
                slices[k + 1].name
            ));
        }
        if (g - mean).abs() > SPACING_TOLERANCE * mean {
            return Err(format!(
                "uneven slice spacing: {:.3} mm between {} and {}, {mean:.3} mm on average (missing slice?)",
                g,
                slices[k].name,
                slices[k + 1].name
            ));
        }
    }
    // 3. voxel (i = column, j = row, k = slice) → LPS, then LPS → RAS (negate x and y)
    let origin = slices[0].position;
    let step = [
        row_dir.map(|v| v * spacing[1]),
        col_dir.map(|v| v * spacing[0]),
        normal.map(|v| v * mean),
    ];
    let mut affine = [[0.0; 4]; 4];
    for r in 0..3 {
        let flip = if r < 2 { -1.0 } else { 1.0 };
        for c in 0..3 {
            affine[r][c] = flip * step[c][r];
        }
        affine[r][3] = flip * origin[r];
    }
    affine[3][3] = 1.0;
    let dims = [cols, rows, slices.len()];
    let mut data = Vec::with_capacity(cols * rows * slices.len());
    for s in &slices {
        data.extend_from_slice(&s.values);
    }
    Volume::new(dims, data, affine).map_err(|e| e.to_string())
}

/// The slices of `vol` as a DICOM CT series (uncompressed, 16-bit, HU = value − 1024, file
/// names `IM00001.dcm` …), which [`series_from_files`] reads back onto the same world grid: for
/// sharing a CT with DICOM tools and for testing the page's series reader. HU are rounded to
/// whole units and clamped to −1024…3071 (12 bits stored, as most CT series). The voxel axes must be orthogonal.
pub fn series_bytes(vol: &Volume) -> Result<Vec<(String, Vec<u8>)>> {
    use crate::io::dicom::{DicomWriteOptions, write_u16};
    let [nx, ny, nz] = vol.dims;
    if nx > u16::MAX as usize || ny > u16::MAX as usize {
        return Err(Error::Volume(format!(
            "{nx}×{ny} slices are too large for DICOM"
        )));
    }
    let a = &vol.affine;
    // voxel axis c in LPS (RAS with x and y negated)
    let axis = |c: usize| [-a[0][c], -a[1][c], a[2][c]];
    let len = |v: [f64; 3]| dot(v, v).sqrt();
    let unit = |v: [f64; 3]| v.map(|x| x / len(v));
    let (di, dj, dk) = (axis(0), axis(1), axis(2));
    for (p, q) in [(di, dj), (di, dk), (dj, dk)] {
        if dot(unit(p), unit(q)).abs() > 1e-4 {
            return Err(Error::Volume(
                "the CT's voxel axes are not orthogonal: DICOM slices cannot describe it".into(),
            ));
        }
    }
    let (ri, cj) = (unit(di), unit(dj));
    let orientation = [ri[0], ri[1], ri[2], cj[0], cj[1], cj[2]];
    let mut out = Vec::with_capacity(nz);
    for k in 0..nz {
        let origin = [
            -(a[0][3] + a[0][2] * k as f64),
            -(a[1][3] + a[1][2] * k as f64),
            a[2][3] + a[2][2] * k as f64,
        ];
        let plane = &vol.data[k * nx * ny..(k + 1) * nx * ny];
        let px: Vec<u16> = plane
            .iter()
            .map(|h| (h.round() + 1024.0).clamp(0.0, 4095.0) as u16)
            .collect();
        let opts = DicomWriteOptions {
            rescale: Some((1.0, -1024.0)),
            modality: Some("CT".into()),
            position: Some(origin),
            orientation: Some(orientation),
            pixel_spacing: Some([len(dj), len(di)]),
            ..Default::default()
        };
        out.push((
            format!("IM{:05}.dcm", k + 1),
            write_u16(ny as u16, nx as u16, &px, "MONOCHROME2", &opts)?,
        ));
    }
    Ok(out)
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::io::dicom::{DicomWriteOptions, write_u16};

    /// Writes a series of `n` 6×5 slices (rows × cols) with HU = 10·k + column − 1024
    /// (rescale intercept −1024) in shuffled file order; returns the folder.
    pub(crate) fn write_series(
        dir: &Path,
        n: usize,
        gap: impl Fn(usize) -> f64,
    ) -> std::path::PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let mut z = 0.0;
        for k in 0..n {
            let px: Vec<u16> = (0..30).map(|p| (10 * k + p % 5) as u16).collect();
            let opts = DicomWriteOptions {
                rescale: Some((1.0, -1024.0)),
                modality: Some("CT".into()),
                position: Some([-100.0, -50.0, z]),
                orientation: Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
                pixel_spacing: Some([0.8, 0.6]),
                ..Default::default()
            };
            let bytes = write_u16(6, 5, &px, "MONOCHROME2", &opts).unwrap();
            // file names deliberately out of anatomical order
            std::fs::write(dir.join(format!("IM{:03}", n - k)), bytes).unwrap();
            z += gap(k);
        }
        std::fs::write(dir.join("README.txt"), "not a slice").unwrap();
        dir.to_path_buf()
    }

    #[test]
    fn a_volume_written_as_a_series_reads_back_on_the_same_grid() {
        // a grid with a flipped row axis and uneven spacings, values in whole HU
        let dims = [7, 5, 4];
        let data: Vec<f32> = (0..140)
            .map(|p| (p as f32 * 13.0) % 900.0 - 1000.0)
            .collect();
        let mut affine = [[0.0; 4]; 4];
        affine[0][0] = -0.7;
        affine[1][1] = 0.9;
        affine[2][2] = 2.5;
        affine[0][3] = 40.0;
        affine[1][3] = -20.0;
        affine[2][3] = 5.0;
        affine[3][3] = 1.0;
        let vol = Volume::new(dims, data, affine).unwrap();
        let files = series_bytes(&vol).unwrap();
        assert_eq!(files.len(), 4);
        let back = series_from_files(&files).unwrap();
        assert_eq!(back.dims, vol.dims);
        // every voxel is where it was, with its value (the reader orders the slices along the
        // right-handed normal, so a left-handed grid like this one comes back with k reversed)
        for k in 0..4 {
            for j in 0..5 {
                for i in 0..7 {
                    let v = back.voxel(vol.world([i as f64, j as f64, k as f64]));
                    let r = v.map(|x| x.round());
                    assert!((0..3).all(|c| (v[c] - r[c]).abs() < 1e-6), "{v:?}");
                    let [bi, bj, bk] = r.map(|x| x as usize);
                    assert_eq!(
                        back.data[back.index(bi, bj, bk)],
                        vol.data[vol.index(i, j, k)]
                    );
                }
            }
        }
    }

    fn tmp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("dxr-series-{tag}-{}", std::process::id()));
        std::fs::remove_dir_all(&d).ok();
        d
    }

    #[test]
    fn series_is_sorted_rescaled_and_placed() {
        let dir = write_series(&tmp("ok"), 4, |_| 2.0);
        let vol = read_series(&dir).unwrap();
        assert_eq!(vol.dims, [5, 6, 4]);
        // voxel (2, 3, k) = 10 k + 2 − 1024
        for k in 0..4 {
            assert_eq!(vol.data[vol.index(2, 3, k)], (10 * k + 2) as f32 - 1024.0);
        }
        let sp = vol.spacing();
        assert!(
            (sp[0] - 0.6).abs() < 1e-9 && (sp[1] - 0.8).abs() < 1e-9 && (sp[2] - 2.0).abs() < 1e-9
        );
        // LPS (−100, −50, 2) → RAS (100, 50, 2)
        let w = vol.world([0.0, 0.0, 1.0]);
        assert!(
            (w[0] - 100.0).abs() < 1e-9 && (w[1] - 50.0).abs() < 1e-9 && (w[2] - 2.0).abs() < 1e-9
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_slice_file_over_the_limit_is_refused_by_its_size() {
        let dir = write_series(&tmp("big"), 3, |_| 2.0);
        // under the limit: the series reads, the sparse file (no DICM magic) is skipped
        let f = std::fs::File::create(dir.join("IM999")).unwrap();
        f.set_len(MAX_SLICE_BYTES).unwrap();
        assert_eq!(read_series(&dir).unwrap().dims, [5, 6, 3]);
        f.set_len(MAX_SLICE_BYTES + 1).unwrap();
        let msg = read_series(&dir).unwrap_err().to_string();
        assert!(
            msg.contains("IM999") && msg.contains("larger than a CT slice"),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn series_from_files_reads_what_a_picker_gives_in_any_order() {
        let dir = write_series(&tmp("files"), 4, |_| 2.0);
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        files.reverse();
        let a = series_from_files(&files).unwrap();
        let b = read_series(&dir).unwrap();
        assert_eq!((a.dims, &a.data), (b.dims, &b.data));
        files.truncate(1);
        let msg = series_from_files(&files).unwrap_err().to_string();
        assert!(msg.contains("at least 2 DICOM slices"), "{msg}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn broken_series_are_named() {
        let dir = write_series(&tmp("gap"), 4, |k| if k == 1 { 4.0 } else { 2.0 });
        let msg = read_series(&dir).unwrap_err().to_string();
        assert!(msg.contains("uneven slice spacing"), "{msg}");
        let dir = write_series(&tmp("dup"), 3, |k| if k == 0 { 0.0 } else { 2.0 });
        let msg = read_series(&dir).unwrap_err().to_string();
        assert!(msg.contains("duplicate slices"), "{msg}");
        let dir = tmp("empty");
        std::fs::create_dir_all(&dir).unwrap();
        let msg = read_series(&dir).unwrap_err().to_string();
        assert!(msg.contains("at least 2 DICOM slices, found 0"), "{msg}");
        // a slice without a position
        let dir = write_series(&tmp("nopos"), 3, |_| 2.0);
        let bytes =
            write_u16(6, 5, &[0; 30], "MONOCHROME2", &DicomWriteOptions::default()).unwrap();
        std::fs::write(dir.join("zz"), bytes).unwrap();
        let msg = read_series(&dir).unwrap_err().to_string();
        assert!(msg.contains("Image Position (Patient)"), "{msg}");
        // a truncated slice
        let dir = write_series(&tmp("trunc"), 3, |_| 2.0);
        let first = std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let first = if first.ends_with("README.txt") {
            std::fs::read_dir(&dir)
                .unwrap()
                .nth(1)
                .unwrap()
                .unwrap()
                .path()
        } else {
            first
        };
        let b = std::fs::read(&first).unwrap();
        std::fs::write(&first, &b[..b.len() - 20]).unwrap();
        let msg = read_series(&dir).unwrap_err().to_string();
        assert!(
            msg.contains("truncated") || msg.contains("damaged") || msg.contains("declares"),
            "{msg}"
        );
        for t in ["gap", "dup", "empty", "nopos", "trunc"] {
            std::fs::remove_dir_all(tmp(t)).ok();
        }
    }
}
