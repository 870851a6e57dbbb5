//! Mixed-precision training (`dxr train … --precision f16|bf16`): the forward and backward
//! passes run on a half-precision copy of the network, while the weights the optimizer updates,
//! Adam's moments and the EMA stay in f32 (master weights). The copy is made inside the
//! autodiff graph (a cast per parameter), so the gradients arrive at the f32 parameters as f32.
//! With f16 the loss is scaled before the backward pass so that small gradients do not flush to
//! zero, and unscaled after; a step whose gradients overflowed is skipped. burn 0.22.1 has no
//! automatic mixed precision of its own, so this is built from its casts and module mapping.

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::DType;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The float type of the forward and backward passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32 (the default on every backend).
    #[default]
    F32,
    /// IEEE half: 2× less memory traffic, a narrow range (needs loss scaling).
    F16,
    /// bfloat16: f32's range with 8 bits of mantissa (no loss scaling needed).
    Bf16,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
            Precision::Bf16 => DType::BF16,
        }
    }

    /// The static loss scale: 2¹⁰ for f16 (gradients of an L1 loss on a few images sit around
    /// 1e-6..1e-2, below f16's normal range at the low end), 1 otherwise.
    pub fn loss_scale(self) -> f64 {
        match self {
            Precision::F16 => 1024.0,
            _ => 1.0,
        }
    }

    /// Refuses a precision the device cannot compute in, by name.
    pub fn check(self, device: &Device) -> Result<()> {
        if self != Precision::F32 && !device.supports_dtype(self.dtype()) {
            return Err(Error::Device(format!(
                "--precision {}: this device ({device:?}) has no {:?} arithmetic",
                self.name(),
                self.dtype()
            )));
        }
        Ok(())
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Precision::F32),
            "f16" | "fp16" | "half" => Ok(Precision::F16),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(Error::Usage(format!(
                "unknown precision '{s}' (f32, f16 or bf16)"
            ))),
        }
    }
}

/// `module` with every float parameter cast to `dtype`, the casts recorded in the autodiff
/// graph (ids kept), so a backward pass through the copy reaches the original parameters.
pub fn cast_copy<M: Module>(module: &M, dtype: DType) -> M {
    struct Cast(DType);
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, value, mapper) = param.consume();
            Param::from_mapped_value(id, value.cast(self.0), mapper)
        }
    }
    module.clone().map(&mut Cast(dtype))
}

/// The gradients divided by `scale`, and whether all of them are finite (one read-back).
pub fn unscale<M: Module>(
    module: &M,
    grads: GradientsParams,
    scale: f64,
) -> (GradientsParams, bool) {
    struct Unscale {
        grads: GradientsParams,
        out: GradientsParams,
        inv: f64,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for Unscale {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                let g = if self.inv == 1.0 {
                    g
                } else {
                    g.mul_scalar(self.inv)
                };
                let s = g.clone().abs().sum();
                self.total = Some(match self.total.take() {
                    Some(t) => t + s,
                    None => s,
                });
                self.out.register(param.id, g);
            }
        }
    }
    let mut u = Unscale {
        grads,
        out: GradientsParams::new(),
        inv: 1.0 / scale,
        total: None,
    };
    module.visit(&mut u);
    let finite = u.total.is_none_or(|t| t.into_scalar::<f32>().is_finite());
    (u.out, finite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precisions_parse_by_name_and_only_f16_scales_the_loss() {
        assert_eq!("F16".parse::<Precision>().unwrap(), Precision::F16);
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!("f32".parse::<Precision>().unwrap(), Precision::F32);
        let err = "f8".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("unknown precision 'f8'"), "{err}");
        assert_eq!(Precision::F16.loss_scale(), 1024.0);
        assert_eq!(Precision::Bf16.loss_scale(), 1.0);
        assert_eq!(serde_json::to_string(&Precision::Bf16).unwrap(), "\"bf16\"");
    }
}
