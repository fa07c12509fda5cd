"""The ``harmonizer_cli.core.research`` package: its re-exports, and no TensorFlow or librosa at import."""

from __future__ import annotations

import importlib
import subprocess
import sys

import harmonizer_cli.core.research as research
from harmonizer_cli.core.research import fetch


def test_every_reexported_name_is_its_module_attribute() -> None:
    assert len(set(research.__all__)) == len(research.__all__)
    for name in research.__all__:
        value = getattr(research, name)
        module = importlib.import_module(getattr(value, "__module__", None) or research.__name__)
        assert module.__name__.startswith("harmonizer_cli.core.research"), (name, module.__name__)


def test_fetch_package_exports_its_public_api() -> None:
    for name in fetch.__all__:
        assert getattr(fetch, name) is not None
    assert fetch.fetch_dataset.__module__ == "harmonizer_cli.core.research.fetch.download"


def test_importing_the_packages_stays_light() -> None:
    code = (
        "import sys\n"
        "import harmonizer_cli.core.research\n"
        "import harmonizer_cli.core.research.fetch\n"
        "heavy = ('tensorflow', 'keras', 'librosa', 'numba')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
