//! Data-parallel training over several devices (`dxr train … --devices wgpu:0,wgpu:1`), with
//! burn's own gradient machinery: each device gets a copy of the network (`Module::fork`) and
//! a contiguous slice of the batch, runs its forward and backward pass on its own thread, and
//! the per-device gradients are moved to the first device (`GradientsParams::to_device`) and
//! summed there by burn's `GradientsAccumulator`. The optimizer then steps once, on the first
//! device, so the state (weights, EMA, Adam moments) lives in one place and one file.
//!
//! Why not burn's `DistributedContext` all-reduce: in burn 0.22.1 only the CUDA runtime has a
//! transport between devices (NCCL); wgpu's `all_reduce` panics ("no transport between its
//! devices"), so on the devices this project tests on, the reduction goes through the first
//! device instead. Each slice's loss is weighted by its share of the batch, so the summed
//! gradient is the gradient of the whole batch's mean loss: N devices take the same step as one
//! device with the whole batch, up to floating-point summation order.

use std::ops::Range;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;

use crate::{Error, Result};

/// The devices one training step is spread over; the first holds the optimizer state.
#[derive(Debug, Clone)]
pub struct DataParallel {
    /// Plain devices (each runs on its autodiff twin).
    devices: Vec<Device>,
}

impl DataParallel {
    /// One device: the step runs exactly as it would without data parallelism.
    pub fn single(device: &Device) -> Self {
        Self {
            devices: vec![device.clone()],
        }
    }

    /// `devices` in order (the first keeps the state); each must get at least one image of
    /// `batch`, and none may be named twice.
    pub fn new(devices: Vec<Device>, batch: usize) -> Result<Self> {
        if devices.is_empty() {
            return Err(Error::Device("--devices names no device".into()));
        }
        for (i, d) in devices.iter().enumerate() {
            if devices[..i].contains(d) {
                return Err(Error::Device(format!(
                    "--devices names device {i} ({d:?}) twice: each device takes its own slice of the batch"
                )));
            }
        }
        if batch < devices.len() {
            return Err(Error::Usage(format!(
                "--batch {batch} is smaller than the {} devices: each device needs at least one image",
                devices.len()
            )));
        }
        Ok(Self { devices })
    }

    /// The device that holds the optimizer state.
    pub fn main(&self) -> &Device {
        &self.devices[0]
    }

    /// Contiguous slices of `0..batch`, one per device, sizes differing by at most one (the
    /// first devices take the extra images).
    pub fn slices(&self, batch: usize) -> Vec<Range<usize>> {
        let n = self.devices.len();
        let (base, extra) = (batch / n, batch % n);
        let mut start = 0;
        (0..n)
            .map(|i| {
                let len = base + usize::from(i < extra);
                let r = start..start + len;
                start += len;
                r
            })
            .collect()
    }

    /// The mean loss over the whole batch and its gradients (on the main device) for `net`.
    /// `loss(net_on_device, slice, autodiff_device)` returns the mean loss over the images of
    /// `slice` (a scalar); it runs once per device, concurrently.
    pub fn loss_and_grads<M, F>(
        &self,
        net: &M,
        batch: usize,
        loss: F,
    ) -> Result<(f64, GradientsParams)>
    where
        M: Module + Sync,
        F: Fn(&M, Range<usize>, &Device) -> Result<Tensor<1>> + Sync,
    {
        // 1. one device: the plain step, no weighting, no copies
        if self.devices.len() == 1 {
            let ad = self.devices[0].clone().autodiff();
            let l = loss(net, 0..batch, &ad)?;
            let value = l.clone().into_scalar::<f32>() as f64;
            return Ok((value, GradientsParams::from_grads(l.backward(), net)));
        }
        // 2. each device: its copy of the network, its slice, its loss weighted by the slice's
        //    share of the batch, its backward pass; the gradients brought to the main device
        let main = self.main();
        let slices = self.slices(batch);
        let results: Vec<Result<(f64, GradientsParams)>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .devices
                .iter()
                .zip(slices)
                .map(|(device, slice)| {
                    let loss = &loss;
                    s.spawn(move || {
                        let ad = device.clone().autodiff();
                        let replica = net.clone().fork(&ad);
                        let share = slice.len() as f64 / batch as f64;
                        let l = loss(&replica, slice, &ad)?.mul_scalar(share);
                        let value = l.clone().into_scalar::<f32>() as f64;
                        let grads = GradientsParams::from_grads(l.backward(), &replica)
                            .to_device(main, &replica);
                        Ok((value, grads))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Failed("a training device's thread panicked".into()))
                    })
                })
                .collect()
        });
        // 3. the sum, in device order (deterministic)
        let mut acc = GradientsAccumulator::<M>::new();
        let mut value = 0.0;
        for r in results {
            let (v, g) = r?;
            value += v;
            acc.accumulate(net, g);
        }
        Ok((value, acc.grads()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_batch_in_order_with_sizes_within_one() {
        let d = Device::flex();
        let dp = DataParallel {
            devices: vec![d.clone(), d.clone(), d],
        };
        assert_eq!(dp.slices(7), vec![0..3, 3..5, 5..7]);
        assert_eq!(dp.slices(3), vec![0..1, 1..2, 2..3]);
        assert_eq!(dp.slices(6), vec![0..2, 2..4, 4..6]);
    }

    #[test]
    fn a_batch_smaller_than_the_devices_and_a_device_named_twice_are_refused() {
        let err = DataParallel::new(vec![Device::flex(), crate::device::cpu()], 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--batch 1 is smaller than the 2 devices"),
            "{err}"
        );
        let err = DataParallel::new(vec![Device::flex(), Device::flex()], 4)
            .unwrap_err()
            .to_string();
        assert!(err.contains("twice"), "{err}");
        assert!(DataParallel::new(vec![], 4).is_err());
    }
}
