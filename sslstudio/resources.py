"""Where the files that ship with the app are. In a checkout, an editable install and the bundle
they are resources/ beside the package; a wheel installs them as data files under the install
scheme's data directory (share/sslstudio in a venv, ~/.local/share/sslstudio with --user),
because a wheel can carry files outside its packages only that way."""

from __future__ import annotations

import sysconfig
from pathlib import Path

BESIDE_PACKAGE = Path(__file__).resolve().parents[1] / "resources"


def _installed_copies() -> list[Path]:
    schemes = [sysconfig.get_default_scheme()]
    user = sysconfig.get_preferred_scheme("user")
    if user not in schemes:
        schemes.append(user)
    return [Path(sysconfig.get_path("data", scheme)) / "share" / "sslstudio" for scheme in schemes]


def resources_dir() -> Path:
    """The first place that holds the sample: the checkout's folder, else a wheel's data files.
    When neither does, the checkout's path, so that an error names where it looked first."""
    for candidate in [BESIDE_PACKAGE, *_installed_copies()]:
        if (candidate / "samples").is_dir():
            return candidate
    return BESIDE_PACKAGE


def sample_dataset_path() -> Path:
    """The bundled sample dataset (300 Fashion-MNIST images in class folders)."""
    return resources_dir() / "samples" / "fashion-mnist"


def icon_path() -> Path:
    return resources_dir() / "icons" / "sslstudio.svg"
