"""Pictures of token maps: a PNG grid (frames x methods), an animation of the kept tokens, and the plots of
the quantitative evaluation. Plain numpy inputs; matplotlib (Agg) for figures, PIL for GIF frames.

Maps are patch-grid arrays (T, h, w) aligned with frames (T, H, W, 3) in [0, 1]; a map is shown at the
frame's resolution by repeating each patch's value over its H/h x W/w pixels (no smoothing: one patch =
one token).
"""
from __future__ import annotations

import os
import textwrap
from typing import Dict, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colors as mcolors  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, MaxNLocator  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from video_iared.utils.video_io import write_video

TITLES = {"interpreter": "interpreter score", "interpreter_g0": "interpreter (group 0) p",
          "interpreter_g1": "interpreter (group 1) p", "interpreter_g2": "interpreter (group 2) p", "kept": "groups survived",
          "attention": "raw attention (last block)", "rollout": "attention rollout", "gradcam": "Grad-CAM",
          "chefer": "gradient-weighted rollout", "random": "random"}
GROUP_COLORS = ["#d62728", "#ffbf00", "#9467bd", "#17becf", "#1f77b4", "#8c564b"]  # dropped at g (repeats)
KEPT_COLOR = "#2ca02c"


def upsample(m: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, h, w) patch map -> (T, height, width), each patch's value repeated over its pixels."""
    m = np.asarray(m)
    t, h, w = m.shape
    if height % h or width % w:
        raise ValueError(f"map grid {h}x{w} does not divide the frame size {height}x{width}")
    return np.repeat(np.repeat(m, height // h, axis=1), width // w, axis=2)


def _check_frames(frames: np.ndarray) -> np.ndarray:
    f = np.asarray(frames, dtype=np.float32)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) in [0, 1], got {f.shape}")
    return np.clip(f, 0.0, 1.0)


def _kept_overlay(frame: np.ndarray, kept: np.ndarray, dim: float = 0.25) -> np.ndarray:
    """Frame (H, W, 3), kept (H, W) bool at pixel level -> the frame with dropped pixels dimmed."""
    return np.where(kept[..., None], frame, frame * dim)


def save_explanation_grid(path: str, frames: np.ndarray, maps: Dict[str, np.ndarray], kept: Optional[np.ndarray],
                          title: str, foreground: Optional[np.ndarray] = None, alpha: float = 0.55) -> str:
    """PNG grid: one row per frame; columns: input, kept tokens after each group (dropped ones dimmed),
    then every map as a heat overlay with its own colour bar (colour scale shared by the frames).

    frames (T, H, W, 3) in [0, 1]; maps name -> (T, h, w); kept (G, T, h, w) bool or None; foreground (T, h, w)
    bool or None (its patches are outlined in the input column). Returns ``path``."""
    frames = _check_frames(frames)
    T, H, W, _ = frames.shape
    groups = 0 if kept is None else kept.shape[0]
    cols = 1 + groups + len(maps)
    fig, axes = plt.subplots(T, cols, figsize=(1.9 * cols, 1.9 * T + 1.2), squeeze=False)
    col_titles = ["input" + (" (+ foreground)" if foreground is not None else "")]
    col_titles += [f"kept after group {g}" for g in range(groups)]
    col_titles += [TITLES.get(m, m) for m in maps]
    images = {}
    for t in range(T):
        ax = axes[t, 0]
        ax.imshow(frames[t])
        if foreground is not None:
            fg = upsample(foreground.astype(np.float32), H, W)[t]
            if fg.any():
                ax.contour(fg, levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_ylabel(f"frame {t}", fontsize=7)
        for g in range(groups):
            kp = upsample(kept[g].astype(np.float32), H, W)[t] > 0.5
            axes[t, 1 + g].imshow(_kept_overlay(frames[t], kp))
            axes[t, 1 + g].set_xlabel(f"{int(kept[g, t].sum())}/{kept[g, t].size} kept", fontsize=6)
        for j, (name, m) in enumerate(maps.items()):
            m = np.asarray(m, dtype=np.float32)
            lo, hi = float(m.min()), float(m.max())
            norm = mcolors.Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1e-12)
            ax = axes[t, 1 + groups + j]
            ax.imshow(frames[t].mean(-1), cmap="gray", vmin=0, vmax=1)
            images[name] = ax.imshow(upsample(m, H, W)[t], cmap="jet", norm=norm, alpha=alpha)
    for c, name in enumerate(col_titles):
        axes[0, c].set_title(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    for j, name in enumerate(maps):
        col_axes = axes[:, 1 + groups + j]
        cb = fig.colorbar(images[name], ax=list(col_axes), orientation="horizontal", fraction=0.03, pad=0.02)
        cb.ax.xaxis.set_major_locator(MaxNLocator(nbins=3))
        cb.ax.xaxis.set_major_formatter(FormatStrFormatter("%.2g"))
        cb.ax.tick_params(labelsize=6)
        cb.set_label(TITLES.get(name, name), fontsize=6)
    if groups:
        handles = [Patch(facecolor="white", edgecolor="black", label="kept token"),
                   Patch(facecolor="#404040", edgecolor="black", label="dropped token (dimmed)")]
        fig.legend(handles=handles, loc="lower left", fontsize=7, frameon=False)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _font(size: int = 10):
    """matplotlib's bundled DejaVu Sans (it has the glyphs of names like IA-RED²), else PIL's default."""
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except (OSError, ValueError):
        return ImageFont.load_default()


def kept_frames(frames: np.ndarray, kept: np.ndarray, scale: int = 4, title: str = "") -> np.ndarray:
    """uint8 (T, H*scale, W*scale + legend, 3) frames of the kept-token animation.

    Tokens kept to the end are shown as they are with a green outline; a token dropped at group g is
    dimmed (the earlier it was dropped, the darker) and outlined in that group's colour. kept (G, T, h, w).
    The legend panel on the right names the colours and carries ``title`` (wrapped)."""
    frames = _check_frames(frames)
    T, H, W, _ = frames.shape
    G, _, h, w = kept.shape
    depth = kept.astype(np.int64).sum(0)  # (T, h, w): groups survived
    ph, pw = H * scale // h, W * scale // w
    out = []
    for t in range(T):
        big = np.repeat(np.repeat(frames[t], scale, 0), scale, 1)
        dimf = 0.15 + 0.6 * upsample(depth[t:t + 1] / max(G, 1), H * scale, W * scale)[0]
        alive = upsample(depth[t:t + 1] == G, H * scale, W * scale)[0]
        img = np.where(alive[..., None], big, big * dimf[..., None])
        im = Image.fromarray((img * 255).astype(np.uint8))
        draw = ImageDraw.Draw(im)
        for i in range(h):
            for j in range(w):
                d = int(depth[t, i, j])
                color = KEPT_COLOR if d == G else GROUP_COLORS[d % len(GROUP_COLORS)]
                draw.rectangle([j * pw, i * ph, (j + 1) * pw - 1, (i + 1) * ph - 1], outline=color)
        legend = Image.new("RGB", (150, im.height), "white")
        ld = ImageDraw.Draw(legend)
        font = _font()
        ld.text((4, 4), f"frame {t}", fill="black", font=font)
        y = 22
        for g in range(G):
            ld.rectangle([4, y, 16, y + 10], outline=GROUP_COLORS[g % len(GROUP_COLORS)], width=2)
            ld.text((22, y), f"dropped at group {g}", fill="black", font=font)
            y += 16
        ld.rectangle([4, y, 16, y + 10], outline=KEPT_COLOR, width=2)
        ld.text((22, y), "kept to the end", fill="black", font=font)
        y += 22
        for part in title.replace(" — ", "; ").split("; "):
            for line in textwrap.wrap(part, 24):
                if y + 12 > legend.height:
                    break
                ld.text((4, y), line, fill="black", font=font)
                y += 12
        canvas = Image.new("RGB", (im.width + legend.width, im.height))
        canvas.paste(im, (0, 0))
        canvas.paste(legend, (im.width, 0))
        out.append(np.asarray(canvas))
    return np.stack(out)


def save_kept_animation(path: str, frames: np.ndarray, kept: np.ndarray, fps: int = 4, scale: int = 4,
                        title: str = "") -> str:
    """The input with kept tokens highlighted and dropped ones dimmed, as a GIF (PIL) or MP4 (H.264).

    frames (T, H, W, 3) in [0, 1]; kept (G, T, h, w) bool. ``title`` is drawn in the legend panel (and is
    the GIF comment)."""
    imgs = kept_frames(frames, kept, scale, title)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".gif":
        pil = [Image.fromarray(f) for f in imgs]
        pil[0].save(path, save_all=True, append_images=pil[1:], duration=int(1000 / fps), loop=0,
                    comment=title.encode("utf-8")[:255])
    elif ext == ".mp4":
        even = imgs[:, : imgs.shape[1] // 2 * 2, : imgs.shape[2] // 2 * 2]  # H.264 wants even sizes
        write_video(path, np.ascontiguousarray(even), fps=fps)
    else:
        raise ValueError(f"{path}: animation format must be .gif or .mp4")
    return path


def save_bar_plot(path: str, summary: Dict[str, Dict[str, tuple]], metrics: Sequence[str], title: str = "") -> str:
    """Grouped bars: one group per metric, one bar per method, mean with a ±std error bar."""
    methods = list(summary)
    x = np.arange(len(metrics))
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(1.6 * len(metrics) + 3, 4))
    cmap = plt.get_cmap("tab10")
    for i, m in enumerate(methods):
        means = [summary[m][k][0] for k in metrics]
        stds = [summary[m][k][1] for k in metrics]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=m,
               color=cmap(i % 10))
    if "auc_patch" in metrics or "auc_pixel" in metrics:
        ax.axhline(0.5, color="gray", linestyle="--", linewidth=0.8, label="chance AUC")
    ax.set_xticks(x)
    ax.set_xticklabels(metrics, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (mean ± std over videos)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_curve_plot(path: str, fractions: np.ndarray, curves: Dict[str, Dict[str, np.ndarray]],
                    kinds: Sequence[str] = ("deletion_acc", "insertion_acc", "deletion_prob", "insertion_prob")) -> str:
    """Deletion / insertion curves of every method (one panel per curve kind)."""
    kinds = [k for k in kinds if any(k in d for d in curves.values())]
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.6 * len(kinds), 3.4), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, k in zip(axes[0], kinds):
        for i, (m, d) in enumerate(curves.items()):
            if k in d:
                ax.plot(fractions, d[k], marker=".", label=m, color=cmap(i % 10))
        verb = "removed" if k.startswith("deletion") else "kept"
        ax.set_xlabel(f"fraction of tokens {verb} (most important first)", fontsize=7)
        ax.set_ylabel("accuracy" if k.endswith("acc") else "p(true class)", fontsize=7)
        ax.set_title(k, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

