//! Loading weights by name from the references' checkpoints (`.pt` / `.pth` / `.safetensors`)
//! and saving our own (one safetensors file carrying its [`ModelSpec`]).
//!
//! Everything works on bytes, so the browser uses the same path as the CLI:
//! bytes → [`RawCheckpoint`] (format detected from the content) → names mapped by the rules in
//! [`keymap`] → burn-store applies them to the network (PyTorch → burn layout adapter).

pub mod keymap;
mod pickle;
pub mod torch;

use crate::limits::Limits;
use std::collections::{BTreeMap, HashMap};

use burn::prelude::*;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, bridge};

use crate::error::{Error, Result};
use crate::model::Network;
use crate::spec::{Family, ModelSpec};

/// Metadata key under which our checkpoints store their spec (JSON).
pub const SPEC_KEY: &str = "dxr_spec";

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorDType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    Other,
}

impl TensorDType {
    fn size(self) -> usize {
        match self {
            TensorDType::F64 | TensorDType::I64 => 8,
            TensorDType::F32 | TensorDType::I32 => 4,
            TensorDType::F16 | TensorDType::BF16 => 2,
            TensorDType::Other => 1,
        }
    }
    fn is_float(self) -> bool {
        matches!(
            self,
            TensorDType::F32 | TensorDType::F16 | TensorDType::BF16 | TensorDType::F64
        )
    }
}

/// One stored tensor: shape, element type, little-endian bytes.
#[derive(Debug, Clone)]
pub struct RawTensor {
    pub shape: Vec<usize>,
    pub dtype: TensorDType,
    pub bytes: Vec<u8>,
}

impl RawTensor {
    /// Integer values (int64/int32 tensors), for fixture timesteps and the like.
    pub fn to_i64(&self, name: &str) -> Result<Vec<i64>> {
        let b = &self.bytes;
        Ok(match self.dtype {
            TensorDType::I64 => b
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            TensorDType::I32 => b
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            other => {
                return Err(Error::CheckpointMismatch(format!(
                    "tensor '{name}' has dtype {other:?}; an integer type is expected"
                )));
            }
        })
    }

    /// The values as f32 (half and double precision are converted; integers are refused).
    pub fn to_f32(&self, name: &str) -> Result<Vec<f32>> {
        let b = &self.bytes;
        Ok(match self.dtype {
            TensorDType::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            TensorDType::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            TensorDType::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            TensorDType::F64 => b
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            other => {
                return Err(Error::CheckpointMismatch(format!(
                    "tensor '{name}' has dtype {other:?}; a floating-point type (f32, f16, bf16, f64) is expected"
                )));
            }
        })
    }
}

/// The container a checkpoint came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `torch.save` zip archive (`.pt`, `.pth`).
    Torch,
    Safetensors,
}

/// A checkpoint's tensors by their stored names, plus header metadata (safetensors only).
#[derive(Debug, Clone)]
pub struct RawCheckpoint {
    pub format: Format,
    pub tensors: BTreeMap<String, RawTensor>,
    pub metadata: HashMap<String, String>,
}

/// Largest checkpoint file (the authors' `base` UNet with its EMA copy is ~0.5 GB).
pub const MAX_CHECKPOINT_BYTES: u64 = Limits::CHECKPOINT_BYTES.value;
/// Most tensors in a checkpoint (a UNet has a few hundred).
pub const MAX_TENSORS: usize = Limits::TENSORS.value as usize;
/// Most elements in one tensor (256 M: 1 GiB as f32).
pub const MAX_TENSOR_ELEMENTS: usize = Limits::TENSOR_ELEMENTS.value as usize;

/// The element count of a tensor of `shape`, refused past [`MAX_TENSOR_ELEMENTS`].
pub(crate) fn checked_elements(name: &str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, d| n.checked_mul(*d))
        .filter(|n| *n <= MAX_TENSOR_ELEMENTS)
        .ok_or_else(|| {
            Error::TooLarge(format!(
                "tensor '{name}' of shape {shape:?} has more than {MAX_TENSOR_ELEMENTS} elements"
            ))
        })
}

/// The bytes of a checkpoint file, refused by its size before anything is read when it is over
/// [`MAX_CHECKPOINT_BYTES`]; errors name the file.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if size > MAX_CHECKPOINT_BYTES {
        return Err(Error::TooLarge(format!(
            "{}: the checkpoint is {} MiB; the limit is {} MiB",
            path.display(),
            size >> 20,
            MAX_CHECKPOINT_BYTES >> 20
        )));
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Reads a checkpoint from bytes, recognising the format from its content.
pub fn read_checkpoint(bytes: &[u8]) -> Result<RawCheckpoint> {
    if bytes.len() as u64 > MAX_CHECKPOINT_BYTES {
        return Err(Error::TooLarge(format!(
            "the checkpoint is {} MiB; the limit is {} MiB",
            bytes.len() >> 20,
            MAX_CHECKPOINT_BYTES >> 20
        )));
    }
    let raw = read_any(bytes)?;
    if raw.tensors.len() > MAX_TENSORS {
        return Err(Error::TooLarge(format!(
            "the checkpoint holds {} tensors; the limit is {MAX_TENSORS}",
            raw.tensors.len()
        )));
    }
    Ok(raw)
}

fn read_any(bytes: &[u8]) -> Result<RawCheckpoint> {
    if bytes.len() < 8 {
        return Err(Error::CheckpointFormat(format!(
            "file is {} bytes long: too short to be a checkpoint",
            bytes.len()
        )));
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        let tensors = torch::read_torch(bytes)?.into_iter().collect();
        return Ok(RawCheckpoint {
            format: Format::Torch,
            tensors,
            metadata: HashMap::new(),
        });
    }
    if bytes.starts_with(&[0x80, 0x02]) || bytes.starts_with(&[0x80, 0x04]) {
        return Err(Error::CheckpointFormat(
            "legacy (pre-1.6) torch.save format; re-save it with a current PyTorch or convert to safetensors".into(),
        ));
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    if bytes.len() > 8 && bytes[8] == b'{' {
        if header_len > (bytes.len() - 8) as u64 {
            return Err(Error::CheckpointFormat(format!(
                "safetensors header declares {header_len} bytes but the file has {}: truncated",
                bytes.len()
            )));
        }
        return read_safetensors(bytes);
    }
    Err(Error::CheckpointFormat(
        "unrecognised content: expected a PyTorch zip archive (.pt/.pth) or a safetensors file"
            .into(),
    ))
}

fn read_safetensors(bytes: &[u8]) -> Result<RawCheckpoint> {
    use safetensors::{Dtype, SafeTensors};
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        Error::CheckpointFormat(format!("safetensors file is damaged or truncated ({e})"))
    })?;
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::CheckpointFormat(format!("safetensors header: {e}")))?;
    let metadata = meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut tensors = BTreeMap::new();
    if st.len() > MAX_TENSORS {
        return Err(Error::TooLarge(format!(
            "the checkpoint holds {} tensors; the limit is {MAX_TENSORS}",
            st.len()
        )));
    }
    for (name, view) in st.tensors() {
        checked_elements(&name, view.shape())?;
        let dtype = match view.dtype() {
            Dtype::F32 => TensorDType::F32,
            Dtype::F16 => TensorDType::F16,
            Dtype::BF16 => TensorDType::BF16,
            Dtype::F64 => TensorDType::F64,
            Dtype::I64 => TensorDType::I64,
            Dtype::I32 => TensorDType::I32,
            _ => TensorDType::Other,
        };
        tensors.insert(
            name,
            RawTensor {
                shape: view.shape().to_vec(),
                dtype,
                bytes: view.data().to_vec(),
            },
        );
    }
    Ok(RawCheckpoint {
        format: Format::Safetensors,
        tensors,
        metadata,
    })
}

impl RawCheckpoint {
    /// The family the tensor names belong to.
    pub fn family(&self) -> Result<Family> {
        let has = |p: &str| self.tensors.keys().any(|k| k.starts_with(p));
        if has("denoise_fn.") || has("noise_level_mlp.") {
            Ok(Family::Sr3)
        } else if self.tensors.contains_key("init_conv.weight") {
            Ok(Family::Cheff)
        } else {
            let some: Vec<&String> = self.tensors.keys().take(3).collect();
            Err(Error::CheckpointMismatch(format!(
                "the tensor names ({some:?}, ...) belong to neither the cheff nor the SR3 UNet"
            )))
        }
    }

    /// The spec stored by [`save`], if this is one of our checkpoints.
    pub fn stored_spec(&self) -> Result<Option<ModelSpec>> {
        self.metadata
            .get(SPEC_KEY)
            .map(|s| ModelSpec::from_json(s))
            .transpose()
    }

    /// Number of scalar values stored.
    pub fn num_values(&self) -> usize {
        self.tensors
            .values()
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }
}

/// A network with weights, and the spec it was built from.
pub struct LoadedModel {
    pub network: Network,
    pub spec: ModelSpec,
}

/// Builds the network described by `spec` (or the checkpoint's own spec) and loads the weights.
///
/// Fails, naming the tensor, on a missing tensor, an unexpected one, a shape or dtype mismatch,
/// or a checkpoint of the other family.
pub fn load(ckpt: &RawCheckpoint, spec: Option<ModelSpec>, device: &Device) -> Result<LoadedModel> {
    let family = ckpt.family()?;
    let spec = match (spec, ckpt.stored_spec()?) {
        (Some(s), _) | (None, Some(s)) => s,
        // A bare cheff checkpoint is most likely the authors' own model.
        (None, None) if family == Family::Cheff => {
            return load(ckpt, Some(ModelSpec::authors_default()), device).map_err(|e| match e {
                Error::CheckpointMismatch(m) => Error::CheckpointMismatch(format!(
                    "{m} (no config was given, so the authors' published setting was assumed: pass the model's config file)"
                )),
                other => other,
            });
        }
        (None, None) => {
            return Err(Error::Config(format!(
                "this {family} checkpoint does not carry its configuration: pass the model's config file (--config)"
            )));
        }
    };
    if family != spec.family() {
        return Err(Error::CheckpointMismatch(format!(
            "the weights are a {family} checkpoint but the config describes a {} network",
            spec.family()
        )));
    }
    let mut network = spec.network.init(device)?;

    // 1. map stored names to module paths, remembering the originals for messages
    let mut originals = HashMap::new();
    let mut tensors = Vec::new();
    for (name, raw) in &ckpt.tensors {
        if keymap::is_ignored(family, name) {
            continue;
        }
        let path = keymap::to_module_path(family, name);
        if !raw.dtype.is_float() {
            return Err(Error::CheckpointMismatch(format!(
                "tensor '{name}' has dtype {:?}; a floating-point type is expected",
                raw.dtype
            )));
        }
        let data = TensorData::new(raw.to_f32(name)?, raw.shape.clone());
        tensors.push(bridge::from_data(data, path.clone(), None));
        originals.insert(path, name.clone());
    }

    // 2. apply (PyTorch layout → burn layout: Linear transposed, norm weight/bias → gamma/beta)
    let result = network.apply(tensors, None, Some(Box::new(PyTorchToBurnAdapter)), true);

    // 3. every problem, named by the checkpoint's own tensor names
    let name_of = |p: &str| {
        originals
            .get(p)
            .cloned()
            .unwrap_or_else(|| keymap::to_reference_name(family, p))
    };
    let mut problems: Vec<String> = result
        .errors
        .iter()
        .map(|e| match e {
            burn::store::ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => {
                format!(
                    "tensor '{}' has shape {:?}, the model expects {:?}",
                    name_of(path),
                    found.as_slice(),
                    expected.as_slice()
                )
            }
            burn::store::ApplyError::DTypeMismatch {
                path,
                expected,
                found,
            } => {
                format!(
                    "tensor '{}' has dtype {found:?}, the model expects {expected:?}",
                    name_of(path)
                )
            }
            other => other.to_string(),
        })
        .collect();
    problems.extend(
        result
            .missing
            .iter()
            .map(|(p, _)| format!("missing tensor '{}'", keymap::to_reference_name(family, p))),
    );
    problems.extend(
        result
            .unused
            .iter()
            .map(|p| format!("unexpected tensor '{}'", name_of(p))),
    );
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(8);
        let more = if n > 8 {
            format!(" (and {} more)", n - 8)
        } else {
            String::new()
        };
        return Err(Error::CheckpointMismatch(format!(
            "{}{more}",
            problems.join("; ")
        )));
    }
    Ok(LoadedModel { network, spec })
}

/// Reads and loads in one go.
pub fn load_bytes(bytes: &[u8], spec: Option<ModelSpec>, device: &Device) -> Result<LoadedModel> {
    load(&read_checkpoint(bytes)?, spec, device)
}

/// Storage precision of a saved checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveDType {
    F32,
    /// Half the size; enough for inference.
    F16,
}

/// Serialises a network as safetensors with the reference's tensor names and PyTorch layouts
/// (so the reference code can read it too) and the spec in the header metadata.
pub fn to_safetensors_bytes(
    network: &Network,
    spec: &ModelSpec,
    dtype: SaveDType,
) -> Result<Vec<u8>> {
    use safetensors::Dtype;
    let family = network.family();
    let mut entries: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for t in network.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true) {
        let name = keymap::to_reference_name(family, &t.name);
        let shape = t.shape.as_slice().to_vec();
        let data = bridge::into_data(t)
            .map_err(|e| Error::CheckpointFormat(format!("reading back {name}: {e:?}")))?;
        let values: Vec<f32> = data
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::CheckpointFormat(format!("{name}: {e:?}")))?;
        let bytes = match dtype {
            SaveDType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            SaveDType::F16 => values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
        };
        entries.push((name, shape, bytes));
    }
    let st_dtype = match dtype {
        SaveDType::F32 => Dtype::F32,
        SaveDType::F16 => Dtype::F16,
    };
    let mut meta = HashMap::new();
    meta.insert(SPEC_KEY.to_string(), spec.to_json());
    write_safetensors(&entries, st_dtype, meta)
}

/// A safetensors file of `(name, shape, little-endian bytes)` entries, all of `dtype`, with
/// `meta` in its header: the one writer of model files and training states.
pub fn write_safetensors(
    entries: &[(String, Vec<usize>, Vec<u8>)],
    dtype: safetensors::Dtype,
    meta: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let views = entries
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(dtype, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::CheckpointFormat(format!("{n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::CheckpointFormat(format!("serialising: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_file_over_the_limit_is_refused_by_its_size_before_reading() {
        let dir = std::env::temp_dir().join(format!("dxr-ckpt-limit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (over, under) = (dir.join("over.pt"), dir.join("under.pt"));
        // sparse files: nothing is written, so only the size can refuse them in time
        std::fs::File::create(&over)
            .unwrap()
            .set_len(MAX_CHECKPOINT_BYTES + 1)
            .unwrap();
        let e = read_file(&over).unwrap_err();
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
        assert!(
            e.to_string().contains("over.pt") && e.to_string().contains("2048 MiB"),
            "{e}"
        );
        std::fs::write(&under, b"not a checkpoint").unwrap();
        assert_eq!(read_file(&under).unwrap(), b"not a checkpoint");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn tensor_elements_and_file_bytes_have_limits() {
        assert_eq!(checked_elements("w", &[1 << 14, 1 << 14]).unwrap(), 1 << 28);
        let e = checked_elements("w", &[(1 << 28) + 1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("tensor 'w'") && e.contains("268435456"), "{e}");
        // a product that overflows usize is refused, not wrapped
        let e = checked_elements("w", &[usize::MAX, 2])
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than"), "{e}");
        // a safetensors header that declares more tensors than allowed is refused by count
        let mut header = String::from("{");
        for k in 0..=MAX_TENSORS {
            if k > 0 {
                header.push(',');
            }
            header.push_str(&format!(
                "\"t{k}\":{{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}"
            ));
        }
        header.push('}');
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        let e = read_checkpoint(&bytes).unwrap_err().to_string();
        assert!(e.contains("100001 tensors"), "{e}");
    }
}
