from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGING = Path(__file__).resolve().parents[1] / "packaging"


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils not installed")
def test_desktop_file_validates():
    result = subprocess.run(["desktop-file-validate", str(PACKAGING / "io.github.sslstudio.SSLStudio.desktop")],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "error" not in result.stdout, result.stdout


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="appstream not installed")
def test_metainfo_validates():
    result = subprocess.run(["appstreamcli", "validate", "--no-net",
                             str(PACKAGING / "io.github.sslstudio.SSLStudio.metainfo.xml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_icon_is_an_svg_the_app_can_load():
    from PySide6.QtGui import QIcon

    from sslstudio.gui.app import icon_path

    assert icon_path().exists()
    assert not QIcon(str(icon_path())).isNull()


def _unpacked_bundle(folder: Path) -> Path:
    """What install.sh sees beside it in an unpacked bundle: the program (a stand-in here), the
    desktop entry and the icon."""
    bundle = folder / "SSLStudio"
    bundle.mkdir(parents=True)
    program = bundle / "SSLStudio"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    for name in ("io.github.sslstudio.SSLStudio.desktop", "io.github.sslstudio.SSLStudio.svg"):
        shutil.copy2(PACKAGING / name, bundle / name)
    for script in ("install.sh", "uninstall.sh"):
        shutil.copy2(PACKAGING / "linux" / script, bundle / script)
    return bundle


def _run(script: Path, home: Path) -> subprocess.CompletedProcess:
    environment = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["sh", str(script)], capture_output=True, text=True, env=environment, check=True)


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
def test_install_script_puts_the_bundle_in_the_menu_and_uninstall_takes_only_that_out(tmp_path):
    home = tmp_path / "home with spaces"
    bundle = _unpacked_bundle(tmp_path / "apps")
    _run(bundle / "install.sh", home)
    entry = home / ".local/share/applications/io.github.sslstudio.SSLStudio.desktop"
    icon = home / ".local/share/icons/hicolor/scalable/apps/io.github.sslstudio.SSLStudio.svg"
    command = home / ".local/bin/sslstudio"
    assert f'Exec="{bundle}/SSLStudio" gui %f' in entry.read_text().splitlines()
    assert icon.read_bytes() == (bundle / "io.github.sslstudio.SSLStudio.svg").read_bytes()
    assert command.resolve() == (bundle / "SSLStudio").resolve()
    _run(bundle / "install.sh", home)  # again, as after moving the folder: its own files are replaced
    assert entry.read_text().count("X-SSLStudio-Installed-By") == 1
    (home / ".local/share/applications/other.desktop").write_text("[Desktop Entry]\n")
    _run(bundle / "uninstall.sh", home)
    assert not entry.exists() and not icon.exists() and not command.exists() and not command.is_symlink()
    assert (home / ".local/share/applications/other.desktop").exists()
    assert (bundle / "SSLStudio").exists()


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
def test_install_script_never_replaces_files_it_did_not_make(tmp_path):
    home = tmp_path / "home"
    bundle = _unpacked_bundle(tmp_path / "apps")
    entry = home / ".local/share/applications/io.github.sslstudio.SSLStudio.desktop"
    command = home / ".local/bin/sslstudio"
    entry.parent.mkdir(parents=True)
    command.parent.mkdir(parents=True)
    entry.write_text("[Desktop Entry]\nExec=sslstudio gui\n")  # a pip install's own entry, say
    command.write_text("#!/bin/sh\n# pip's sslstudio\n")
    result = _run(bundle / "install.sh", home)
    assert "left as it is" in result.stderr
    assert entry.read_text() == "[Desktop Entry]\nExec=sslstudio gui\n"
    assert command.read_text() == "#!/bin/sh\n# pip's sslstudio\n"
    _run(bundle / "uninstall.sh", home)
    assert entry.exists() and command.exists()


def test_a_wheel_install_finds_the_sample_and_icon_outside_a_checkout(tmp_path):
    """`pip install sslstudio` (not editable) has no resources/ beside the package: the wheel
    carries them as data files and the app must find them there."""
    pytest.importorskip("setuptools")
    repo = PACKAGING.parent
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("sslstudio", "resources"):
        shutil.copytree(repo / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(repo / name, source / name)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(wheels)],
                   check=True, capture_output=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", *map(str, wheels.glob("*.whl"))],
                   check=True, capture_output=True)
    shutil.rmtree(source)  # nothing of the checkout is left to find
    found = subprocess.run([str(python), "-c", "from sslstudio.resources import sample_dataset_path, icon_path; "
                            "print(sample_dataset_path()); print(icon_path())"],
                           check=True, capture_output=True, text=True, cwd=tmp_path).stdout.split()
    sample, icon = Path(found[0]), Path(found[1])
    assert sample.is_relative_to(venv) and icon.is_relative_to(venv)
    shipped = sorted(p.relative_to(repo / "resources" / "samples" / "fashion-mnist")
                     for p in (repo / "resources" / "samples" / "fashion-mnist").rglob("*") if p.is_file())
    assert sorted(p.relative_to(sample) for p in sample.rglob("*") if p.is_file()) == shipped
    assert icon.read_bytes() == (repo / "resources" / "icons" / "sslstudio.svg").read_bytes()
