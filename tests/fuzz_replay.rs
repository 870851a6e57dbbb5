//! Replays every saved fuzz finding (`tests/fuzz-regressions/<target>/<file>`) through the same
//! check its libFuzzer target runs (`fuzz/checks.rs`), on stable Rust: a crash, a broken promise
//! or an input that takes too long comes back as a failure here. New findings are added by
//! `scripts/fuzz.sh`; hand-made hostile files sit beside them.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts live heap bytes and their peak, so that an input which makes a reader allocate
/// gigabytes fails here as it does under libFuzzer's memory limit (without ASan, zero-filled
/// gigabytes are cheap and would pass unseen).
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Most heap one saved input may make a reader hold at once (libFuzzer ran with 2 GiB RSS and
/// 1 GiB per allocation; the inputs are at most 64 KiB).
const HEAP: usize = 768 << 20;

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions")
}

/// A finding must come back as an answer within this time (a release build on a loaded 2-core
/// machine; libFuzzer's own timeout was 10 s on an instrumented build).
const SLOW: Duration = Duration::from_secs(20);

#[test]
fn every_saved_fuzz_input_is_answered_without_a_crash() {
    let mut replayed = 0;
    let mut dirs: Vec<_> = std::fs::read_dir(regressions())
        .expect("tests/fuzz-regressions exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let check = checks::TARGETS
            .iter()
            .find(|(t, _)| *t == name)
            .unwrap_or_else(|| panic!("tests/fuzz-regressions/{name}: no fuzz target of that name"))
            .1;
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let t = Instant::now();
            PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
            let before = LIVE.load(Ordering::Relaxed);
            check(&data);
            let held = PEAK.load(Ordering::Relaxed) - before;
            assert!(
                held < HEAP,
                "{}: held {} MiB at once",
                file.display(),
                held >> 20
            );
            assert!(
                t.elapsed() < SLOW,
                "{}: {:.1} s to answer",
                file.display(),
                t.elapsed().as_secs_f64()
            );
            replayed += 1;
        }
    }
    println!("replayed {replayed} saved fuzz inputs");
    assert!(replayed > 0, "tests/fuzz-regressions holds no inputs");
}

/// Writes the seed corpora of the fuzz targets into `$DXR_FUZZ_SEEDS/<target>/`: small valid
/// files of every format each reader takes (the `.pt` seeds, made by PyTorch, are committed
/// under `fuzz/seeds/`).
#[test]
#[ignore = "writes the fuzz seed corpora into $DXR_FUZZ_SEEDS; run by scripts/fuzz.sh"]
fn write_fuzz_seeds() {
    use dxr::io::dicom::{DicomWriteOptions, write_u16};
    use dxr::io::{BitDepth, GrayImage, encode_png};
    let out = PathBuf::from(std::env::var("DXR_FUZZ_SEEDS").expect("DXR_FUZZ_SEEDS is set"));
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");

    // images: PNG 8 and 16 bits, JPEG, TIFF, DICOM
    let img = GrayImage::from_fn(12, 9, |x, y| ((x * 7 + y * 3) % 11) as f32 / 10.0);
    put(
        "image",
        "g8.png",
        &encode_png(&img, BitDepth::Eight).unwrap(),
    );
    put(
        "image",
        "g16.png",
        &encode_png(&img, BitDepth::Sixteen).unwrap(),
    );
    let luma = image::GrayImage::from_fn(12, 9, |x, y| image::Luma([(x * 20 + y * 5) as u8]));
    for (name, format) in [
        ("g.jpg", image::ImageFormat::Jpeg),
        ("g.tif", image::ImageFormat::Tiff),
    ] {
        let mut buf = std::io::Cursor::new(Vec::new());
        luma.write_to(&mut buf, format).unwrap();
        put("image", name, buf.get_ref());
    }
    let pixels: Vec<u16> = (0..12 * 9).map(|i| (i * 37 % 4096) as u16).collect();
    let cr = DicomWriteOptions {
        window: Some((2048.0, 4096.0)),
        pixel_spacing: Some([0.2, 0.2]),
        ..Default::default()
    };
    let radiograph = write_u16(9, 12, &pixels, "MONOCHROME2", &cr).unwrap();
    put("image", "cr.dcm", &radiograph);
    put("dicom", "cr.dcm", &radiograph);
    let ct = DicomWriteOptions {
        modality: Some("CT".into()),
        rescale: Some((1.0, -1024.0)),
        position: Some([-100.0, -100.0, 12.5]),
        orientation: Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
        pixel_spacing: Some([0.7, 0.7]),
        signed: true,
        ..Default::default()
    };
    put(
        "dicom",
        "ct-slice.dcm",
        &write_u16(9, 12, &pixels, "MONOCHROME2", &ct).unwrap(),
    );

    // NIfTI, plain and gzip
    let mut affine = [[0.0; 4]; 4];
    for (k, s) in [0.7, 0.7, 2.5, 1.0].into_iter().enumerate() {
        affine[k][k] = s;
    }
    let vol = dxr::drr::Volume::new(
        [6, 5, 4],
        (0..120).map(|i| i as f32 * 10.0 - 1000.0).collect(),
        affine,
    )
    .unwrap();
    let nii = dxr::drr::nifti::nifti_bytes(&vol);
    put("nifti", "ct.nii", &nii);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &nii).unwrap();
    put("nifti", "ct.nii.gz", &gz.finish().unwrap());

    // JSON: every fixture config, our own spec, a view label, nodule spots
    let mut configs = Vec::new();
    for family in ["cheff", "sr3"] {
        for case in std::fs::read_dir(fixtures.join(family)).unwrap() {
            let path = case.unwrap().path().join("config.json");
            if let Ok(text) = std::fs::read_to_string(&path) {
                configs.push(text);
            }
        }
    }
    let tiny = r#"{"model": {"dim": 4, "out_dim": 1, "dim_mults": [1], "channels": 2,
        "block_groups": 2, "num_attention_layer": 1},
        "schedule": {"name": "linear", "timesteps": 10, "kwargs": {}}}"#;
    let spec = dxr::ModelSpec::from_json(tiny).unwrap();
    configs.push(spec.to_json());
    for (i, text) in configs.iter().enumerate() {
        put(
            "json",
            &format!("config-{i}.json"),
            &[b"\0", text.as_bytes()].concat(),
        );
    }
    let spots = r#"{"width": 256, "height": 256, "nodules": [{"centre_px": [100.5, 80],
        "radius_px": 6, "bbox_px": [94.5, 74, 106.5, 86], "contrast_hu": 60}]}"#;
    put("json", "spots.json", &[b"\x02", spots.as_bytes()].concat());
    let label = dxr::drr::dataset::ViewLabel {
        image: "png16/000000.png".into(),
        image_8bit: "png8/000000.png".into(),
        clean_image: Some("clean/000000.png".into()),
        raw: None,
        lungs: None,
        width: 256,
        height: 256,
        geometry: Default::default(),
        pose: Default::default(),
        window: [0.5, 6.0],
        nodules: Vec::new(),
    };
    let text = serde_json::to_string(&label).unwrap();
    put("json", "label.json", &[b"\x01", text.as_bytes()].concat());

    // checkpoints: a tiny network in safetensors (f32, f16) and the fixtures' `.pt`/`.pth`
    // seeds come from fuzz/seeds; load_model gets the config-less and the config form
    let device = dxr::device::cpu();
    let net = spec.network.init(&device).unwrap();
    for (name, dtype) in [
        ("tiny-f32.safetensors", dxr::checkpoint::SaveDType::F32),
        ("tiny-f16.safetensors", dxr::checkpoint::SaveDType::F16),
    ] {
        let bytes = dxr::checkpoint::to_safetensors_bytes(&net, &spec, dtype).unwrap();
        put("checkpoint", name, &bytes);
        put("load_model", name, &[&[0u8, 0][..], &bytes].concat());
        let config = spec.to_json();
        let len = (config.len() as u16).to_le_bytes();
        put(
            "load_model",
            &format!("with-config-{name}"),
            &[&len[..], config.as_bytes(), &bytes].concat(),
        );
    }
    println!("seeds written to {}", out.display());
}
