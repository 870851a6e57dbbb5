//! The DRR studio's wasm API (the worker's half of the page's CT → DRR panel): load a CT from
//! the dropped files, render one view (WebGPU through the same WGSL as `dxr drr --device gpu`,
//! or the CPU traversal), place and remove nodules, and hand out the images and labels of the
//! last render. The work itself is [`crate::drr::studio`], shared with native code.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;

use super::{js_err, yield_now};
use crate::drr::gpu::{AdapterChoice, GpuProjector};
use crate::drr::studio::{Studio, StudioCleanup, StudioRender, StudioSettings, read_ct, read_mask};

struct State {
    studio: Studio,
    /// The projector, opened at the first GPU render (or why it could not be).
    gpu: Option<Result<Rc<GpuProjector>, String>>,
    last: Option<Rc<StudioRender>>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn with_state<T>(f: impl FnOnce(&mut State) -> Result<T, JsValue>) -> Result<T, JsValue> {
    STATE.with(|s| match s.borrow_mut().as_mut() {
        Some(state) => f(state),
        None => Err(js_err("no CT is loaded in the studio")),
    })
}

fn last() -> Result<Rc<StudioRender>, JsValue> {
    with_state(|s| s.last.clone().ok_or_else(|| js_err("nothing rendered yet")))
}

/// Reports a stage and lets the worker's event loop run (Cancel arrives there); `progress`
/// answering `false` cancels.
async fn stage(
    progress: &js_sys::Function,
    name: &str,
    done: u32,
    total: u32,
) -> Result<(), JsValue> {
    let go = progress
        .call3(
            &JsValue::NULL,
            &JsValue::from(name),
            &JsValue::from(done),
            &JsValue::from(total),
        )
        .map(|v| v.as_bool() != Some(false))
        .unwrap_or(true);
    yield_now().await;
    if go { Ok(()) } else { Err(js_err("cancelled")) }
}

/// One `[name, Uint8Array]` from the page, as (name, bytes); `what` names it in the error.
fn file_pair(v: JsValue, what: &str) -> Result<(String, Vec<u8>), JsValue> {
    let pair: js_sys::Array = v
        .dyn_into()
        .map_err(|_| js_err(format!("{what} is [name, bytes]")))?;
    let name = pair.get(0).as_string().unwrap_or_else(|| "unnamed".into());
    Ok((name, js_sys::Uint8Array::new(&pair.get(1)).to_vec()))
}

/// Loads a CT: `files` is an array of `[name, Uint8Array]` (one NIfTI file, or the slices of one
/// DICOM series), `mask` null or one `[name, Uint8Array]` (a label NIfTI on the CT's grid, as
/// `dxr drr --mask` takes), `cleanup` the panel's toggles as JSON. The CT loaded before is
/// dropped first (memory). `progress(stage, done, total)` is called between the stages. Returns
/// `{dims, spacing_mm, crop, gpu_bytes, lung_voxels, lungs}` as JSON.
#[wasm_bindgen]
pub async fn studio_load(
    files: js_sys::Array,
    mask: JsValue,
    cleanup: String,
    progress: js_sys::Function,
) -> Result<String, JsValue> {
    STATE.with(|s| *s.borrow_mut() = None);
    let cleanup: StudioCleanup =
        serde_json::from_str(&cleanup).map_err(|e| js_err(format!("clean-up settings: {e}")))?;
    let mut read = Vec::with_capacity(files.length() as usize);
    for f in files.iter() {
        read.push(file_pair(f, "each CT file")?);
    }
    let mask = if mask.is_null() || mask.is_undefined() {
        None
    } else {
        Some(file_pair(mask, "the lung mask")?)
    };
    stage(&progress, "reading the CT", 1, 3).await?;
    let ct = read_ct(read).map_err(js_err)?;
    let labels = mask
        .map(|(n, b)| read_mask(n, b))
        .transpose()
        .map_err(js_err)?;
    let (dims, spacing) = (ct.dims, ct.spacing());
    stage(&progress, "cleaning it up", 2, 3).await?;
    let studio = Studio::new(ct, labels.as_ref(), cleanup).map_err(js_err)?;
    stage(&progress, "ready", 3, 3).await?;
    let info = serde_json::json!({
        "dims": dims,
        "spacing_mm": spacing,
        "crop": studio.scene.mu.dims,
        "gpu_bytes": studio.scene.mu.data.len() * 4,
        "lung_voxels": studio.lungs.voxels.len(),
        "lungs": if labels.is_some() { "mask" } else { "threshold" },
    });
    STATE.with(|s| {
        *s.borrow_mut() = Some(State {
            studio,
            gpu: None,
            last: None,
        })
    });
    Ok(info.to_string())
}

/// Renders one view with the panel's `settings` (JSON, see [`StudioSettings`]), on WebGPU when
/// `prefer_gpu` and the adapter takes the CT, else on the CPU. Returns `{renderer,
/// fallback_reason, trace_ms, total_ms, width, height, label}` as JSON; the images are read with
/// [`studio_image`] and the others.
#[wasm_bindgen]
pub async fn studio_render(settings: String, prefer_gpu: bool) -> Result<String, JsValue> {
    let t0 = js_sys::Date::now();
    let s = StudioSettings::from_json(&settings).map_err(js_err)?;
    let proj = with_state(|st| st.studio.projection(&s).map_err(js_err))?;
    // 1. the projector, opened once per CT
    let mut reason = None;
    let gpu = if prefer_gpu {
        let cached = with_state(|st| Ok(st.gpu.clone()))?;
        let opened = match cached {
            Some(g) => g,
            None => {
                // the volume is copied out so no borrow is held across the await
                let mu = with_state(|st| Ok(st.studio.scene.mu.clone()))?;
                let g = GpuProjector::new_async(&mu, AdapterChoice::AnyAdapter)
                    .await
                    .map(Rc::new)
                    .map_err(|e| e.to_string());
                drop(mu);
                with_state(|st| {
                    st.gpu = Some(g.clone());
                    Ok(())
                })?;
                g
            }
        };
        match opened {
            Ok(g) => Some(g),
            Err(e) => {
                reason = Some(e);
                None
            }
        }
    } else {
        reason = Some("WebGPU not requested".to_string());
        None
    };
    // 2. the nodule-free line integrals
    let (clean, renderer) = match &gpu {
        Some(g) => (
            g.render_async(&proj).await.map_err(js_err)?,
            format!("WebGPU: {}", g.adapter),
        ),
        None => (
            with_state(|st| Ok(st.studio.scene.render(&proj)))?,
            "CPU (wasm, one thread)".to_string(),
        ),
    };
    let t_trace = js_sys::Date::now() - t0;
    // 3. nodules and labels
    let r = with_state(|st| st.studio.finish(&s, clean).map_err(js_err))?;
    let [w, h] = r.view.projection.geometry.pixels;
    let out = serde_json::json!({
        "renderer": renderer,
        "fallback_reason": reason,
        "trace_ms": t_trace,
        "total_ms": js_sys::Date::now() - t0,
        "width": w,
        "height": h,
        "pixel_mm": r.label.pixel_mm(),
        "label": r.label,
        "placed": with_state(|st| Ok(st.studio.placed.len()))?,
    });
    with_state(|st| {
        st.last = Some(Rc::new(r));
        Ok(())
    })?;
    Ok(out.to_string())
}

/// The last render as shown, in [0, 1] (row-major): with its nodules, or the nodule-free twin.
#[wasm_bindgen]
pub fn studio_image(clean: bool) -> Result<Vec<f32>, JsValue> {
    Ok(last()?.display(clean).data)
}

/// The last render's line integrals (what `dxr drr --raw` writes).
#[wasm_bindgen]
pub fn studio_integrals(clean: bool) -> Result<Vec<f32>, JsValue> {
    let r = last()?;
    Ok(if clean {
        r.view.clean.clone()
    } else {
        r.view.with_nodules.clone()
    })
}

/// The 16-bit PNG `dxr drr` writes for the last render (`png16/` or, `clean`, `clean/png16/`).
#[wasm_bindgen]
pub fn studio_png16(clean: bool) -> Result<Vec<u8>, JsValue> {
    last()?.png16(clean).map_err(js_err)
}

/// The last render's label (`labels/00000.json`) and its COCO file.
#[wasm_bindgen]
pub fn studio_label() -> Result<String, JsValue> {
    Ok(last()?.label_json())
}

#[wasm_bindgen]
pub fn studio_coco() -> Result<String, JsValue> {
    Ok(last()?.coco_json())
}

/// Places a nodule where the user clicked on the last render (detector pixels); an error says
/// why not (no lung on that ray, too thin there). Render again to see it.
#[wasm_bindgen]
pub fn studio_place(x: f64, y: f64) -> Result<usize, JsValue> {
    let r = last()?;
    with_state(|st| st.studio.place_at(&r, [x, y]).map_err(js_err))
}

/// Removes nodule `id` of the last render's label. The random ones become placed ones first (so
/// that the others stay where they are); returns how many random nodules remain to draw (0 then).
#[wasm_bindgen]
pub fn studio_remove(id: usize) -> Result<usize, JsValue> {
    let r = last()?;
    with_state(|st| st.studio.remove(&r, id).map_err(js_err))
}
