//! Compressed DICOM as archives send it: every compressed file of pydicom-data 1.0.0 that has an
//! uncompressed twin of the same stream (`scripts/fetch-data.sh dicom`, which `make test` runs)
//! decodes to the twin's pixels, lossless and lossy alike (the twin holds the decoded stream);
//! a truncated JPEG 2000 stream is refused by name. Twins are found by name, so files added to
//! data/dicom/ are checked too. A CT series in JPEG 2000 and JPEG-LS reads and renders like its
//! uncompressed twin.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::Scratch;
use common::phantom::torso_on;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dxr::drr::dicom_series::{series_bytes, series_from_files};

/// The uncompressed twin of `stem` among `have`: `X_J2KR` → `X_UNCR`, `X_J2KI` → `X_UNCI`,
/// else the longest `_`-prefix of the stem that is a file (`emri_small_RLE` → `emri_small`).
fn twin_of(stem: &str, have: &BTreeMap<String, Vec<u8>>) -> Option<String> {
    for (from, to) in [("_J2KR", "_UNCR"), ("_J2KI", "_UNCI")] {
        if let Some(base) = stem.strip_suffix(from) {
            let t = format!("{base}{to}");
            return have.contains_key(&t).then_some(t);
        }
    }
    let mut cut = stem;
    while let Some(i) = cut.rfind('_') {
        cut = &cut[..i];
        if have.contains_key(cut) {
            return Some(cut.to_string());
        }
    }
    None
}

fn transfer_syntax(bytes: &[u8]) -> String {
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
        .from_reader(std::io::Cursor::new(bytes))
        .unwrap();
    obj.meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string()
}

#[test]
fn compressed_files_decode_to_their_uncompressed_twins() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/dicom");
    let files: BTreeMap<String, Vec<u8>> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "dcm"))
                .map(|e| {
                    let p = e.path();
                    let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
                    (stem, std::fs::read(&p).unwrap())
                })
                .collect()
        })
        .unwrap_or_default();
    if files.is_empty() {
        assert!(
            std::env::var_os("DXR_REQUIRE_DATA").is_none(),
            "DXR_REQUIRE_DATA is set but {} is empty: run scripts/fetch-data.sh dicom",
            dir.display()
        );
        println!("data/dicom not fetched (scripts/fetch-data.sh dicom): this test did not run");
        return;
    }
    let mut syntaxes: BTreeMap<String, usize> = BTreeMap::new();
    for (stem, bytes) in &files {
        if stem.ends_with("_J2KR") {
            // the stream cut short (a download that stopped): refused by name, never half an
            // image (pydicom-data's `*_too_short` file is short in its last frame only, and we
            // decode the first)
            for keep in [bytes.len() * 7 / 10, bytes.len() - 64] {
                let e = dxr::io::decode(&bytes[..keep]).unwrap_err().to_string();
                assert!(
                    e.contains("truncated") || e.contains("declares") || e.contains("damaged"),
                    "{stem} cut to {keep} bytes: {e}"
                );
            }
        }
        let Some(twin) = twin_of(stem, &files) else {
            continue;
        };
        let ts = transfer_syntax(bytes);
        check_every_frame(stem, bytes, &twin, &files[&twin]);
        let t0 = std::time::Instant::now();
        let got = dxr::io::decode(bytes).map_err(|e| e.to_string());
        let secs = t0.elapsed().as_secs_f64();
        let want = dxr::io::decode(&files[&twin]).map_err(|e| e.to_string());
        let got = got.unwrap_or_else(|e| panic!("{stem} ({ts}): {e}"));
        let want = want.unwrap_or_else(|e| panic!("{twin}: {e}"));
        assert_eq!(
            (got.width, got.height),
            (want.width, want.height),
            "{stem} vs {twin}"
        );
        let worst = got
            .data
            .iter()
            .zip(&want.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst == 0.0, "{stem} ({ts}) differs from {twin} by {worst}");
        println!(
            "{stem} ({ts}) = {twin}: {}×{} decoded in {secs:.3} s",
            got.width, got.height
        );
        *syntaxes.entry(ts).or_default() += 1;
    }
    // each compressed family pydicom-data ships was seen
    for (uid, what) in [
        ("1.2.840.10008.1.2.4.90", "JPEG 2000 lossless"),
        ("1.2.840.10008.1.2.4.91", "JPEG 2000"),
        ("1.2.840.10008.1.2.4.80", "JPEG-LS lossless"),
        ("1.2.840.10008.1.2.5", "RLE"),
    ] {
        assert!(
            syntaxes.contains_key(uid),
            "no {what} ({uid}) file with a twin in {}: {syntaxes:?}",
            dir.display()
        );
    }
}

/// Every frame of a multi-frame file equals its twin's (pydicom-data's `*_too_short` file, short
/// by 8 bytes in its last frame, included: the bytes cut are after the image data).
fn check_every_frame(stem: &str, bytes: &[u8], twin: &str, twin_bytes: &[u8]) {
    let frames = dxr::io::dicom::decode_frame(bytes, 0).map_or(1, |f| f.frames);
    for k in 1..frames {
        let got = dxr::io::dicom::decode_frame(bytes, k)
            .unwrap_or_else(|e| panic!("{stem} frame {k}: {e}"));
        let want = dxr::io::dicom::decode_frame(twin_bytes, k).unwrap();
        assert!(
            got.image == want.image,
            "{stem} frame {k} differs from {twin}'s"
        );
    }
}

#[test]
fn a_multi_frame_file_reads_any_frame_and_says_how_many() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/dicom/emri_small.dcm");
    let Ok(bytes) = std::fs::read(&path) else {
        assert!(
            std::env::var_os("DXR_REQUIRE_DATA").is_none(),
            "DXR_REQUIRE_DATA is set but {} is missing: run scripts/fetch-data.sh dicom",
            path.display()
        );
        println!("data/dicom not fetched: this test did not run");
        return;
    };
    let first = dxr::io::dicom::decode_frame(&bytes, 0).unwrap();
    assert_eq!(first.frames, 10);
    assert!(
        first.image == dxr::io::decode(&bytes).unwrap(),
        "decode reads the first frame"
    );
    let third = dxr::io::dicom::decode_frame(&bytes, 2).unwrap();
    assert!(third.image != first.image, "frame 3 is another image");
    let e = dxr::io::dicom::decode_frame(&bytes, 10)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("frame 11 asked, the file has 10 frame(s)"),
        "{e}"
    );
    // the CLI restores the frame asked for and says how many there are
    let out = std::env::temp_dir().join(format!("dxr-frames-{}", std::process::id()));
    let run = |frame: &str| {
        common::cli::command()
            .args([
                "restore",
                &path.display().to_string(),
                "-o",
                &out.display().to_string(),
            ])
            .args(["--frame", frame, "--steps", "1"])
            .output()
            .unwrap()
    };
    let r = run("3");
    let said = String::from_utf8_lossy(&r.stdout);
    assert!(
        r.status.success() && said.contains("frame 3 of 10"),
        "{said}{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let r = run("11");
    let said = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && said.contains("frame 11 asked, the file has 10 frame(s)"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// `bytes` (a DICOM file) with its pixel data as one JPEG 2000 lossless fragment made by
/// OpenJPEG's `opj_compress` (we only decode JPEG 2000; the encoder is the reference one).
fn to_jpeg2000(bytes: &[u8], scratch: &Scratch, name: &str) -> Vec<u8> {
    use dicom_core::value::PixelFragmentSequence;
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::tags;
    let mut obj = dicom_object::OpenFileOptions::new()
        .from_reader(std::io::Cursor::new(bytes))
        .unwrap();
    let int = |tag| obj.element(tag).unwrap().to_int::<u32>().unwrap();
    let (rows, cols, stored) = (int(tags::ROWS), int(tags::COLUMNS), int(tags::BITS_STORED));
    let raw = obj
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .into_owned();
    let (input, output) = (
        scratch.write(&format!("{name}.rawl"), &raw),
        scratch.path(&format!("{name}.j2k")),
    );
    let out = Command::new("opj_compress")
        .args([
            "-i",
            &input.display().to_string(),
            "-o",
            &output.display().to_string(),
        ])
        .args(["-F", &format!("{cols},{rows},1,{stored},u")])
        .output()
        .expect("opj_compress runs");
    assert!(
        out.status.success(),
        "opj_compress: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut j2k = std::fs::read(&output).unwrap();
    if j2k.len() % 2 == 1 {
        j2k.push(0);
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PixelFragmentSequence::new(Vec::<u32>::new(), vec![j2k]),
    ));
    obj.meta_mut().set_transfer_syntax(
        TransferSyntaxRegistry
            .get("1.2.840.10008.1.2.4.90")
            .unwrap(),
    );
    let mut written = Vec::new();
    obj.write_all(&mut written).unwrap();
    written
}

/// `bytes` (a DICOM file) transcoded by dicom-rs (its CharLS encoder for JPEG-LS).
fn transcoded(bytes: &[u8], uid: &str) -> Vec<u8> {
    use dicom_pixeldata::Transcode;
    let mut obj = dicom_object::OpenFileOptions::new()
        .from_reader(std::io::Cursor::new(bytes))
        .unwrap();
    obj.transcode(TransferSyntaxRegistry.get(uid).unwrap())
        .unwrap();
    let mut written = Vec::new();
    obj.write_all(&mut written).unwrap();
    written
}

#[test]
fn compressed_ct_series_read_and_render_like_their_uncompressed_twin() {
    let dir = Scratch::new("dicom-series");
    let (ct, _) = torso_on([48, 40, 30], [4.0, 4.0, 5.0], false);
    let plain = series_bytes(&ct).unwrap();
    let want = series_from_files(&plain).unwrap();
    let mut variants = vec![(
        "1.2.840.10008.1.2.4.80",
        plain
            .iter()
            .map(|(n, b)| (n.clone(), transcoded(b, "1.2.840.10008.1.2.4.80")))
            .collect::<Vec<_>>(),
    )];
    if Command::new("opj_compress").arg("-h").output().is_ok() {
        let j2k = plain
            .iter()
            .map(|(n, b)| (n.clone(), to_jpeg2000(b, &dir, n)))
            .collect();
        variants.push(("1.2.840.10008.1.2.4.90", j2k));
    } else {
        assert!(
            std::env::var_os("DXR_REQUIRE_DATA").is_none(),
            "DXR_REQUIRE_DATA is set but opj_compress is missing: run scripts/setup.sh"
        );
        eprintln!("skipped the JPEG 2000 series: opj_compress is missing (scripts/setup.sh)");
    }
    let render = |folder: &Path| {
        let out = folder.with_extension("drr");
        let run = common::cli::command()
            .args([
                "drr",
                "--ct",
                &folder.display().to_string(),
                "--out",
                &out.display().to_string(),
            ])
            .args([
                "--size",
                "64",
                "--detector-mm",
                "260",
                "--count",
                "1",
                "--seed",
                "3",
                "--device",
                "cpu",
            ])
            .output()
            .unwrap();
        common::cli::assert_ok(&run);
        std::fs::read(out.join("png16/00000.png")).expect("the DRR")
    };
    let write_series = |name: &str, files: &[(String, Vec<u8>)]| {
        std::fs::create_dir_all(dir.path(name)).unwrap();
        for (n, b) in files {
            dir.write(&format!("{name}/{n}"), b);
        }
        dir.path(name)
    };
    let want_drr = render(&write_series("plain", &plain));
    for (uid, files) in variants {
        assert_eq!(transfer_syntax(&files[0].1), uid);
        let got = series_from_files(&files).unwrap();
        assert_eq!(got.dims, want.dims, "{uid}");
        assert_eq!(got.affine, want.affine, "{uid}");
        assert!(
            got.data == want.data,
            "{uid}: the volume differs from the uncompressed series'"
        );
        let name = uid.replace('.', "_");
        assert!(
            render(&write_series(&name, &files)) == want_drr,
            "{uid}: the DRR differs"
        );
    }
}
