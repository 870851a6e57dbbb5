//! NIfTI-1 CT volumes (`.nii`, `.nii.gz`): reading with the header's scaling and affine, and
//! writing (for tests and for exporting a cleaned CT).

use crate::limits::Limits;
use std::path::Path;

use super::volume::{Volume, check_dims};
use crate::{Error, Result};

/// Largest NIfTI content accepted (header, extensions and voxels, after decompression).
pub const MAX_NIFTI_BYTES: u64 = Limits::NIFTI_BYTES.value;

/// Reads a NIfTI-1 volume (`.nii` or `.nii.gz`, detected from the content), applying
/// `scl_slope`/`scl_inter` and the sform (or qform, or pixdim) affine.
pub fn read_nifti(path: &Path) -> Result<Volume> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    nifti_from_bytes(raw, &path.display().to_string())
}

/// [`read_nifti`] of a file's bytes; `name` is for messages.
pub fn nifti_from_bytes(raw: Vec<u8>, name: &str) -> Result<Volume> {
    nifti_from_bytes_limited(raw, name, MAX_NIFTI_BYTES)
}

/// [`nifti_from_bytes`] with a smaller limit on the voxel bytes (the page's, whose memory is
/// 4 GiB in all).
pub fn nifti_from_bytes_limited(raw: Vec<u8>, name: &str, max_bytes: u64) -> Result<Volume> {
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        inflate_limited(&raw, max_bytes).map_err(|e| with_name(name, e))?
    } else {
        raw
    };
    parse_nifti(&bytes).map_err(|e| with_name(name, e))
}

fn with_name(name: &str, e: Error) -> Error {
    match e {
        Error::Volume(m) => Error::Volume(format!("{name}: {m}")),
        other => other,
    }
}

/// The most DEFLATE can expand its input (a 258-byte match in a couple of bits).
const MAX_DEFLATE_RATIO: u64 = Limits::DEFLATE_RATIO.value;

/// A gzip-compressed NIfTI file inflated only as far as its header says the voxels reach: a
/// small file that would inflate to gigabytes (a "gzip bomb") stops there, and one whose header
/// declares a volume past the limits is refused before anything large is allocated.
pub fn inflate(raw: &[u8]) -> Result<Vec<u8>> {
    inflate_limited(raw, MAX_NIFTI_BYTES)
}

/// [`inflate`] under a limit of `max_bytes` of voxels.
pub fn inflate_limited(raw: &[u8], max_bytes: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut gz = flate2::read::MultiGzDecoder::new(raw);
    let mut out = Vec::new();
    (&mut gz)
        .take(348)
        .read_to_end(&mut out)
        .map_err(|e| Error::Volume(format!("damaged gzip stream ({e})")))?;
    let need = layout(&out)?.need;
    // DEFLATE expands at most 1032-fold: a stream too short to hold what the header declares is
    // truncated, and is refused before anything is inflated (a 2 MB file declaring 4 GiB of
    // voxels would otherwise inflate its 2 GB of zeros first)
    let most = (raw.len() as u64).saturating_mul(MAX_DEFLATE_RATIO) + 1024;
    if need as u64 > most {
        return Err(Error::Volume(format!(
            "truncated: the header declares {need} bytes, more than a {}-byte gzip stream can hold",
            raw.len()
        )));
    }
    if need as u64 > max_bytes {
        return Err(Error::TooLarge(format!(
            "the header declares {need} bytes of voxels; the limit is {} MiB",
            max_bytes >> 20
        )));
    }
    out.reserve(
        need.saturating_sub(out.len())
            .min(raw.len().saturating_mul(64)),
    );
    gz.take((need - out.len()) as u64)
        .read_to_end(&mut out)
        .map_err(|e| Error::Volume(format!("damaged gzip stream ({e})")))?;
    Ok(out)
}

/// The voxel grid (dimensions and voxel → world affine) a NIfTI file's header declares, read
/// without its voxels (a manifest of many CTs is checked this way before anything is rendered).
pub fn read_grid(path: &Path) -> Result<([usize; 3], [[f64; 4]; 4])> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = Vec::with_capacity(348);
    let mut magic = [0u8; 2];
    let mut f = std::io::BufReader::new(file);
    let n = f.read(&mut magic).map_err(|e| Error::io(path, e))?;
    head.extend_from_slice(&magic[..n]);
    let read = if magic == [0x1f, 0x8b] {
        let chained = std::io::Cursor::new(magic).chain(f);
        let mut gz = flate2::read::MultiGzDecoder::new(chained);
        head.clear();
        (&mut gz).take(348).read_to_end(&mut head)
    } else {
        f.take(346).read_to_end(&mut head)
    };
    read.map_err(|e| {
        with_name(
            &path.display().to_string(),
            Error::Volume(format!("damaged file ({e})")),
        )
    })?;
    let l = layout(&head).map_err(|e| with_name(&path.display().to_string(), e))?;
    let affine = nifti_affine(&l.header).map_err(|e| with_name(&path.display().to_string(), e))?;
    Ok((l.dims, affine))
}

/// What the header says about the voxels and where they are.
struct Layout {
    header: nifti::NiftiHeader,
    dims: [usize; 3],
    datatype: nifti::NiftiType,
    offset: usize,
    /// Bytes the file must have: the offset plus the voxels.
    need: usize,
}

fn layout(bytes: &[u8]) -> Result<Layout> {
    use nifti::{NiftiHeader, NiftiType};
    if bytes.len() < 348 {
        return Err(Error::Volume(format!(
            "not a NIfTI-1 file: {} bytes, shorter than the 348-byte header",
            bytes.len()
        )));
    }
    let header = NiftiHeader::from_reader(bytes)
        .map_err(|e| Error::Volume(format!("not a NIfTI-1 file ({e})")))?;
    if &header.magic != b"n+1\0" {
        return Err(Error::Volume(
            "not a single-file NIfTI-1 image (magic is not \"n+1\"; .hdr/.img pairs and NIfTI-2 are not read)"
                .into(),
        ));
    }
    let rank = header.dim[0] as usize;
    if !(3..=7).contains(&rank) {
        return Err(Error::Volume(format!(
            "a CT needs 3 dimensions, the header declares {rank}"
        )));
    }
    if header.dim[4..=rank].iter().any(|&d| d > 1) {
        return Err(Error::Volume(format!(
            "a CT needs one 3-D volume, the header declares {:?} (time or vector dimensions)",
            &header.dim[1..=rank]
        )));
    }
    let dims = [
        header.dim[1] as usize,
        header.dim[2] as usize,
        header.dim[3] as usize,
    ];
    check_dims(dims)?;
    let datatype = header
        .data_type()
        .map_err(|e| Error::Volume(format!("unknown datatype code {} ({e})", header.datatype)))?;
    let elem = match datatype {
        NiftiType::Uint8 | NiftiType::Int8 => 1,
        NiftiType::Int16 | NiftiType::Uint16 => 2,
        NiftiType::Int32 | NiftiType::Uint32 | NiftiType::Float32 => 4,
        NiftiType::Float64 => 8,
        other => {
            return Err(Error::Volume(format!(
                "datatype {other:?} is not a scalar type we read (u8, i8, i16, u16, i32, u32, f32, f64)"
            )));
        }
    };
    let vox_offset = header.vox_offset;
    if !vox_offset.is_finite() || vox_offset > (1u64 << 30) as f32 {
        return Err(Error::Volume(format!(
            "vox_offset {vox_offset} is not a usable offset"
        )));
    }
    let offset = vox_offset.max(348.0) as usize;
    let need = offset + dims.iter().product::<usize>() * elem;
    // The voxel reader sizes its buffer from `dim` and `bitpix`, not from what was checked
    // above: a header with bitpix 0, or −3 in an unused dimension, would make it ask for
    // exabytes (found by fuzzing). It gets the checked values.
    let mut header = header;
    header.dim = [
        3,
        dims[0] as u16,
        dims[1] as u16,
        dims[2] as u16,
        1,
        1,
        1,
        1,
    ];
    header.bitpix = (8 * elem) as i16;
    Ok(Layout {
        header,
        dims,
        datatype,
        offset,
        need,
    })
}

/// Parses a whole single-file NIfTI-1 image held in memory.
pub fn parse_nifti(bytes: &[u8]) -> Result<Volume> {
    use nifti::{NiftiType, volume::InMemNiftiVolume};
    let Layout {
        header,
        dims,
        datatype,
        offset,
        need,
    } = layout(bytes)?;
    if bytes.len() < need {
        return Err(Error::Volume(format!(
            "truncated: {dims:?} voxels after offset {offset} need {need} bytes, the file has {}",
            bytes.len()
        )));
    }
    let vol = InMemNiftiVolume::from_reader(&bytes[offset..need], &header)
        .map_err(|e| Error::Volume(format!("cannot read voxels ({e})")))?;
    let data: Vec<f32> = match datatype {
        NiftiType::Uint8 => typed::<u8>(vol)?,
        NiftiType::Int8 => typed::<i8>(vol)?,
        NiftiType::Int16 => typed::<i16>(vol)?,
        NiftiType::Uint16 => typed::<u16>(vol)?,
        NiftiType::Int32 => typed::<i32>(vol)?,
        NiftiType::Uint32 => typed::<u32>(vol)?,
        NiftiType::Float32 => typed::<f32>(vol)?,
        _ => typed::<f64>(vol)?,
    };
    // scl_slope = 0 means "no scaling" (NIfTI-1 standard).
    let (slope, inter) = (header.scl_slope, header.scl_inter);
    let data =
        if slope != 0.0 && slope.is_finite() && inter.is_finite() && (slope, inter) != (1.0, 0.0) {
            data.into_iter().map(|v| v * slope + inter).collect()
        } else {
            data
        };
    if data.iter().any(|v| !v.is_finite()) {
        return Err(Error::Volume(
            "voxel values are not all finite (NaN or ∞)".into(),
        ));
    }
    Volume::new(dims, data, nifti_affine(&header)?)
}

fn typed<T>(vol: nifti::volume::InMemNiftiVolume) -> Result<Vec<f32>>
where
    T: nifti::volume::element::DataElement + AsF32,
{
    Ok(vol
        .into_nifti_typed_data::<T>()
        .map_err(|e| Error::Volume(format!("cannot convert voxels ({e})")))?
        .into_iter()
        .map(AsF32::as_f32)
        .collect())
}

/// Numeric widening to f32 for every NIfTI scalar type.
trait AsF32 {
    fn as_f32(self) -> f32;
}
macro_rules! as_f32 {
    ($($t:ty),*) => { $(impl AsF32 for $t { fn as_f32(self) -> f32 { self as f32 } })* };
}
as_f32!(u8, i8, i16, u16, i32, u32, f32, f64);

/// The voxel → world affine a NIfTI header declares: sform when set, else qform, else the
/// pixdim scaling (method 1 of the standard).
fn nifti_affine(h: &nifti::NiftiHeader) -> Result<[[f64; 4]; 4]> {
    let f = |x: f32| x as f64;
    if h.sform_code > 0 {
        return Ok([
            h.srow_x.map(f),
            h.srow_y.map(f),
            h.srow_z.map(f),
            [0.0, 0.0, 0.0, 1.0],
        ]);
    }
    let pix = [f(h.pixdim[1]), f(h.pixdim[2]), f(h.pixdim[3])];
    if pix.iter().any(|p| !p.is_finite() || *p == 0.0) && h.qform_code > 0 {
        return Err(Error::Volume(format!(
            "pixdim {pix:?} has a zero or non-finite spacing"
        )));
    }
    if h.qform_code > 0 {
        let (b, c, d) = (f(h.quatern_b), f(h.quatern_c), f(h.quatern_d));
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let r = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let scale = [pix[0].abs(), pix[1].abs(), qfac * pix[2].abs()];
        let offset = [f(h.quatern_x), f(h.quatern_y), f(h.quatern_z)];
        let mut out = [[0.0; 4]; 4];
        for row in 0..3 {
            for col in 0..3 {
                out[row][col] = r[row][col] * scale[col];
            }
            out[row][3] = offset[row];
        }
        out[3][3] = 1.0;
        return Ok(out);
    }
    let pix = pix.map(|p| {
        if p.is_finite() && p != 0.0 {
            p.abs()
        } else {
            1.0
        }
    });
    Ok([
        [pix[0], 0.0, 0.0, 0.0],
        [0.0, pix[1], 0.0, 0.0],
        [0.0, 0.0, pix[2], 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ])
}

/// Writes a NIfTI-1 file (float32 voxels, sform = qform-free affine); used by tests and to save
/// phantoms.
pub fn nifti_bytes(vol: &Volume) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    let put_i32 =
        |h: &mut Vec<u8>, at: usize, v: i32| h[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put_i16 =
        |h: &mut Vec<u8>, at: usize, v: i16| h[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put_f32 =
        |h: &mut Vec<u8>, at: usize, v: f32| h[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put_i32(&mut h, 0, 348);
    let dim = [
        3,
        vol.dims[0] as i16,
        vol.dims[1] as i16,
        vol.dims[2] as i16,
        1,
        1,
        1,
        1,
    ];
    for (k, d) in dim.iter().enumerate() {
        put_i16(&mut h, 40 + 2 * k, *d);
    }
    put_i16(&mut h, 70, 16); // datatype float32
    put_i16(&mut h, 72, 32); // bitpix
    let sp = vol.spacing();
    for (k, p) in [1.0, sp[0], sp[1], sp[2], 1.0].iter().enumerate() {
        put_f32(&mut h, 76 + 4 * k, *p as f32);
    }
    put_f32(&mut h, 108, 352.0); // vox_offset
    put_f32(&mut h, 112, 1.0); // scl_slope
    h[123] = 2; // xyzt_units: mm
    put_i16(&mut h, 254, 2); // sform_code: aligned
    for r in 0..3 {
        for c in 0..4 {
            put_f32(&mut h, 280 + 16 * r + 4 * c, vol.affine[r][c] as f32);
        }
    }
    h[344..348].copy_from_slice(b"n+1\0");
    h.extend(vol.data.iter().flat_map(|v| v.to_le_bytes()));
    h
}

#[cfg(test)]
mod tests {
    use super::super::volume::test_volume;
    use super::*;

    #[test]
    fn nifti_round_trip_keeps_values_and_affine() {
        let vol = test_volume();
        let back = parse_nifti(&nifti_bytes(&vol)).unwrap();
        assert_eq!(back.dims, vol.dims);
        assert_eq!(back.data, vol.data);
        for r in 0..4 {
            for c in 0..4 {
                assert!((back.affine[r][c] - vol.affine[r][c]).abs() < 1e-6);
            }
        }
        assert!((back.spacing()[2] - 2.5).abs() < 1e-6);
    }

    #[test]
    fn a_gzip_bomb_inflates_only_as_far_as_the_header_says() {
        use std::io::Write;
        let good = nifti_bytes(&test_volume());
        let gz = |parts: &[&[u8]], zeros: usize| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            for p in parts {
                e.write_all(p).unwrap();
            }
            let chunk = vec![0u8; 1 << 20];
            for _ in 0..zeros {
                e.write_all(&chunk).unwrap();
            }
            e.finish().unwrap()
        };
        // the volume, then 1 GiB of zeros: a ~1 MB file; only the volume's bytes are inflated
        let bomb = gz(&[&good], 1024);
        assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
        let out = inflate(&bomb).unwrap();
        assert_eq!(out.len(), good.len());
        assert_eq!(parse_nifti(&out).unwrap().data, test_volume().data);
        // a header that declares a volume past the limit is refused before inflating it
        let mut huge = good[..348].to_vec();
        for (i, d) in [4096i16, 4096, 4096].iter().enumerate() {
            huge[42 + 2 * i..44 + 2 * i].copy_from_slice(&d.to_le_bytes());
        }
        let e = inflate(&gz(&[&huge], 0)).unwrap_err().to_string();
        assert!(e.contains("voxels"), "{e}");
        // a header declaring more than the stream could ever inflate to: refused at once
        let mut big = good[..348].to_vec();
        for (i, d) in [2048i16, 2048, 512].iter().enumerate() {
            big[42 + 2 * i..44 + 2 * i].copy_from_slice(&d.to_le_bytes());
        }
        big[70..72].copy_from_slice(&4i16.to_le_bytes()); // int16
        big[72..74].copy_from_slice(&16i16.to_le_bytes());
        let e = inflate(&gz(&[&big], 64)).unwrap_err().to_string();
        assert!(
            e.contains("truncated") && e.contains("gzip stream can hold"),
            "{e}"
        );
        // a stream that ends inside the header is named
        let e = inflate(&gz(&[&good[..100]], 0)).unwrap_err().to_string();
        assert!(e.contains("348-byte header"), "{e}");
    }

    #[test]
    fn bad_niftis_are_named() {
        let good = nifti_bytes(&test_volume());
        let err = |b: &[u8]| parse_nifti(b).unwrap_err().to_string();
        assert!(err(&good[..100]).contains("shorter than the 348-byte header"));
        assert!(err(&good[..good.len() - 8]).contains("truncated"));
        let mut bad = good.clone();
        bad[344..348].copy_from_slice(b"xxxx");
        assert!(
            err(&bad).contains("magic") || err(&bad).contains("NIfTI"),
            "{}",
            err(&bad)
        );
        let mut bad = good.clone();
        bad[40..42].copy_from_slice(&2i16.to_le_bytes());
        assert!(err(&bad).contains("needs 3 dimensions"));
        let mut bad = good.clone();
        bad[70..72].copy_from_slice(&32i16.to_le_bytes()); // complex64
        assert!(err(&bad).contains("datatype"), "{}", err(&bad));
        let mut bad = good.clone();
        bad[48..50].copy_from_slice(&5i16.to_le_bytes());
        bad[40..42].copy_from_slice(&4i16.to_le_bytes());
        assert!(err(&bad).contains("one 3-D volume"));
        let mut bad = good.clone();
        for c in 0..4 {
            bad[280 + 16 + 4 * c..284 + 16 + 4 * c].copy_from_slice(&0f32.to_le_bytes());
        }
        assert!(err(&bad).contains("singular"));
        let mut bad = good.clone();
        bad[352..356].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(err(&bad).contains("finite"));
        assert!(
            read_nifti(Path::new("/nonexistent/ct.nii"))
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/ct.nii")
        );
    }

    #[test]
    fn gzip_is_detected_from_content() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("dxr-nifti-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ct.nii"); // no .gz extension on purpose
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&nifti_bytes(&test_volume())).unwrap();
        let mut bytes = gz.finish().unwrap();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_nifti(&path).unwrap().data, test_volume().data);
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&path, &bytes).unwrap();
        let msg = read_nifti(&path).unwrap_err().to_string();
        assert!(msg.contains("gzip") || msg.contains("truncated"), "{msg}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
