//! What each fuzz target does with its input, shared by the libFuzzer targets
//! (`fuzz/fuzz_targets/*.rs`) and the stable replay of `tests/fuzz-regressions/`
//! (`tests/fuzz_replay.rs`), so that a saved finding is replayed through the same code.
//! Each check may reject its input with an error; it panics only on a broken promise (a
//! result that contradicts itself), which is a finding like a crash.

use std::io::Write;

/// Target name → check.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("image", image),
    ("dicom", dicom),
    ("checkpoint", checkpoint),
    ("pickle", pickle),
    ("nifti", nifti),
    ("json", json),
    ("load_model", load_model),
];

/// Image decoding by content, as `dxr restore` and the page's `decode_image` do: PNG (8/16),
/// JPEG, TIFF, DICOM.
pub fn image(data: &[u8]) {
    if let Ok((img, scale)) = dxr::io::decode_with_scale(data) {
        assert_eq!(img.data.len(), img.width * img.height);
        assert!(img.data.iter().all(|v| v.is_finite()));
        if let Some(mm) = scale.pixel_mm {
            assert!(mm.is_finite() && mm > 0.0, "pixel spacing {mm}");
        }
    }
}

/// DICOM: one radiograph (`io::dicom`) and one slice of a CT series (`drr::dicom_series`), alone
/// and as two copies, which reaches the series checks.
pub fn dicom(data: &[u8]) {
    if let Ok((img, spacing)) = dxr::io::dicom::decode_with_spacing(data) {
        assert_eq!(img.data.len(), img.width * img.height);
        // the grayscale pipeline always ends in [0, 1], whatever LUTs a file declares
        assert!(
            img.data.iter().all(|v| (0.0..=1.0).contains(v)),
            "a value outside [0, 1]"
        );
        if let Some((mm, _)) = spacing {
            assert!(mm.is_finite() && mm > 0.0, "pixel spacing {mm}");
        }
    }
    let one = vec![("a.dcm".to_string(), data.to_vec())];
    assert!(dxr::drr::dicom_series::series_from_files(&one).is_err());
    let two = vec![
        ("a.dcm".to_string(), data.to_vec()),
        ("b.dcm".to_string(), data.to_vec()),
    ];
    // two slices at one position are duplicates: never a volume
    assert!(dxr::drr::dicom_series::series_from_files(&two).is_err());
}

/// Checkpoint containers: `.pt` (zip + pickle), `.pth`, `.safetensors` with our spec JSON in
/// its header. What is read must describe tensors whose data matches their shapes.
pub fn checkpoint(data: &[u8]) {
    let Ok(ckpt) = dxr::checkpoint::read_checkpoint(data) else {
        return;
    };
    let _ = ckpt.family();
    let _ = ckpt.stored_spec();
    let _ = ckpt.num_values();
    for (name, t) in &ckpt.tensors {
        if let Ok(v) = t.to_f32(name) {
            assert_eq!(v.len(), t.shape.iter().product::<usize>());
        }
        let _ = t.to_i64(name);
    }
}

/// The pickle inside a `.pt`: the input becomes `archive/data.pkl` of a zip that also holds four
/// 64-byte storages (`archive/data/0` … `3`), so the unpickler itself is what gets fuzzed.
pub fn pickle(data: &[u8]) {
    use zip::write::SimpleFileOptions;
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        z.start_file("archive/data.pkl", opts).unwrap();
        z.write_all(data).unwrap();
        for k in 0..4 {
            z.start_file(format!("archive/data/{k}"), opts).unwrap();
            z.write_all(&[0u8; 64]).unwrap();
        }
        z.finish().unwrap();
    }
    if let Ok(tensors) = dxr::checkpoint::torch::read_torch(buf.get_ref()) {
        for (_, t) in tensors {
            let n = t.shape.iter().product::<usize>();
            assert!(n <= 64, "{n} elements from a 64-byte storage");
        }
    }
}

/// NIfTI-1 CTs, plain or gzip (`.nii`, `.nii.gz`), as `dxr drr` reads them.
pub fn nifti(data: &[u8]) {
    let bytes = if data.starts_with(&[0x1f, 0x8b]) {
        match dxr::drr::nifti::inflate(data) {
            Ok(b) => b,
            Err(_) => return,
        }
    } else {
        data.to_vec()
    };
    if let Ok(vol) = dxr::drr::nifti::parse_nifti(&bytes) {
        assert_eq!(vol.data.len(), vol.dims.iter().product::<usize>());
    }
}

/// The JSON readers: a model config (ours, cheff's, SR3's), a DRR view label, the nodule spots
/// the evaluation reads. The first byte picks the reader.
pub fn json(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(spec) = dxr::ModelSpec::from_json(text) {
                // what is accepted round-trips through our own layout
                let own = spec.to_json();
                let again = dxr::ModelSpec::from_json(&own).expect("our own JSON reads back");
                assert_eq!(again.to_json(), own);
            }
        }
        1 => {
            let _ = dxr::drr::dataset::ViewLabel::from_json(text, "label");
        }
        _ => {
            if let Ok(spots) = dxr::drr::dataset::spots_from_json(text, "label", 256, 256) {
                for s in spots {
                    assert!(s.centre_px.iter().all(|v| v.is_finite()));
                    assert!(s.radius_px.is_finite());
                }
            }
        }
    }
}

/// The page's `load_model` through its native half: an optional config JSON (its length in the
/// first two bytes, little-endian) and a checkpoint, loaded onto the CPU into a restorer.
pub fn load_model(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let n = u16::from_le_bytes([data[0], data[1]]) as usize;
    let rest = &data[2..];
    let (config, ckpt) = rest.split_at(n.min(rest.len()));
    let spec = match std::str::from_utf8(config) {
        Ok("") | Err(_) => None,
        Ok(text) => match dxr::ModelSpec::from_json(text) {
            Ok(s) => Some(s),
            Err(_) => return,
        },
    };
    let device = dxr::device::cpu();
    if let Ok(model) = dxr::checkpoint::load_bytes(ckpt, spec, &device) {
        let _ = dxr::restore::Restorer::new(model);
    }
}
