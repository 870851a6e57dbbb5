//! The wasm API the page's Web Worker calls: open a device (WebGPU, or the CPU backend when
//! the browser has none), load a checkpoint from bytes, decode an image, restore it step by step
//! (yielding to the worker's event loop between steps so progress is posted and Cancel is
//! heard), and encode the result as PNG.

use std::cell::RefCell;
use std::rc::Rc;

use burn::prelude::*;
use wasm_bindgen::prelude::*;

use crate::checkpoint::read_checkpoint;
use crate::config::ModelSpec;
use crate::diffusion::sampler::{SamplerKind, SamplerSettings, SeededNoise};
use crate::io::{self, BitDepth, GrayImage};
use crate::restore::Restorer;

struct Engine {
    device: Device,
    restorer: Option<Rc<Restorer>>,
}

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

fn js_err(e: impl std::fmt::Display) -> JsValue {
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
    if prefer_gpu {
        match Device::wgpu_options().init_with_setup_async().await {
            Ok((device, setup)) => {
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
        (
            crate::device::cpu(),
            "CPU (burn-ndarray in wasm)".to_string(),
            "cpu",
        )
    });
    let desc =
        serde_json::json!({ "backend": backend, "adapter": adapter, "fallback_reason": reason });
    ENGINE.with(|e| {
        *e.borrow_mut() = Some(Engine {
            device,
            restorer: None,
        })
    });
    Ok(desc.to_string())
}

/// Loads a checkpoint (`.pt`, `.pth`, `.safetensors`) with an optional config JSON. Returns
/// `{family, parameters, timesteps}` as JSON.
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
        });
        engine.restorer = Some(Rc::new(restorer));
        Ok(desc.to_string())
    })
}

/// A decoded grey image handed to JavaScript.
#[wasm_bindgen(getter_with_clone)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    /// Row-major values in [0, 1].
    pub data: Vec<f32>,
}

/// Decodes PNG / JPEG / TIFF / DICOM bytes to grey [0, 1].
#[wasm_bindgen]
pub fn decode_image(bytes: &[u8]) -> Result<Decoded, JsValue> {
    let img = io::decode(bytes).map_err(js_err)?;
    Ok(Decoded {
        width: img.width as u32,
        height: img.height as u32,
        data: img.data,
    })
}

/// Encodes grey [0, 1] values as an 8- or 16-bit PNG.
#[wasm_bindgen]
pub fn encode_png(data: Vec<f32>, width: u32, height: u32, bits: u8) -> Result<Vec<u8>, JsValue> {
    let depth = if bits == 8 {
        BitDepth::Eight
    } else {
        BitDepth::Sixteen
    };
    io::encode_png(
        &GrayImage {
            width: width as usize,
            height: height as usize,
            data,
        },
        depth,
    )
    .map_err(js_err)
}

/// Resolves after the worker's event loop has run once (messages such as Cancel get handled).
async fn yield_now() {
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

/// Restores an image. `on_step(step, total, preview)` is called after every step (`preview` is
/// a Float32Array of the current estimate every `preview_every` steps, else `undefined`); it
/// returns `false` to cancel. Resolves to the restored values (row-major, [0, 1]).
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub async fn restore(
    data: Vec<f32>,
    width: u32,
    height: u32,
    sampler: String,
    steps: u32,
    eta: f64,
    seed: f64,
    preview_every: u32,
    on_step: js_sys::Function,
) -> Result<Vec<f32>, JsValue> {
    let (restorer, device) = with_engine(|e| {
        let r = e
            .restorer
            .clone()
            .ok_or_else(|| js_err("no model is loaded"))?;
        Ok((r, e.device.clone()))
    })?;
    let kind: SamplerKind = sampler.parse().map_err(js_err)?;
    let t_total = restorer.schedule.len();
    if steps == 0 || steps as usize > t_total {
        return Err(js_err(format!(
            "steps must be between 1 and T = {t_total}, got {steps}"
        )));
    }
    let settings = SamplerSettings {
        kind,
        steps: steps as usize,
        eta,
        clip_denoised: true,
    };
    let image = GrayImage {
        width: width as usize,
        height: height as usize,
        data,
    };
    let mut noise = SeededNoise::new(seed as u64);
    let mut run = restorer
        .begin(&image, &settings, &mut noise, &device)
        .map_err(js_err)?;
    while !run.is_done() {
        let info = run.step(&mut noise);
        let preview =
            if preview_every > 0 && info.step % preview_every as usize == 0 && !run.is_done() {
                let values = run
                    .preview()
                    .into_data_async()
                    .await
                    .map_err(|e| js_err(format!("{e:?}")))?;
                let values: Vec<f32> = values
                    .try_into_vec_as::<f32>()
                    .map_err(|e| js_err(format!("{e:?}")))?;
                JsValue::from(js_sys::Float32Array::from(values.as_slice()))
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
    let out = run
        .finish()
        .into_data_async()
        .await
        .map_err(|e| js_err(format!("reading the result failed: {e:?}")))?;
    out.try_into_vec_as::<f32>()
        .map_err(|e| js_err(format!("{e:?}")))
}
