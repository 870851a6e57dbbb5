#!/usr/bin/env python3
"""Independent second implementation of the restoration checks of `dxr realism --before`.

Written from the checks' definitions, not from src/eval/ (only the file formats come from
src/drr/), so that a figure both agree on is unlikely to share a bug: 1 detail, 2 no texture of
its own, 4 nodules kept per location, 5 nothing invented, 7 anatomy kept. Prints a markdown
table; exit 0 when every check passes, 1 when one fails, 2 for bad input. --self-test tests it.
"""
import argparse, json, shutil, sys, tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from scipy.signal.windows import hann
from skimage.exposure import match_histograms

EXTS = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"}
PERIODS = (2, 4, 8)          # the UNet's strides
AIR = 0.04                   # air: below 4 % of the input's range
MIN_RATIO = 0.90             # nodules and anatomy may lose at most 10 %
MIN_REGION = 200             # pixels a region needs to be judged
BLOB_MM = np.geomspace(3.0, 15.0, 11)  # LoG radii; one "scale step" is a factor 5^(1/10)

class BadInput(Exception):
    """Input that cannot be checked; the message names the file."""

# ---- reading
def read_grey(path):
    """A grey image in [0, 1]: 16-bit levels / 65535, 8-bit / 255."""
    try:
        im = Image.open(path)
        im.load()
    except Exception as e:  # Pillow raises many kinds
        raise BadInput(f"{path}: cannot read image ({e})")
    if im.mode.startswith("I"):
        return np.clip(np.asarray(im, dtype=np.float64) / 65535.0, 0, 1)
    return np.clip(np.asarray(im.convert("L"), dtype=np.float64) / 255.0, 0, 1)

def resize(a, shape):
    """Bilinear (a triangle filter, widened when shrinking, as Pillow does) to `shape`."""
    if a.shape == shape:
        return a
    im = Image.fromarray(a.astype(np.float32)).resize((shape[1], shape[0]), Image.BILINEAR)
    return np.asarray(im, dtype=np.float64)

def by_stem(d):
    if not Path(d).is_dir():
        raise BadInput(f"{d}: not a folder")
    return {p.stem: p for p in sorted(Path(d).iterdir()) if p.suffix.lower() in EXTS}

def read_label(setdir, stem, shape):
    """Nodules (x, y, r) in pixels of an image of `shape`, mm per pixel, lung mask."""
    path, (h, w) = Path(setdir) / "labels" / f"{stem}.json", shape
    try:
        lab = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BadInput(f"{path}: cannot read label ({e})")
    try:  # positions are in the label's pixels; the image may have another size
        sx, sy = w / float(lab.get("width", w)), h / float(lab.get("height", h))
        nodules = [(float(n["centre_px"][0]) * sx, float(n["centre_px"][1]) * sy,
                    float(n["radius_px"]) * 0.5 * (sx + sy)) for n in lab.get("nodules", [])]
        det = lab["geometry"]["detector_mm"]
        pitch = 0.5 * (float(det[0]) / w + float(det[1]) / h)  # the detector at this size
        lungs = lab["lungs"]
    except (KeyError, TypeError, IndexError, ValueError, ZeroDivisionError) as e:
        raise BadInput(f"{path}: not a dxr drr label with nodules, geometry and lungs "
                       f"(missing or bad {e})")
    if not (np.isfinite(pitch) and pitch > 0) or not all(np.isfinite(n).all() and n[2] >= 0 for n in nodules):
        raise BadInput(f"{path}: pixel pitch or a nodule is not a finite positive number")
    lung = resize(read_grey(Path(setdir) / lungs), shape) >= 0.5
    if not lung.any():
        raise BadInput(f"{Path(setdir) / lungs}: the lung fields are empty")
    return nodules, pitch, lung

def load_pairs(before_dir, after_dir, setdir, what):
    before, pairs = by_stem(before_dir), []
    for stem, after_path in by_stem(after_dir).items():
        if stem not in before:
            continue
        b = read_grey(before[stem])
        a = resize(read_grey(after_path), b.shape)  # judged at the DRR's size
        nodules, pitch, lung = read_label(setdir, stem, b.shape)
        pairs.append(dict(stem=stem, before=b, after=a, nodules=nodules, pitch=pitch,
                          lung=lung, layout=lung_layout(lung), **body_mask(b)))
    if not pairs:
        raise BadInput(f"{after_dir}: no {what} matches one in {before_dir} by file stem")
    return pairs

# ---- shared measures
def window_free(a):
    """The image stretched by its own 1st-99th percentiles: no check rewards a tone curve."""
    lo, hi = np.percentile(a, [1, 99])
    return np.clip((a - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(a)

def body_mask(a):
    lo, hi = float(a.min()), float(a.max())
    air = a < lo + AIR * (hi - lo)
    return dict(air=air, body=ndi.binary_fill_holes(~air), lo=lo, hi=hi)

def power_spectrum(a):
    """|FFT|^2 of the mean-removed, Hann-windowed image and each bin's radial frequency."""
    h, w = a.shape
    p = np.abs(np.fft.fft2((a - a.mean()) * np.outer(hann(h, sym=False), hann(w, sym=False)))) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    return p, np.hypot(fx, fy)

def lung_layout(lung):
    """The two lungs (left and right in the image), the gap columns [gl, gr) between them
    and the rows [top, bottom] they span."""
    lab, n = ndi.label(lung)
    sizes = ndi.sum(lung, lab, range(1, n + 1))
    order = np.argsort(sizes)[::-1] + 1
    cols = np.arange(lung.shape[1])[None, :]
    if n >= 2 and sizes[order[1] - 1] >= 0.1 * sizes[order[0] - 1]:
        a, b = (lab == order[0]), (lab == order[1])
        left, right = (a, b) if np.nonzero(a)[1].mean() < np.nonzero(b)[1].mean() else (b, a)
    else:  # one field (lungs touching): split where the fewest lung pixels are, mid-field
        main = lab == order[0]
        xs = np.nonzero(main.any(0))[0]
        lo, hi = xs[0] + (xs[-1] - xs[0]) * 3 // 10, xs[0] + (xs[-1] - xs[0]) * 7 // 10 + 1
        cut = lo + int(np.argmin(main.sum(0)[lo:hi]))
        left, right = main & (cols < cut), main & (cols >= cut)
    lungs = left | right
    gl = int(np.nonzero(left.any(0))[0].max()) + 1 if left.any() else 0
    gr = int(np.nonzero(right.any(0))[0].min()) if right.any() else lung.shape[1]
    if gl >= gr:  # a tilted view overlaps the fields' columns: use the median medial edges
        both = left.any(1) & right.any(1)
        if both.any():
            gl = int(np.median([np.nonzero(r)[0].max() + 1 for r in left[both]]))
            gr = max(gl, int(np.median([np.nonzero(r)[0].min() for r in right[both]])))
    rows = np.nonzero(lungs.any(1))[0]
    return dict(lungs=lungs, gl=gl, gr=gr, top=int(rows.min()), bottom=int(rows.max()))

# ---- 1 detail
def spectrum_slope(a):
    """Slope of log radial power vs log frequency, 4 cycles/image to 0.4 cycles/px."""
    p, f = power_spectrum(a)
    s = min(a.shape)
    k = np.rint(f * s).astype(int)  # radial bins one cycle/image wide
    keep = (k >= 4) & (f <= 0.4)
    sums, counts = np.bincount(k[keep], p[keep]), np.bincount(k[keep])
    ks = np.nonzero(counts)[0]
    return float(np.polyfit(np.log(ks / s), np.log(sums[ks] / counts[ks] + 1e-30), 1)[0])

def check_detail(views, reference):
    s_in, s_out = (float(np.mean([spectrum_slope(v[k]) for v in views])) for k in ("before", "after"))
    s_ref = spectrum_slope(reference)
    ratio = (s_out - s_in) / (s_ref - s_in) if s_ref != s_in else float("nan")
    ok = bool(1 / 3 <= ratio <= 4 / 3)
    return dict(s_in=s_in, s_out=s_out, s_ref=s_ref, ratio=ratio, target=[1 / 3, 4 / 3],
                pass_=ok, why=[] if ok else [f"moved {ratio:.2f} of the way to the reference"])

# ---- 2 texture
def stride_texture(a):
    """Power at 1/p cycles/px on both axes over the median of the ring at that radius."""
    (p, f), (h, w), out = power_spectrum(a), a.shape, {}
    for per in PERIODS:
        kx, ky = round(w / per), round(h / per)
        peaks = {(0, kx % w), (0, -kx % w), (ky % h, 0), (-ky % h, 0)}
        near = np.zeros(p.shape, bool)  # the Hann window spreads each peak over a few bins
        for i, j in peaks:
            near[np.ix_([(i + d) % h for d in range(-3, 4)], [(j + d) % w for d in range(-3, 4)])] = True
        ring = (np.abs(f - 1 / per) * min(h, w) <= 1) & ~near
        out[per] = float(np.mean([p[i, j] for i, j in peaks]) / max(np.median(p[ring]), 1e-30))
    return out

def check_texture(views):
    mean = lambda k: np.mean([list(stride_texture(v[k]).values()) for v in views], axis=0)
    res = {k: dict(zip(map(str, PERIODS), mean(k).tolist())) for k in ("before", "after")}
    why = [f"period {p} px: {res['after'][p]:.2f} > 2 x {res['before'][p]:.2f}"
           for p in res["before"] if res["after"][p] > 2 * res["before"][p]]
    return dict(**res, pass_=not why, why=why)

# ---- 4 nodules
def cnr(img, x, y, r):
    """(mean inside r - mean of the ring r..2r) / std of the ring; None when undefined."""
    h, w = img.shape
    x0, x1 = max(int(x - 2 * r) - 1, 0), min(int(x + 2 * r) + 2, w)
    y0, y1 = max(int(y - 2 * r) - 1, 0), min(int(y + 2 * r) + 2, h)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d = np.hypot(xx + 0.5 - x, yy + 0.5 - y)  # pixel i spans [i, i+1)
    win = img[y0:y1, x0:x1]
    inside, ring = win[d < r], win[(d >= r) & (d < 2 * r)]
    if inside.size == 0 or ring.size < 2 or ring.std() == 0:
        return None
    return float((inside.mean() - ring.mean()) / ring.std())

def frame(v):
    """The lungs' frame: the lung fields are the projected lungs (they reach behind the heart
    and the mediastinum), so regions are boxes in their extent, not gaps between masks. Also
    the side the heart is on (the denser low box beside the centre line) and the grey levels
    of aerated lung and of the central strip on the smoothed window-free DRR."""
    if "frame" in v:
        return v["frame"]
    lung, body, (h, w) = v["lung"], v["body"], v["lung"].shape
    ys, xs = np.nonzero(lung)
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    cx, lw, hh = (left + right) / 2, right - left, bottom - top
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    smooth = ndi.gaussian_filter(window_free(v["before"]), 3.0 * w / 256)
    low = (rows >= top + 0.6 * hh) & (rows <= bottom) & body
    right_box = low & (cols >= cx + 0.1 * lw) & (cols <= cx + 0.3 * lw)
    left_box = low & (cols >= cx - 0.3 * lw) & (cols <= cx - 0.1 * lw)
    side = -1 if np.median(smooth[left_box]) > np.median(smooth[right_box]) else 1
    toward = (cols - cx) * side
    f = dict(top=top, bottom=bottom, cx=cx, lw=lw, hh=hh, rows=rows, cols=cols, toward=toward,
             smooth=smooth, side=side)
    strip = body & (np.abs(cols - cx) <= 0.1 * lw) & (rows >= top + 0.25 * hh) & (rows <= top + 0.7 * hh)
    lung_level = np.median(smooth[lung & body])
    dense_level = np.median(smooth[strip]) if strip.any() else 1.0
    f["split"] = lung_level + (dense_level - lung_level) / 3
    v["frame"] = f
    return f

def locate(x, y, r, v):
    """Where a nodule projects, told by what it overlies: its surroundings (1.5-3 radii) on the
    smoothed DRR a third or more of the way from the lungs' level to the central strip's are
    dense anatomy: over the diaphragm when low (below 75 % of the lungs' height) and outside
    the heart's columns, else over the heart/mediastinum."""
    f, (h, w) = frame(v), v["lung"].shape
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(xx - x, yy - y)
    ring = (d >= 1.5 * r) & (d <= 3 * r)
    if not ring.any() or f["smooth"][ring].mean() < f["split"]:
        return "lung"
    low = y >= f["top"] + 0.75 * f["hh"]
    toward = (x - f["cx"]) * f["side"]
    if low and not (-0.1 * f["lw"] <= toward <= 0.3 * f["lw"]):
        return "diaphragm"
    return "mediastinum/heart"

def check_nodules(views):
    per, why = [], []
    for v in views:
        wb, wa = window_free(v["before"]), window_free(v["after"])
        for k, (x, y, r) in enumerate(v["nodules"]):
            cb, ca = cnr(wb, x, y, r), cnr(wa, x, y, r)
            if cb is None or ca is None or cb <= 0:
                continue  # not a nodule this check can see
            per.append(dict(view=v["stem"], nodule=k, location=locate(x, y, r, v),
                            cnr_before=cb, cnr_after=ca, ratio=ca / cb))
            if cb >= 1 and ca <= 0:
                why.append(f"{v['stem']} nodule {k} (CNR {cb:.2f}) is gone ({ca:.2f})")
    locations = {}
    for loc in ("lung", "mediastinum/heart", "diaphragm", "other"):
        r = [n["ratio"] for n in per if n["location"] == loc]
        if r:
            locations[loc] = dict(count=len(r), median=float(np.median(r)), mean=float(np.mean(r)))
            if min(locations[loc]["median"], locations[loc]["mean"]) < MIN_RATIO:
                why.append(f"{loc}: CNR kept median {np.median(r):.2f}, mean {np.mean(r):.2f}")
    if not per:
        why.append("no nodule with a positive CNR before restoration")
    return dict(locations=locations, nodules=per, pass_=not why, why=why)

# ---- 5 nothing invented
def log_response(a, sigma):
    """Scale-normalised LoG, negated so that bright blobs are positive."""
    return -sigma ** 2 * ndi.gaussian_laplace(a, sigma)

def matched(inp, out, body):
    """The input in the restoration's grey levels (histogram matching inside the body; a
    monotone map, so it changes the tone curve only, never the structures)."""
    src, ref = (inp[body], out[body]) if body.any() else (inp.ravel(), out.ravel())
    m = match_histograms(src, ref)
    order = np.argsort(src, kind="stable")
    return np.interp(inp, src[order], m[order])

def check_invented(views, twins):
    # threshold: half the median response at the labelled nodules, in output grey levels
    responses = []
    for v in views:
        vm = matched(v["before"], v["after"], v["body"])
        yy, xx = np.ogrid[:vm.shape[0], :vm.shape[1]]
        for x, y, r in v["nodules"]:  # strongest within half a radius of the labelled centre
            near = np.hypot(xx + 0.5 - x, yy + 0.5 - y) <= max(r / 2, 1)
            responses.append(float(log_response(vm, r / np.sqrt(2))[near].max()))
    if not responses or np.median(responses) <= 0:
        return dict(pass_=False, why=["no labelled nodule to calibrate the blob threshold"])
    thr = 0.5 * float(np.median(responses))
    new, strongest, backgrounds = [], None, []
    for t in twins:
        radii = BLOB_MM / t["pitch"]
        tm = matched(t["before"], t["after"], t["body"])
        out = np.stack([log_response(t["after"], r / np.sqrt(2)) for r in radii])
        inp = np.stack([log_response(tm, r / np.sqrt(2)) for r in radii])
        # blobs: maxima in space and scale, in the lungs (weak ones are not worth listing)
        peaks = (out == ndi.maximum_filter(out, size=3, mode="nearest")) & t["lung"][None]
        for k, i, j in zip(*np.nonzero(peaks & (out >= thr / 4))):
            # the input's strongest answer within half a radius and one scale step
            h = max(radii[k] / 2, 1.0)
            i0, j0, n = max(int(i - h), 0), max(int(j - h), 0), int(h) + 1
            win = inp[max(k - 1, 0):k + 2, i0:i + n + 1, j0:j + n + 1]
            yy, xx = np.ogrid[i0:i0 + win.shape[1], j0:j0 + win.shape[2]]
            if win[:, np.hypot(yy - i, xx - j) <= h].max() >= thr / 2:
                continue  # the input has it: not invented
            c = dict(twin=t["stem"], x=int(j), y=int(i), radius_mm=float(BLOB_MM[k]),
                     ratio=float(out[k, i, j] / thr))
            new += [c] if c["ratio"] >= 1 else []
            strongest = max(strongest or c, c, key=lambda b: b["ratio"])
        if t["air"].any():  # the restored air, as a share of the input's range
            backgrounds.append((t["after"][t["air"]].mean() - t["lo"]) / max(t["hi"] - t["lo"], 1e-9))
    background = float(np.mean(backgrounds)) if backgrounds else 0.0
    why = [f"{len(new)} new blob(s), the first in {new[0]['twin']} at ({new[0]['x']}, "
           f"{new[0]['y']}), {new[0]['radius_mm']:.1f} mm, {new[0]['ratio']:.2f}x"] if new else []
    if background > 0.05:
        why.append(f"air is {100 * background:.1f} % of the input range on average")
    return dict(threshold=thr, nodule_responses=len(responses), new_blobs=len(new), new=new[:20],
                strongest=strongest, strongest_ratio=strongest["ratio"] if strongest else 0.0,
                background=background, pass_=not why, why=why)

# ---- 7 anatomy
def regions(v):
    f, lung, body = frame(v), v["lung"], v["body"]
    rows, cols, top, bottom, cx, lw, hh = (f[k] for k in ("rows", "cols", "top", "bottom", "cx", "lw", "hh"))
    heart = (rows >= top + 0.55 * hh) & (rows <= bottom) & (f["toward"] >= -0.1 * lw) & (f["toward"] <= 0.3 * lw)
    # away from the air: the body's outline is the strongest edge and survives any restoration
    inner = body & ~ndi.binary_dilation(~body, np.ones((2 * round(4 * lung.shape[1] / 256) + 1,) * 2, bool))
    return {
        "lungs": inner & lung & (np.abs(cols - cx) > 0.1 * lw) & ~heart,
        "mediastinum/spine": inner & (np.abs(cols - cx) <= 0.1 * lw) & (rows >= top + 0.25 * hh) & (rows <= top + 0.7 * hh),
        "heart": inner & heart,
        "below diaphragm": inner & (rows > bottom),
        "shoulders": inner & (rows < top) & ((cols < cx - lw / 2 + lw / 3) | (cols > cx + lw / 2 - lw / 3)),
    }

def check_anatomy(views, twins):
    rows = {}  # region -> per image: pixels, detail before/after, contrast before/after
    for v in views + twins:
        s = v["before"].shape[1] / 256  # band-pass sigmas scale with the image
        wb, wa = window_free(v["before"]), window_free(v["after"])
        bb, ba = (ndi.gaussian_filter(a, s) - ndi.gaussian_filter(a, 4 * s) for a in (wb, wa))
        for name, reg in regions(v).items():
            if reg.sum() >= MIN_REGION:  # smaller regions are too noisy to judge
                rows.setdefault(name, []).append(
                    [reg.sum(), bb[reg].std(), ba[reg].std(), wb[reg].std(), wa[reg].std()])
    out, why = {}, []
    for name, r in rows.items():
        px, db, da, cb, ca = np.mean(r, axis=0)
        out[name] = dict(images=len(r), pixels=int(px), detail_before=db, detail_after=da,
                         contrast_before=cb, contrast_after=ca)
        for q, b, f in (("detail", db, da), ("contrast", cb, ca)):
            ratio = out[name][f"{q}_ratio"] = float(f / b) if b > 0 else (1.0 if f == 0 else np.inf)
            if ratio < MIN_RATIO:
                why.append(f"{name}: {q} {ratio:.2f}")
    return dict(regions=out, pass_=not why, why=why)

# ---- running
def run_checks(views, twins, reference):
    checks = {"detail": check_detail(views, reference), "texture": check_texture(views),
              "nodules": check_nodules(views), "invented": check_invented(views, twins),
              "anatomy": check_anatomy(views, twins)}
    for number, c in zip((1, 2, 4, 5, 7), checks.values()):
        c["number"], c["pass"] = number, bool(c.pop("pass_"))
    return {"views": len(views), "twins": len(twins), "checks": checks,
            "pass": all(c["pass"] for c in checks.values())}

def table(res):
    c, fmt = res["checks"], lambda d: ", ".join(f"p{k} {x:.2f}" for k, x in d.items())
    d, loc, inv, anat = c["detail"], c["nodules"]["locations"], c["invented"], c["anatomy"]["regions"]
    worst = min(anat.items(), key=lambda kv: min(kv[1]["detail_ratio"], kv[1]["contrast_ratio"]),
                default=("-", dict(detail_ratio=np.nan, contrast_ratio=np.nan)))
    rows = [
        (f"slope {d['s_in']:.2f}", f"slope {d['s_out']:.2f} (moved {d['ratio']:.2f} of the way)",
         f"reference {d['s_ref']:.2f}; moved 1/3..4/3 of the way"),
        (fmt(c["texture"]["before"]), fmt(c["texture"]["after"]), "after <= 2x before"),
        (f"{sum(x['count'] for x in loc.values())} nodules",
         "; ".join(f"{k} n={x['count']} median {x['median']:.2f} mean {x['mean']:.2f}"
                   for k, x in loc.items()), "CNR kept >= 0.90 per location; none lost"),
        (f"threshold {inv.get('threshold', np.nan):.4f}",
         f"{inv.get('new_blobs', '-')} new, strongest {inv.get('strongest_ratio', 0):.2f}x, "
         f"air {100 * inv.get('background', 0):.1f} %", "0 new; air <= 5 %"),
        (f"{len(anat)} regions", f"worst {worst[0]}: detail {worst[1]['detail_ratio']:.2f}, "
         f"contrast {worst[1]['contrast_ratio']:.2f}", ">= 0.90 in each region"),
    ]
    lines = ["| check | before | after | target | result |", "|---|---|---|---|---|"]
    for (name, ch), (b, a, t) in zip(c.items(), rows):
        result = "pass" if ch["pass"] else "FAIL: " + "; ".join(ch["why"])
        lines.append(f"| {ch['number']} {name} | {b} | {a} | {t} | {result} |")
    passed = sum(ch["pass"] for ch in c.values())
    return "\n".join(lines + [f"\n{passed} of {len(c)} checks pass "
                              f"({res['views']} views, {res['twins']} twins)"])

def load(args):
    views = load_pairs(args.before, args.after, args.labels, "restored view")
    twins = load_pairs(args.clean_before, args.clean_after, args.labels, "restored twin")
    return views, twins, read_grey(args.reference)

def parser():
    ap = argparse.ArgumentParser(description=__doc__)
    for name, what in [("before", "the DRRs (16-bit PNGs)"), ("after", "their restorations"),
                       ("labels", "the dxr drr set"), ("clean-before", "the nodule-free twins"),
                       ("clean-after", "their restorations"), ("reference", "a real radiograph"),
                       ("json", "write all figures here")]:
        ap.add_argument(f"--{name}", help=what)
    ap.add_argument("--self-test", action="store_true", help="test on synthetic chests")
    return ap

def main(argv=None):
    args = parser().parse_args(argv)
    if args.self_test:
        return self_test()
    missing = [n for n in ("before", "after", "labels", "clean_before", "clean_after", "reference")
               if getattr(args, n) is None]
    if missing:  # argparse exits 2, like any bad input
        parser().error("missing --" + ", --".join(m.replace("_", "-") for m in missing))
    try:
        res = run_checks(*load(args))
    except BadInput as e:
        print(f"confirm-checks: {e}", file=sys.stderr)
        return 2
    print(table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=float))
    return 0 if res["pass"] else 1

# ---- self-test
def disk(x, y, r, size=256):
    """An anti-aliased disk of radius r at (x, y), 1 inside."""
    yy, xx = np.mgrid[:size, :size] + 0.5
    return np.clip(r + 0.5 - np.hypot(xx - x, yy - y), 0, 1)

def synth_chest(seed, nodules, size=256):
    """A chest-like DRR: bright body on black air, two dark lungs, a striped spine between
    them, smooth noise, and bright nodules (x, y, r)."""
    yy, xx = np.mgrid[:size, :size] + 0.5
    ell = lambda cx, cy, ax, ay: ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 < 1
    body, lungs = ell(128, 150, 122, 135), ell(80, 112, 37, 68) | ell(176, 112, 37, 68)
    img = np.where(body, 0.55 + 0.1 * yy / size, 0.0)
    img[lungs] = 0.25 + 0.01 * np.sin(2 * np.pi * yy[lungs] / 18)  # faint ribs
    spine = body & (np.abs(xx - 128) < 10) & ~lungs
    img[spine] = 0.75 + 0.06 * np.sin(2 * np.pi * yy[spine] / 12)  # vertebrae
    img += body * ndi.gaussian_filter(np.random.default_rng(seed).normal(0, 0.02, img.shape), 1.5)
    return np.clip(img + sum(0.12 * disk(x, y, r, size) for x, y, r in nodules), 0, 1), lungs

def save16(path, a):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.rint(np.clip(a, 0, 1) * 65535).astype(np.uint16)).save(path)

def self_test():
    tmp = Path(tempfile.mkdtemp(prefix="dxr-confirm-"))
    setdir, views, twins = tmp / "set", {}, {}
    for i in range(3):
        stem, dx = f"view_{i:03d}", 4 * i
        nods = [(70 + dx, 90, 6.0), (180, 140 - dx, 5.0), (95, 150, 4.5),
                (128, 80 + dx, 5.0), (100, 205, 6.0)]  # the last two: between the lungs, below
        views[stem], lung = synth_chest(i, nods)
        twins[stem], _ = synth_chest(i, [])
        save16(setdir / "png16" / f"{stem}.png", views[stem])
        save16(setdir / "clean/png16" / f"{stem}.png", twins[stem])
        save16(setdir / "lungs" / f"{stem}.png", lung)
        # a label as `dxr drr` writes it (ViewLabel with NoduleLabels)
        zero, geometry = [0.0] * 3, dict(sdd=1800.0, sid=1650.0, detector_mm=[400.0, 400.0],
                                         pixels=[256, 256], view="pa")
        label = dict(image=f"png16/{stem}.png", image_8bit=f"png8/{stem}.png", raw=None,
                     clean_image=f"clean/png16/{stem}.png", lungs=f"lungs/{stem}.png", width=256,
                     height=256, geometry=geometry, window=[0.0, 60.0],
                     pose=dict(rotation_deg=zero, translation_mm=zero),
                     nodules=[dict(id=k, shape="sphere", centre_mm=zero, centre_voxel=zero, hu=100.0,
                                   radius_mm=r * 1.5625, centre_px=[x, y], radius_px=r,
                                   bbox_px=[x - r, y - r, x + r, y + r]) for k, (x, y, r) in enumerate(nods)])
        (setdir / "labels").mkdir(exist_ok=True)
        (setdir / "labels" / f"{stem}.json").write_text(json.dumps(label))
    noise = np.random.default_rng(9).normal(0, 0.05, (256, 256))
    save16(tmp / "reference.png", synth_chest(9, [])[0] + ndi.gaussian_filter(noise, 0.7))
    cli = lambda name: ["--before", str(setdir / "png16"), "--after", str(tmp / name / "after"),
                        "--labels", str(setdir), "--clean-before", str(setdir / "clean/png16"),
                        "--clean-after", str(tmp / name / "clean_after"),
                        "--reference", str(tmp / "reference.png")]

    def case(name, view_fn=lambda s, a: a, twin_fn=lambda s, a: a, big=""):
        for d, imgs, fn in (("after", views, view_fn), ("clean_after", twins, twin_fn)):
            for stem, a in imgs.items():  # `big` is restored at twice the size
                save16(tmp / name / d / f"{stem}.png", resize(fn(stem, a), (512, 512)) if stem == big else fn(stem, a))
        res = run_checks(*load(parser().parse_args(cli(name))))
        print(f"## {name}\n{table(res)}\n")
        return res["checks"]

    def flatten_strip(stem, a):
        """The mediastinum strip replaced by its local mean (within the strip only)."""
        lung = read_grey(setdir / "lungs" / f"{stem}.png") >= 0.5
        m = regions(dict(before=a, layout=lung_layout(lung), lung=lung, **body_mask(a)))["mediastinum/spine"] * 1.0
        local = ndi.gaussian_filter(a * m, 8) / np.maximum(ndi.gaussian_filter(m, 8), 1e-9)
        return np.where(m > 0, local, a)

    paint_blob = lambda s, a: a + 0.12 * disk(170, 75, 6.0) * (s == "view_001")
    # the first nodule of view_000 turned into a hole of the same depth
    invert_nodule = lambda s, a: np.where((disk(70, 90, 7.5) > 0) & (s == "view_000"), 2 * twins[s] - a, a)

    failures = []
    expect = lambda ok, what: None if ok else failures.append(what)
    c = case("identity")
    for k in ("texture", "nodules", "invented", "anatomy"):
        expect(c[k]["pass"], f"(a) identity should pass {k}: {c[k]['why']}")
    c = case("flat_mediastinum", flatten_strip, flatten_strip)
    expect(not c["anatomy"]["pass"] and any(w.startswith("mediastinum/spine") for w in c["anatomy"]["why"]),
           f"(b) a flattened mediastinum should fail 7 naming it: {c['anatomy']['why']}")
    c = case("painted_blob", twin_fn=paint_blob, big="view_000")
    expect(not c["invented"]["pass"] and c["invented"]["new_blobs"] >= 1,
           f"(c) a painted blob should fail 5: {c['invented']}")
    big = resize(read_grey(tmp / "painted_blob/after/view_000.png"), (256, 256))
    err = np.abs(big - views["view_000"]).mean()
    expect(err < 0.01, f"a 2x restoration should come back at the DRR's size, aligned ({err:.4f})")
    c = case("inverted_nodule", invert_nodule)
    expect(not c["nodules"]["pass"], f"(d) an inverted nodule should fail 4: {c['nodules']['why']}")
    # the command line: identity fails check 1 (nothing moved toward the reference) -> exit 1
    code = main(cli("identity") + ["--json", str(tmp / "out.json")])
    keys = sorted(json.loads((tmp / "out.json").read_text())["checks"])
    expect(code == 1 and keys == ["anatomy", "detail", "invented", "nodules", "texture"],
           f"command line: exit {code}, keys {keys}")
    print("expected next: an error naming a missing label")
    expect(main(cli("identity")[:4] + ["--labels", str(tmp)] + cli("identity")[6:]) == 2,
           "a missing label should exit 2")
    lung = synth_chest(0, [])[1]  # lungs that touch (one field) are still split
    lung[100:103, 110:146] = True
    gap = [lung_layout(lung)[k] for k in ("gl", "gr")]
    expect(gap[0] <= 120 and gap[1] >= 136, f"touching lungs: gap {gap}")
    if failures:
        print("\n".join([f"self-test FAILED (files kept in {tmp}):"] + failures))
        return 1
    shutil.rmtree(tmp)
    print("self-test passed: (a) identity passes 2, 4, 5, 7; (b) a flattened mediastinum fails 7; "
          "(c) a painted blob fails 5; (d) an inverted nodule fails 4")
    return 0


if __name__ == "__main__":
    sys.exit(main())
