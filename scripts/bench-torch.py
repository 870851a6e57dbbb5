#!/usr/bin/env python3
"""The PyTorch side of `dxr bench`: the reference UNets on the same configs, sizes and thread
count as ours.

Each --model NAME=CONFIG.json names its network family in the JSON:
  cheff (no "family", or "family": "cheff"): {"model": {dim, init_dim, out_dim, dim_mults,
      num_attention_layer, channels, block_groups}}, built as the authors' UNet
      (cheff/sr/model.py, class Unet) from a copy of qureai/DiffusionXray at $DXR_REFERENCE.
  sr3 ("family": "sr3"): {"family": "sr3", "model": {in_channel, out_channel, inner_channel,
      norm_groups, channel_multiplier, attn_res, res_blocks, dropout, image_size}}, built as
      SR3's UNet (model/sr3_modules/unet.py, class UNet, with_noise_level_emb=True;
      channel_multiplier is its channel_mults) from a copy of
      Janspiry/Image-Super-Resolution-via-Iterative-Refinement at $DXR_SR3_REFERENCE.
Each reference is needed only when a model of its family is asked for; a missing one is named on
stderr and the script exits 2.

Prints one JSON object per line on stdout, which `dxr bench` puts beside its own rows:
  {"kind": "info", "torch": V, "device": D, "threads": N, "params": {M: count, ...}}
  {"kind": "step", "model": M, "size": S, "ms": median, "runs": [...]}
  {"kind": "train", "model": M, "batch": B, "patch": P, "s": median, "runs": [...]}
Medians after one warm-up. $DXR_TORCH_DEVICE (default cpu; cuda on a GPU machine) is where
the networks run; each timed call ends with the device synchronised.

A step is one network call on a single S×S image: cheff net(cat(x_t, LQ), t) with t = 500;
sr3 net(cat(LQ, x_t), noise_level) with noise_level of shape [1, 1] (sqrt of ᾱ, in (0, 1)),
as SR3's diffusion.py calls it. The training step is what `dxr train` does per step: forward on
a batch of crops with a timestep (cheff) or noise level (sr3) per sample, L1 to the target (cheff:
the clean image; sr3: the noise, as SR3's p_losses), backward, Adam (lr 1e-4), EMA update.
"""

import argparse
import json
import os
import statistics
import sys
import time

SR3_KEYS = {  # ours -> SR3's UNet(...) keyword
    "in_channel": "in_channel",
    "out_channel": "out_channel",
    "inner_channel": "inner_channel",
    "norm_groups": "norm_groups",
    "channel_multiplier": "channel_mults",
    "attn_res": "attn_res",
    "res_blocks": "res_blocks",
    "dropout": "dropout",
    "image_size": "image_size",
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True,
                    help="NAME=CONFIG.json: {\"model\": {dim, dim_mults, ...}} (cheff) or "
                         "{\"family\": \"sr3\", \"model\": {in_channel, inner_channel, ...}}")
    ap.add_argument("--size", type=int, nargs="*", default=[256, 512])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--train-batch", type=int, default=0)
    ap.add_argument("--train-patch", type=int, default=64)
    ap.add_argument("--train-steps", type=int, default=5)
    a = ap.parse_args()

    models = []  # (name, family, cfg)
    for spec in a.model:
        name, path = spec.split("=", 1)
        with open(path) as f:
            doc = json.load(f)
        family = doc.get("family", "cheff")
        if family not in ("cheff", "sr3"):
            print(f"{path}: unknown family {family!r} (cheff or sr3)", file=sys.stderr)
            return 2
        cfg = doc["model"]
        if family == "sr3":
            unknown = sorted(set(cfg) - set(SR3_KEYS))
            if unknown:
                print(f"{path}: unknown sr3 settings {unknown}", file=sys.stderr)
                return 2
            cfg = {SR3_KEYS[k]: v for k, v in cfg.items()}
            cfg["with_noise_level_emb"] = True
        models.append((name, family, cfg))

    families = {fam for _, fam, _ in models}
    refs = {"cheff": ("DXR_REFERENCE", "a copy of qureai/DiffusionXray"),
            "sr3": ("DXR_SR3_REFERENCE",
                    "a copy of Janspiry/Image-Super-Resolution-via-Iterative-Refinement")}
    for fam in sorted(families):
        var, what = refs[fam]
        if not os.environ.get(var):
            print(f"{var} is not set (needed for the {fam} models: {what})", file=sys.stderr)
            return 2
        sys.path.insert(0, os.environ[var])
    import torch
    builders = {}
    if "cheff" in families:
        from cheff.sr.model import Unet
        builders["cheff"] = Unet
    if "sr3" in families:
        from model.sr3_modules.unet import UNet
        builders["sr3"] = UNet

    def build(family, cfg):
        return builders[family](**cfg)

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(os.environ.get("DXR_TORCH_DEVICE", "cpu"))

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def count(family, cfg):
        try:  # shapes only: no memory, no draws from the seeded generator
            with torch.device("meta"):
                net = build(family, cfg)
            return sum(p.numel() for p in net.parameters())
        except Exception:
            return None

    print(json.dumps({"kind": "info", "torch": torch.__version__, "device": str(dev),
                      "threads": torch.get_num_threads(),
                      "params": {name: count(fam, cfg) for name, fam, cfg in models}}),
          flush=True)

    for name, family, cfg in models:
        sr3 = family == "sr3"
        net = build(family, cfg).eval().to(dev)
        ch = cfg["in_channel"] if sr3 else cfg.get("channels", 2)

        with torch.inference_mode():
            for side in a.size:
                x = torch.randn(1, ch, side, side, device=dev)
                if sr3:
                    t = torch.full((1, 1), 0.5, device=dev)  # noise level, [batch, 1]
                else:
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
            net = build(family, cfg).train().to(dev)
            ema = [p.detach().clone() for p in net.parameters()]
            opt = torch.optim.Adam(net.parameters(), lr=1e-4)
            b, p = a.train_batch, a.train_patch
            if sr3:
                out_ch = cfg["out_channel"]
                hq = torch.rand(b, out_ch, p, p, device=dev)
                lq = torch.rand(b, cfg["in_channel"] - out_ch, p, p, device=dev)
            else:
                hq = torch.rand(b, 1, p, p, device=dev)
                lq = torch.rand(b, 1, p, p, device=dev)

            def step():
                noise = torch.randn_like(hq)
                if sr3:
                    level = torch.rand(b, 1, device=dev) * 0.98 + 0.01  # sqrt ᾱ per sample
                    g = level.view(b, 1, 1, 1)
                    x_t = g * hq + (1 - g * g).sqrt() * noise
                    out = net(torch.cat([lq, x_t], dim=1), level)
                    loss = torch.nn.functional.l1_loss(out, noise)
                else:
                    t = torch.randint(0, 1000, (b,), device=dev).float()
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
