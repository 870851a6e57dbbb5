//! The wasm API the page's Web Worker calls: open a device (WebGPU, or the CPU backend when
//! the browser has none), load a checkpoint from bytes, decode an image, restore it step by step
//! (yielding to the worker's event loop between steps so progress is posted and Cancel is
//! heard), and encode the result as PNG. [`studio`] is the DRR studio's half: CT → DRR; `libc`
//! the C functions the JPEG 2000 decoder calls by name.

use std::cell::RefCell;
use std::rc::Rc;

use burn::prelude::*;
use wasm_bindgen::prelude::*;

use crate::checkpoint::read_checkpoint;
use crate::device::MemoryBudget;
use crate::diffusion::sampler::{SamplerSettings, SeededNoise, seed_from_f64};
use crate::io::InputScale;
use crate::io::{self, BitDepth, GrayImage};
use crate::restore::{OutputScale, RestoreOptions, Restorer};
use crate::spec::ModelSpec;

mod libc;
pub mod studio;

struct Engine {
    device: Device,
    /// Memory one network call may use here (WebGPU: from the adapter's limits).
    budget: MemoryBudget,
    restorer: Option<Rc<Restorer>>,
}

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

pub(crate) fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsValue::from(js_sys::Error::new(&e.to_string()))
}

fn with_engine<T>(f: impl FnOnce(&mut Engine) -> Result<T, JsValue>) -> Result<T, JsValue> {
    ENGINE.with(|e| match e.borrow_mut().as_mut() {
        Some(engine) => f(engine),
        None => Err(js_err("the engine is not initialised: call init() first")),
    })
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// Opens the device: WebGPU when `prefer_gpu` and the browser offers an adapter, else the CPU
/// backend. Returns a JSON description `{backend, adapter, fallback_reason?}`.
#[wasm_bindgen]
pub async fn init(prefer_gpu: bool) -> Result<String, JsValue> {
    let mut reason = None;
    let mut opened = None;
    let mut budget = None;
    if prefer_gpu {
        match Device::wgpu_options().init_with_setup_async().await {
            Ok((device, setup)) => {
                let limits = setup.device.limits();
                budget = Some(MemoryBudget::wgpu(
                    limits.max_storage_buffer_binding_size as u64,
                    limits.max_buffer_size,
                ));
                let info = setup.adapter.get_info();
                let name = if info.name.is_empty() {
                    "name withheld by the browser".to_string()
                } else {
                    info.name
                };
                opened = Some((device, format!("WebGPU adapter ({name})"), "webgpu"));
            }
            Err(e) => reason = Some(format!("WebGPU unavailable: {e}")),
        }
    } else {
        reason = Some("WebGPU not requested".to_string());
    }
    let (device, adapter, backend) = opened.unwrap_or_else(|| {
        // burn's flex (GEMM convolutions, fused attention; one thread in wasm): faster than
        // ndarray's direct convolution loops
        (
            Device::flex(),
            "CPU (burn-flex in wasm, one thread)".to_string(),
            "cpu",
        )
    });
    let budget = budget.unwrap_or_else(MemoryBudget::cpu);
    let desc = serde_json::json!({
        "backend": backend, "adapter": adapter, "fallback_reason": reason,
        "budget": budget.to_string(),
    });
    ENGINE.with(|e| {
        *e.borrow_mut() = Some(Engine {
            device,
            budget,
            restorer: None,
        })
    });
    Ok(desc.to_string())
}

/// Loads a checkpoint (`.pt`, `.pth`, `.safetensors`) with an optional config JSON. Returns
/// `{family, parameters, timesteps, scale, steps, tone}` as JSON (`tone`: `{points, page_default}`
/// or null).
#[wasm_bindgen]
pub fn load_model(bytes: &[u8], config_json: Option<String>) -> Result<String, JsValue> {
    let spec = config_json
        .map(|c| ModelSpec::from_json(&c))
        .transpose()
        .map_err(js_err)?;
    with_engine(|engine| {
        let ckpt = read_checkpoint(bytes).map_err(js_err)?;
        let model = crate::checkpoint::load(&ckpt, spec, &engine.device).map_err(js_err)?;
        let params = model.network.num_params();
        let restorer = Restorer::new(model).map_err(js_err)?;
        let desc = serde_json::json!({
            "family": restorer.model.spec.family().to_string(),
            "parameters": params,
            "timesteps": restorer.schedule.len(),
            "scale": restorer.model.spec.scale.map(|s| s.to_string()),
            "steps": restorer.model.spec.steps,
            // the page applies it itself (www/tone.js), so the slider never re-runs the network
            "tone": restorer.model.spec.tone,
        });
        engine.restorer = Some(Rc::new(restorer));
        Ok(desc.to_string())
    })
}

/// The sampler defaults (the same the CLI shows), as JSON.
#[wasm_bindgen]
pub fn sampler_defaults() -> String {
    let d = SamplerSettings::new();
    serde_json::json!({ "sampler": d.kind, "steps": d.steps, "eta": d.eta }).to_string()
}

/// A decoded grey image handed to JavaScript.
#[wasm_bindgen(getter_with_clone)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    /// Row-major values in [0, 1].
    pub data: Vec<f32>,
    /// Millimetres per pixel when the file says it (DICOM spacing), else `undefined`.
    pub pixel_mm: Option<f64>,
    /// Frames in the file (a multi-frame DICOM: the first is decoded), else 1.
    pub frames: u32,
    /// The file's windows as JSON `[{label, level, width}]` in the image's [0, 1] units: the
    /// viewer's presets (display only).
    pub presets: String,
    /// Why the image is shown but not restored (a colour DICOM image), else `undefined`.
    pub refused: Option<String>,
}

/// Decodes PNG / JPEG / TIFF / DICOM bytes to grey [0, 1], refusing files over the size limit.
#[wasm_bindgen]
pub fn decode_image(bytes: &[u8]) -> Result<Decoded, JsValue> {
    if bytes.len() as u64 > io::MAX_FILE_BYTES {
        return Err(js_err(format!(
            "the file has {} bytes, over the {} MiB limit",
            bytes.len(),
            io::MAX_FILE_BYTES >> 20
        )));
    }
    let f = io::decode_frame_shown(bytes, 0).map_err(js_err)?;
    Ok(Decoded {
        width: f.image.width as u32,
        height: f.image.height as u32,
        data: f.image.data,
        pixel_mm: f.scale.pixel_mm,
        frames: f.frames,
        presets: serde_json::to_string(&f.presets).map_err(js_err)?,
        refused: f
            .colour
            .map(|why| format!("{why}: it is shown, never restored")),
    })
}

/// What the page asks of one restoration (camelCase JSON).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RestoreRequest {
    sampler: String,
    steps: usize,
    eta: f64,
    seed: f64,
    #[serde(default)]
    preview_every: usize,
    #[serde(default)]
    output_scale: OutputScale,
    #[serde(default)]
    keep_pixels: bool,
    #[serde(default)]
    pixel_mm: Option<f64>,
}

impl RestoreRequest {
    fn parse(json: &str, t_total: usize) -> Result<(Self, SamplerSettings, u64), JsValue> {
        let req: Self = serde_json::from_str(json)
            .map_err(|e| js_err(format!("invalid restore settings: {e}")))?;
        let settings = SamplerSettings::named(&req.sampler, req.steps, req.eta).map_err(js_err)?;
        settings.validate(t_total).map_err(js_err)?;
        let seed = seed_from_f64(req.seed).map_err(js_err)?;
        Ok((req, settings, seed))
    }

    fn options(&self, budget: MemoryBudget) -> RestoreOptions {
        RestoreOptions {
            output: self.output_scale,
            input_scale: self
                .pixel_mm
                .map(|mm| InputScale::known(mm, "the file"))
                .unwrap_or_default(),
            to_model_scale: !self.keep_pixels,
            budget,
            tile: None,
        }
    }
}

fn image_from(data: Vec<f32>, width: u32, height: u32) -> Result<GrayImage, JsValue> {
    let (w, h) = (width as usize, height as usize);
    if data.len() != w * h {
        return Err(js_err(format!(
            "the image buffer holds {} values, but {w}×{h} needs {}",
            data.len(),
            w * h
        )));
    }
    Ok(GrayImage {
        width: w,
        height: h,
        data,
    })
}

/// The plan of a restoration without running it: sizes, scale, tiles (JSON), so the page can
/// say at which scale it will restore.
#[wasm_bindgen]
pub fn plan_restore(
    data: Vec<f32>,
    width: u32,
    height: u32,
    settings_json: String,
) -> Result<String, JsValue> {
    let image = image_from(data, width, height)?;
    let (restorer, budget) = with_engine(|e| {
        let r = e
            .restorer
            .clone()
            .ok_or_else(|| js_err("no model is loaded"))?;
        Ok((r, e.budget))
    })?;
    let (req, _, _) = RestoreRequest::parse(&settings_json, restorer.schedule.len())?;
    let plan = restorer
        .plan(&image, &req.options(budget))
        .map_err(js_err)?;
    Ok(plan.to_json().to_string())
}

/// Encodes grey [0, 1] values as an 8- or 16-bit PNG.
#[wasm_bindgen]
pub fn encode_png(data: Vec<f32>, width: u32, height: u32, bits: u8) -> Result<Vec<u8>, JsValue> {
    let depth = match bits {
        8 => BitDepth::Eight,
        16 => BitDepth::Sixteen,
        b => return Err(js_err(format!("PNG bit depth must be 8 or 16, got {b}"))),
    };
    io::encode_png(&image_from(data, width, height)?, depth).map_err(js_err)
}

/// Resolves after the worker's event loop has run once (messages such as Cancel get handled).
pub(crate) async fn yield_now() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let global = js_sys::global();
        let set_timeout = js_sys::Reflect::get(&global, &"setTimeout".into())
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        match set_timeout {
            Some(f) => {
                let _ = f.call2(&global, &resolve, &JsValue::from(0));
            }
            None => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Reads a tensor back without blocking the worker.
async fn read_back(x: Tensor<4>) -> Result<GrayImage, JsValue> {
    let [_, _, h, w] = x.dims();
    let values = x
        .into_data_async()
        .await
        .map_err(|e| js_err(format!("reading from the device failed: {e:?}")))?;
    let data: Vec<f32> = values
        .try_into_vec_as::<f32>()
        .map_err(|e| js_err(format!("{e:?}")))?;
    Ok(GrayImage {
        width: w,
        height: h,
        data,
    })
}

/// Restores an image. `settings_json` holds `{sampler, steps, eta, seed, previewEvery,
/// outputScale ("input" | "model"), keepPixels, pixelMm}`. `on_step(step, total, preview)` is
/// called after the device has *finished* every step (a one-value read-back waits for it), so
/// progress and Cancel follow the work done; `preview` is a Float32Array of the current estimate
/// (at the output's size) every `previewEvery` steps, else `undefined`; it returns `false` to
/// cancel. Resolves to `{data, width, height, plan}`.
#[wasm_bindgen]
pub async fn restore(
    data: Vec<f32>,
    width: u32,
    height: u32,
    settings_json: String,
    on_step: js_sys::Function,
) -> Result<JsValue, JsValue> {
    let image = image_from(data, width, height)?;
    let (restorer, device, budget) = with_engine(|e| {
        let r = e
            .restorer
            .clone()
            .ok_or_else(|| js_err("no model is loaded"))?;
        Ok((r, e.device.clone(), e.budget))
    })?;
    let (req, settings, seed) = RestoreRequest::parse(&settings_json, restorer.schedule.len())?;
    let plan = restorer
        .plan(&image, &req.options(budget))
        .map_err(js_err)?;
    let mut noise = SeededNoise::new(seed);
    let mut run = restorer
        .begin(&plan, &settings, &mut noise, &device)
        .map_err(js_err)?;
    while !run.is_done() {
        let info = run.step(&mut noise);
        // wait for the device: the step counts once it is done
        read_back(run.sync_value()).await?;
        let preview =
            if req.preview_every > 0 && info.step % req.preview_every == 0 && !run.is_done() {
                let current = read_back(run.preview()).await?;
                let shown = plan.compose(&image, &current);
                JsValue::from(js_sys::Float32Array::from(shown.data.as_slice()))
            } else {
                JsValue::UNDEFINED
            };
        // Let the worker handle pending messages (Cancel) before asking whether to go on.
        yield_now().await;
        let keep_going = on_step.call3(
            &JsValue::NULL,
            &JsValue::from(info.step as u32),
            &JsValue::from(info.total as u32),
            &preview,
        )?;
        if keep_going.is_falsy() {
            return Err(js_err("cancelled"));
        }
    }
    let restored = read_back(run.finish()).await?;
    let out = plan.compose(&image, &restored);
    let result = js_sys::Object::new();
    let set = |k: &str, v: JsValue| js_sys::Reflect::set(&result, &JsValue::from(k), &v);
    set(
        "data",
        js_sys::Float32Array::from(out.data.as_slice()).into(),
    )?;
    set("width", JsValue::from(out.width as u32))?;
    set("height", JsValue::from(out.height as u32))?;
    set("plan", JsValue::from(plan.to_json().to_string()))?;
    Ok(result.into())
}
