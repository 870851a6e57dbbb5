#!/usr/bin/env python3
"""The PyTorch side of `dxr bench`: the authors' UNet (cheff/sr/model.py from a copy of
qureai/DiffusionXray at $DXR_REFERENCE) on the same configs, sizes and thread count.

Called by `dxr bench` with a cheff-layout config JSON per model; prints one JSON object per
line on stdout, which `dxr bench` puts beside its own rows:
  {"kind": "step", "model": M, "size": S, "ms": median, "runs": [...]}
  {"kind": "train", "model": M, "batch": B, "patch": P, "s": median, "runs": [...]}
Medians after one warm-up. $DXR_TORCH_DEVICE (default cpu; cuda on a GPU machine) is where
the networks run; each timed call ends with the device synchronised. The training step is what `dxr train ddpm-hq` does per step:
forward on cat(x_t, LQ), L1 to the target, backward, Adam, EMA update.
"""

import argparse
import json
import os
import statistics
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True,
                    help="NAME=CONFIG.json (cheff layout: {\"model\": {dim, dim_mults, ...}})")
    ap.add_argument("--size", type=int, nargs="*", default=[256, 512])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--train-batch", type=int, default=0)
    ap.add_argument("--train-patch", type=int, default=64)
    ap.add_argument("--train-steps", type=int, default=5)
    a = ap.parse_args()

    ref = os.environ.get("DXR_REFERENCE")
    if not ref:
        print("DXR_REFERENCE is not set", file=sys.stderr)
        return 2
    sys.path.insert(0, ref)
    import torch
    from cheff.sr.model import Unet

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(os.environ.get("DXR_TORCH_DEVICE", "cpu"))

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    print(json.dumps({"kind": "info", "torch": torch.__version__, "device": str(dev),
                      "threads": torch.get_num_threads()}), flush=True)

    for spec in a.model:
        name, path = spec.split("=", 1)
        with open(path) as f:
            cfg = json.load(f)["model"]
        net = Unet(**cfg).eval().to(dev)
        ch = cfg.get("channels", 2)

        with torch.inference_mode():
            for side in a.size:
                x = torch.randn(1, ch, side, side, device=dev)
                t = torch.full((1,), 500.0, device=dev)
                net(x, t)  # warm-up
                sync()
                runs = []
                for _ in range(a.runs):
                    t0 = time.perf_counter()
                    net(x, t)
                    sync()
                    runs.append((time.perf_counter() - t0) * 1e3)
                print(json.dumps({"kind": "step", "model": name, "size": side,
                                  "ms": statistics.median(runs), "runs": runs}), flush=True)

        if a.train_batch > 0:
            net = Unet(**cfg).train().to(dev)
            ema = [p.detach().clone() for p in net.parameters()]
            opt = torch.optim.Adam(net.parameters(), lr=1e-4)
            b, p = a.train_batch, a.train_patch
            hq = torch.rand(b, 1, p, p, device=dev)
            lq = torch.rand(b, 1, p, p, device=dev)

            def step():
                t = torch.randint(0, 1000, (b,), device=dev).float()
                noise = torch.randn_like(hq)
                x_t = 0.7 * hq + 0.7 * noise
                out = net(torch.cat([x_t, lq], dim=1), t)
                loss = torch.nn.functional.l1_loss(out, hq)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    torch._foreach_lerp_(ema, list(net.parameters()), 1e-3)

            step()  # warm-up
            sync()
            runs = []
            for _ in range(max(1, a.train_steps)):
                t0 = time.perf_counter()
                step()
                sync()
                runs.append(time.perf_counter() - t0)
            print(json.dumps({"kind": "train", "model": name, "batch": b, "patch": p,
                              "s": statistics.median(runs), "runs": runs}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
