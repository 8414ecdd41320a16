"""Build the self-contained SSL Studio bundle: its own Python, CPU-only PyTorch, Qt and the rest.

    python packaging/build.py              # from a checkout: dist/SSLStudio/ and the archive
    python packaging/build.py --self-test  # then run the built bundle's self-test

Steps: a virtual environment of its own under build/ (kept between builds; --fresh makes it
again), CPU-only torch with the torchvision that matches it, the app's other dependencies and
PyInstaller; PyInstaller makes the onedir bundle (packaging/pyinstaller/sslstudio.spec);
PyTorch's and Python's libraries are stripped of their symbol tables; an install script, the
desktop entry and the icon go beside the program; the folder is packed as
dist/SSLStudio-VERSION-PLATFORM.tar.gz (a .zip on Windows). Sizes by component are printed and
written to dist/bundle-sizes.json.

Nothing outside build/ and dist/ is written; the bundle folder it makes is replaced at each build.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD, DIST = REPO / "build", REPO / "dist"
APP_ID = "io.github.sslstudio.SSLStudio"
LINUX, WINDOWS, MACOS = sys.platform.startswith("linux"), sys.platform == "win32", sys.platform == "darwin"

# CPU torch and the torchvision built for it. 2.13.0 is the newest CPU build this project's
# machines can install (a file on their disk); the pip path of the app takes up to 2.14.
TORCH = "2.13.0"
TORCHVISION = "0.28.0"
PYINSTALLER = "6.22.3"

# Where each component's files are, for the size table: the first pattern that matches a path
# (relative to the bundle's _internal/) names its component.
COMPONENTS = [
    ("torch", ("torch/", "functorch/", "libgomp")),
    ("Qt (PySide6)", ("PySide6/", "shiboken6/", "libQt6", "libicu")),
    ("onnxruntime and onnx", ("onnxruntime/", "onnx/", "ml_dtypes/")),
    ("NumPy, SciPy, scikit-learn, openTSNE", ("numpy", "scipy", "sklearn/", "openTSNE/", "joblib/", "threadpoolctl")),
    ("Python", ("base_library.zip", "libpython", "lib-dynload/", "python3")),
    ("the app's sample and icons", ("resources/",)),
]
PROGRAM = "the program file (every package's compiled Python, PyInstaller's loader)"


def run(command: list[str], **kwargs) -> None:
    print("+", " ".join(str(c) for c in command), flush=True)
    subprocess.run([str(c) for c in command], check=True, **kwargs)


def remove_own(folder: Path, made_by_us: str) -> None:
    """Remove a folder an earlier build made, known by a file it always holds; anything else
    under that name is left alone and the build stops."""
    if not folder.exists():
        return
    if not (folder / made_by_us).exists():
        sys.exit(f"build: {folder} is not what an earlier build left (no {made_by_us}); move it away")
    shutil.rmtree(folder)


def bundle_python(fresh: bool) -> Path:
    folder = BUILD / "bundle-venv"
    if fresh:
        remove_own(folder, "pyvenv.cfg")
    python = folder / ("Scripts/python.exe" if WINDOWS else "bin/python")
    if not python.exists():
        venv.create(folder, with_pip=True)
    return python


def install(python: Path, torch_index: str) -> None:
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    # "+cpu" pins the CPU build on Linux and Windows, where a plain version may bring CUDA's
    # gigabytes; macOS wheels are CPU builds and carry no such tag.
    torch = f"torch=={TORCH}" if MACOS else f"torch=={TORCH}+cpu"
    index = ["--extra-index-url", torch_index] if torch_index else []
    run([*pip, *index, torch])
    # Linux: PyPI's torchvision is a CUDA build; its Python is what the app uses (models), its
    # compiled operators are left out by the spec. --no-deps keeps pip from replacing CPU torch.
    run([*pip, *index, "--no-deps", f"torchvision=={TORCHVISION}"])
    run([*pip, *index, str(REPO), f"pyinstaller=={PYINSTALLER}"])
    check = subprocess.run([python, "-c", "import torch; print(torch.version.cuda or '')"],
                           capture_output=True, text=True, check=True)
    if check.stdout.strip():
        sys.exit(f"build: the bundle's torch is a CUDA build ({check.stdout.strip()}); it must be CPU-only")


def freeze(python: Path, dist: Path, untrimmed: bool) -> Path:
    out = dist / "SSLStudio"
    remove_own(out, "_internal")
    environment = {**os.environ, "SSLSTUDIO_BUNDLE_UNTRIMMED": "1" if untrimmed else ""}
    run([python, "-m", "PyInstaller", REPO / "packaging" / "pyinstaller" / "sslstudio.spec",
         "--distpath", dist, "--workpath", BUILD / ("pyinstaller-untrimmed" if untrimmed else "pyinstaller"),
         "--noconfirm", "--log-level", "WARN"], env=environment)
    return out


def strip_symbols(bundle: Path) -> None:
    """PyTorch's libraries ship with their symbol tables (90 MB of libtorch_cpu.so), and so may
    the Python the build runs on (a pyenv build's libpython: 22 MB, 5 stripped). Only those:
    stripping every library, as PyInstaller's option does, breaks NumPy's OpenBLAS ('ELF load
    command address/offset not page-aligned')."""
    if not LINUX or not shutil.which("strip"):
        return
    internal = bundle / "_internal"
    libraries = [*internal.glob("torch/lib/*.so*"), *internal.glob("libpython3*.so*"),
                 *internal.glob("python3*/lib-dynload/*.so")]
    for library in sorted(p for p in libraries if p.is_file() and not p.is_symlink()):
        run(["strip", "--strip-unneeded", library])


def add_desktop_files(bundle: Path) -> None:
    shutil.copy2(REPO / "packaging" / f"{APP_ID}.svg", bundle / f"{APP_ID}.svg")
    shutil.copy2(REPO / "packaging" / f"{APP_ID}.desktop", bundle / f"{APP_ID}.desktop")
    if LINUX:
        for script in ("install.sh", "uninstall.sh"):
            target = bundle / script
            shutil.copy2(REPO / "packaging" / "linux" / script, target)
            target.chmod(0o755)


def archive(bundle: Path, version: str, dist: Path) -> Path:
    machine = platform.machine().lower().replace("amd64", "x86_64")
    system = "linux" if LINUX else "windows" if WINDOWS else "macos"
    name = f"SSLStudio-{version}-{system}-{machine}"
    if WINDOWS:
        return Path(shutil.make_archive(str(dist / name), "zip", dist, bundle.name))
    path = dist / f"{name}.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=6) as tar:
        tar.add(bundle, arcname="SSLStudio")
    return path


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def sizes(bundle: Path) -> dict[str, int]:
    """Bytes per component of the unpacked bundle."""
    totals = {name: 0 for name, _ in COMPONENTS}
    totals[PROGRAM] = totals["the rest"] = 0
    internal = bundle / "_internal"
    for path in bundle.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        if path.parent == bundle and path.stem == "SSLStudio":
            totals[PROGRAM] += path.stat().st_size
            continue
        relative = path.relative_to(internal).as_posix() if internal in path.parents else ""
        for name, patterns in COMPONENTS:
            if any(relative.startswith(p) or f"/{p}" in f"/{relative}" for p in patterns):
                totals[name] += path.stat().st_size
                break
        else:
            totals["the rest"] += path.stat().st_size
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true", help="make the build environment again")
    parser.add_argument("--torch-index", default=os.environ.get("SSLSTUDIO_TORCH_INDEX", ""),
                        help="an extra package index holding CPU torch builds (on CI runners: "
                             "https://download.pytorch.org/whl/cpu); this project's machines have "
                             "the file on disk")
    parser.add_argument("--self-test", action="store_true", help="run the built bundle's self-test")
    parser.add_argument("--untrimmed", action="store_true",
                        help="build without the trimming, into dist/untrimmed/, to measure what it saves")
    args = parser.parse_args()
    started = time.monotonic()
    sys.path.insert(0, str(REPO))
    from sslstudio import __version__

    dist = DIST / "untrimmed" if args.untrimmed else DIST
    python = bundle_python(args.fresh)
    install(python, args.torch_index)
    installed = time.monotonic()
    bundle = freeze(python, dist, args.untrimmed)
    if not args.untrimmed:
        strip_symbols(bundle)
    add_desktop_files(bundle)
    frozen = time.monotonic()
    packed = archive(bundle, __version__, dist)
    finished = time.monotonic()
    report = {"components": sizes(bundle), "unpacked": folder_bytes(bundle), "archive": packed.stat().st_size,
              "archive_name": packed.name,
              "seconds": {"install": round(installed - started, 1), "freeze": round(frozen - installed, 1),
                          "archive": round(finished - frozen, 1), "total": round(finished - started, 1)}}
    (dist / "bundle-sizes.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, size in report["components"].items():
        print(f"  {size / 2**20:8.1f} MiB  {name}")
    print(f"bundle {bundle}: {report['unpacked'] / 2**20:.0f} MiB unpacked; {packed.name}: "
          f"{report['archive'] / 2**20:.0f} MiB; built in {report['seconds']['total']:.0f} s "
          f"(install {report['seconds']['install']:.0f}, freeze {report['seconds']['freeze']:.0f}, "
          f"archive {report['seconds']['archive']:.0f})")
    if args.self_test:
        program = bundle / ("SSLStudio.exe" if WINDOWS else "SSLStudio")
        environment = {**os.environ}
        if LINUX and not environment.get("DISPLAY"):
            environment["QT_QPA_PLATFORM"] = "offscreen"
        return subprocess.run([str(program), "--self-test"], env=environment).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
