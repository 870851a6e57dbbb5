//! Writing greyscale DICOM files: exports, and the synthetic files tests read back.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use crate::error::{Error, Result};

/// Options of [`write_u16`].
#[derive(Debug, Clone, Default)]
pub struct DicomWriteOptions {
    /// Transfer syntax UID; explicit VR little endian when `None`.
    pub transfer_syntax: Option<String>,
    /// Rescale slope and intercept.
    pub rescale: Option<(f64, f64)>,
    /// VOI window centre and width.
    pub window: Option<(f64, f64)>,
    /// Modality (CR when `None`); `CT` also writes the CT image SOP class.
    pub modality: Option<String>,
    /// Image Position (Patient), LPS mm: one slice of a series.
    pub position: Option<[f64; 3]>,
    /// Image Orientation (Patient): row then column direction cosines.
    pub orientation: Option<[f64; 6]>,
    /// Pixel Spacing: between rows, then between columns (mm).
    pub pixel_spacing: Option<[f64; 2]>,
    /// Pixel Representation 1 (two's complement), as CT slices often are.
    pub signed: bool,
}

/// Writes a 16-bit greyscale radiograph (`photometric` = MONOCHROME1/2, 12 bits stored) as a DICOM
/// file in memory, uncompressed: for exports and for tests of the reader.
pub fn write_u16(
    rows: u16,
    cols: u16,
    pixels: &[u16],
    photometric: &str,
    opts: &DicomWriteOptions,
) -> Result<Vec<u8>> {
    let mut obj = base_object(rows, cols, pixels, photometric, opts.rescale, opts.window);
    let put = |obj: &mut InMemDicomObject, tag, vr, v: PrimitiveValue| {
        obj.put(DataElement::new(tag, vr, v))
    };
    let ds = |v: &[f64]| PrimitiveValue::Strs(v.iter().map(|x| format!("{x}")).collect());
    if let Some(m) = &opts.modality {
        put(
            &mut obj,
            tags::MODALITY,
            VR::CS,
            PrimitiveValue::from(m.as_str()),
        );
    }
    if let Some(p) = opts.position {
        put(&mut obj, tags::IMAGE_POSITION_PATIENT, VR::DS, ds(&p));
    }
    if let Some(o) = opts.orientation {
        put(&mut obj, tags::IMAGE_ORIENTATION_PATIENT, VR::DS, ds(&o));
    }
    if let Some(s) = opts.pixel_spacing {
        put(&mut obj, tags::PIXEL_SPACING, VR::DS, ds(&s));
    }
    if opts.signed {
        put(
            &mut obj,
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(1u16),
        );
    }
    finish_dicom(
        obj,
        opts.transfer_syntax
            .as_deref()
            .unwrap_or("1.2.840.10008.1.2.1"),
    )
}

#[cfg(test)]
pub(super) fn make_dicom(
    rows: u16,
    cols: u16,
    pixels: &[u16],
    photometric: &str,
    ts: &str,
    rescale: Option<(f64, f64)>,
    window: Option<(f64, f64)>,
) -> Result<Vec<u8>> {
    finish_dicom(
        base_object(rows, cols, pixels, photometric, rescale, window),
        ts,
    )
}

pub(super) fn base_object(
    rows: u16,
    cols: u16,
    pixels: &[u16],
    photometric: &str,
    rescale: Option<(f64, f64)>,
    window: Option<(f64, f64)>,
) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    let put = |obj: &mut InMemDicomObject, tag, vr, v: PrimitiveValue| {
        obj.put(DataElement::new(tag, vr, v))
    };
    put(
        &mut obj,
        tags::SOP_CLASS_UID,
        VR::UI,
        PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.1"),
    );
    put(
        &mut obj,
        tags::SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from("1.2.3.4"),
    );
    put(&mut obj, tags::MODALITY, VR::CS, PrimitiveValue::from("CR"));
    put(&mut obj, tags::ROWS, VR::US, PrimitiveValue::from(rows));
    put(&mut obj, tags::COLUMNS, VR::US, PrimitiveValue::from(cols));
    put(
        &mut obj,
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(1u16),
    );
    put(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from(photometric),
    );
    put(
        &mut obj,
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(16u16),
    );
    put(
        &mut obj,
        tags::BITS_STORED,
        VR::US,
        PrimitiveValue::from(12u16),
    );
    put(
        &mut obj,
        tags::HIGH_BIT,
        VR::US,
        PrimitiveValue::from(11u16),
    );
    put(
        &mut obj,
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(0u16),
    );
    if let Some((slope, intercept)) = rescale {
        put(
            &mut obj,
            tags::RESCALE_SLOPE,
            VR::DS,
            PrimitiveValue::from(slope.to_string()),
        );
        put(
            &mut obj,
            tags::RESCALE_INTERCEPT,
            VR::DS,
            PrimitiveValue::from(intercept.to_string()),
        );
    }
    if let Some((c, w)) = window {
        put(
            &mut obj,
            tags::WINDOW_CENTER,
            VR::DS,
            PrimitiveValue::from(c.to_string()),
        );
        put(
            &mut obj,
            tags::WINDOW_WIDTH,
            VR::DS,
            PrimitiveValue::from(w.to_string()),
        );
    }
    let raw: Vec<u8> = pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
    put(
        &mut obj,
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::from(raw),
    );
    obj
}

pub(super) fn finish_dicom(obj: InMemDicomObject, ts: &str) -> Result<Vec<u8>> {
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(ts)
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.1")
        .media_storage_sop_instance_uid("1.2.3.4")
        .build()
        .map_err(|e| Error::Dicom(format!("building the file meta table: {e}")))?;
    let file = obj.with_exact_meta(meta);
    let mut out = Vec::new();
    file.write_all(&mut out)
        .map_err(|e| Error::Dicom(format!("writing DICOM: {e}")))?;
    Ok(out)
}
