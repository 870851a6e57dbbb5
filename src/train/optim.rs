//! Adam and an exponential moving average over a module's parameters, with their state held
//! in visit order so a checkpoint can store it by position and a resumed run continues exactly.

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// How every trainer steps: batches of random crops, Adam, the moving average that is
/// exported, the seed of the weights and the draws. Flattened into each trainer's settings, so
/// their saved states read as before.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Steps {
    /// Images per step, as random crops of side `patch` (a multiple of the network's).
    pub batch: usize,
    pub patch: usize,
    /// Adam's learning rate and betas.
    pub lr: f64,
    pub betas: (f64, f64),
    /// The exported weights are this exponential moving average of the trained ones.
    pub ema_decay: f64,
    pub seed: u64,
}

/// One float parameter's values, flattened (inner device, no autodiff).
pub type Flat = Tensor<1>;

/// Adam (Kingma & Ba) with bias correction; PyTorch's defaults apart from the rates.
#[derive(Clone)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Steps taken.
    pub t: u64,
    /// First and second moments, one per float parameter in visit order.
    pub m: Vec<Flat>,
    pub v: Vec<Flat>,
}

impl Adam {
    pub fn new(lr: f64, betas: (f64, f64)) -> Self {
        Self {
            lr,
            beta1: betas.0,
            beta2: betas.1,
            eps: 1e-8,
            t: 0,
            m: Vec::new(),
            v: Vec::new(),
        }
    }

    /// Updates every parameter that has a gradient; returns the module.
    pub fn step<M: Module>(&mut self, module: M, grads: GradientsParams) -> M {
        self.t += 1;
        let mut mapper = AdamMapper {
            adam: self,
            grads,
            index: 0,
        };
        module.map(&mut mapper)
    }
}

struct AdamMapper<'a> {
    adam: &'a mut Adam,
    grads: GradientsParams,
    index: usize,
}

impl ModuleMapper for AdamMapper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, value, mapper) = param.consume();
        let k = self.index;
        self.index += 1;
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, value, mapper);
        };
        let shape = value.shape();
        let n = shape.num_elements();
        let p: Flat = value.inner().reshape([n]);
        let g: Flat = grad.inner().reshape([n]);
        let a = &mut *self.adam;
        if a.m.len() <= k {
            a.m.push(p.zeros_like());
            a.v.push(p.zeros_like());
        }
        let m = a.m[k].clone() * a.beta1 + g.clone() * (1.0 - a.beta1);
        let v = a.v[k].clone() * a.beta2 + g.powi_scalar(2) * (1.0 - a.beta2);
        let bc1 = 1.0 - a.beta1.powi(a.t as i32);
        let bc2 = 1.0 - a.beta2.powi(a.t as i32);
        let update = (m.clone() / bc1) / ((v.clone() / bc2).sqrt() + a.eps);
        a.m[k] = m;
        a.v[k] = v;
        let next = (p - update * a.lr).reshape(shape);
        Param::from_mapped_value(id, Tensor::from_inner(next).require_grad(), mapper)
    }
}

/// Every float parameter's values in visit order (inner device).
pub fn params<M: Module>(module: &M) -> Vec<Flat> {
    struct Collect(Vec<Flat>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let v = param.val().inner();
            let n = v.shape().num_elements();
            self.0.push(v.reshape([n]));
        }
    }
    let mut c = Collect(Vec::new());
    module.visit(&mut c);
    c.0
}

/// The gradient of every float parameter in visit order (`None` where there is none).
pub fn grads_in_order<M: Module>(module: &M, grads: &GradientsParams) -> Vec<Option<Flat>> {
    struct Collect<'a>(&'a GradientsParams, Vec<Option<Flat>>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let g = self.0.get::<D>(param.id).map(|g| {
                let n = g.shape().num_elements();
                g.inner().reshape([n])
            });
            self.1.push(g);
        }
    }
    let mut c = Collect(grads, Vec::new());
    module.visit(&mut c);
    c.1
}

/// Replaces every float parameter by `values` (visit order), keeping ids, devices and whether
/// it requires a gradient; shapes must match.
pub fn set_params<M: Module>(module: M, values: &[Flat]) -> crate::Result<M> {
    struct Set<'a> {
        values: &'a [Flat],
        index: usize,
        error: Option<String>,
    }
    impl ModuleMapper for Set<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, value, mapper) = param.consume();
            let k = self.index;
            self.index += 1;
            let Some(new) = self.values.get(k) else {
                self.error
                    .get_or_insert(format!("no stored value for parameter {k}"));
                return Param::from_mapped_value(id, value, mapper);
            };
            let shape = value.shape();
            if new.shape().num_elements() != shape.num_elements() {
                self.error.get_or_insert(format!(
                    "parameter {k} has {} values, the model needs {:?}",
                    new.shape().num_elements(),
                    shape
                ));
                return Param::from_mapped_value(id, value, mapper);
            }
            let device = value.device();
            let tracked = value.is_require_grad();
            let mut t = new
                .clone()
                .to_device(&device.clone().inner())
                .reshape(shape);
            if device.is_autodiff() {
                t = Tensor::from_inner(t);
                if tracked {
                    t = t.require_grad();
                }
            }
            Param::from_mapped_value(id, t, mapper)
        }
    }
    let mut s = Set {
        values,
        index: 0,
        error: None,
    };
    let out = module.map(&mut s);
    if let Some(e) = s.error {
        return Err(crate::Error::CheckpointMismatch(e));
    }
    if s.index != values.len() {
        return Err(crate::Error::CheckpointMismatch(format!(
            "{} stored parameters for a model with {}",
            values.len(),
            s.index
        )));
    }
    Ok(out)
}

/// Exponential moving average of the parameters: `ema ← d·ema + (1 − d)·θ`, with the usual
/// warm-up `d = min(decay, (1 + n) / (10 + n))` after n updates, so that a short run's EMA
/// weights are not mostly its initial ones.
#[derive(Clone)]
pub struct Ema {
    pub decay: f64,
    pub values: Vec<Flat>,
    /// Updates so far (stored in checkpoints for an exact resume).
    pub updates: u64,
}

impl Ema {
    pub fn new<M: Module>(module: &M, decay: f64) -> Self {
        Self {
            decay,
            values: params(module),
            updates: 0,
        }
    }

    /// The decay the next update uses.
    pub fn current_decay(&self) -> f64 {
        let n = self.updates as f64;
        self.decay.min((1.0 + n) / (10.0 + n))
    }

    pub fn update<M: Module>(&mut self, module: &M) {
        let d = self.current_decay();
        let now = params(module);
        for (e, p) in self.values.iter_mut().zip(now) {
            *e = e.clone() * d + p * (1.0 - d);
        }
        self.updates += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    #[test]
    fn adam_matches_the_closed_form_first_step_and_ema_averages() {
        let device = crate::device::cpu().autodiff();
        let lin: Linear = LinearConfig::new(3, 2).init(&device);
        let before = params(&lin);
        let x = Tensor::<2>::from_data([[1.0, 2.0, 3.0]], &device);
        let loss = lin.forward(x).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &lin);
        let mut adam = Adam::new(0.1, (0.9, 0.999));
        let mut ema = Ema::new(&lin, 0.5);
        assert!(
            (ema.current_decay() - 0.1).abs() < 1e-12,
            "warm-up: (1 + 0) / (10 + 0)"
        );
        ema.updates = 100; // past the warm-up: the configured decay
        let lin = adam.step(lin, grads);
        let after = params(&lin);
        // first Adam step moves every parameter with a non-zero gradient by lr·sign(g)
        for (b, a) in before.iter().zip(&after) {
            let d: Vec<f32> = (a.clone() - b.clone())
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            for v in d {
                assert!((v.abs() - 0.1).abs() < 1e-4, "{v}");
            }
        }
        ema.update(&lin);
        let mid: Vec<f32> = ema.values[0]
            .clone()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let b0: Vec<f32> = before[0].clone().into_data().try_to_vec::<f32>().unwrap();
        let a0: Vec<f32> = after[0].clone().into_data().try_to_vec::<f32>().unwrap();
        for k in 0..mid.len() {
            assert!((mid[k] - 0.5 * (a0[k] + b0[k])).abs() < 1e-6);
        }
        // restoring parameters round-trips
        let back = set_params(lin, &before).unwrap();
        let again: Vec<f32> = params(&back)[0]
            .clone()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(again, b0);
    }
}
