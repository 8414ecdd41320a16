"""Gallery scrolling at a million items: the time to show a new screenful, and the memory.

    QT_QPA_PLATFORM=offscreen python bench/gallery_scroll.py [--items 1000000] [--jumps 30]

A synthetic folder of --items images (--files of them real PNG files under --work, the rest
their copies by name: `LazyThumbnails` decodes each row from its file the first time it is
shown, as for a real folder of that size) is listed with the app's own loader, given to the
gallery at 1000 x 800, and scrolled: --jumps jumps to random places (a new screenful each, every
thumbnail decoded then) and as many one-row steps. Each is timed to the end of a full repaint.
Printed: the seconds to list, to show the first screen and to lay out every item (the scroll
bar reaches the end then), median and worst ms per jump and per step, and the peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_folder(root: Path, items: int, files: int) -> None:
    """`files` distinct PNGs, then hard links to them up to `items` names (a link costs an inode,
    not a decode or a copy): ten class folders, as a labelled folder would be."""
    from PIL import Image

    rng = np.random.default_rng(0)
    sources = []
    for i in range(files):
        folder = root / f"class_{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"source_{i:06d}.png"
        Image.fromarray(rng.integers(0, 255, (28, 28, 3), dtype=np.uint8)).save(path)
        sources.append(path)
    for i in range(files, items):
        source = sources[i % files]
        os.link(source, source.parent / f"item_{i:07d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--jumps", type=int, default=30)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gallery-scroll"))
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    folder = args.work / "folder"
    if not (args.work / "made").exists():
        if args.work.exists():
            shutil.rmtree(args.work)  # only ever a folder this benchmark made under --work
        started = time.monotonic()
        make_folder(folder, args.items, args.files)
        (args.work / "made").write_text(f"{args.items}\n")
        print(f"made the folder in {time.monotonic() - started:.0f} s")

    from sslstudio.core.control import run_to_end
    from sslstudio.core.data import load_image_folder
    from sslstudio.gui.app import create_app
    from sslstudio.gui.widgets.gallery import GalleryView

    app = create_app()
    started = time.monotonic()
    data = run_to_end(load_image_folder(folder, 64, labels_from_folders=True,
                                        cache_dir=args.work / "cache", lazy_from=100_000))
    listed = time.monotonic() - started
    view = GalleryView()
    view.resize(1000, 800)
    view.show()
    started = time.monotonic()
    view.set_data(data)
    app.processEvents()
    shown = time.monotonic() - started
    scroll = view.list.verticalScrollBar()
    # The view lays items out in batches; the scroll bar reaches its end with the last one.
    last, changed = -1, time.monotonic()
    while time.monotonic() - changed < 1.0:
        app.processEvents()
        time.sleep(0.001)
        if scroll.maximum() != last:
            last, changed = scroll.maximum(), time.monotonic()
    laid_out = changed - started
    rng = np.random.default_rng(1)
    jumps, steps = [], []
    for _ in range(args.jumps):
        target = int(rng.integers(0, scroll.maximum() + 1))
        began = time.perf_counter()
        scroll.setValue(target)
        view.list.viewport().repaint()
        jumps.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        scroll.setValue(min(scroll.maximum(), target + scroll.singleStep()))
        view.list.viewport().repaint()
        steps.append((time.perf_counter() - began) * 1000)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("| items | listed (s) | first screen (s) | all laid out (s) | jump: median / worst ms | "
          "one-row step: median / worst ms | thumbnails made | peak RSS |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {len(data):,} | {listed:.1f} | {shown:.2f} | {laid_out:.2f} | {np.median(jumps):.0f} / {max(jumps):.0f} "
          f"| {np.median(steps):.0f} / {max(steps):.0f} | {data.images.nbytes_made // (64 * 64 * 3):,} "
          f"| {peak:.0f} MiB |")
    view.close()


if __name__ == "__main__":
    main()
