"""The names users install and import: the distribution, the packages and the command."""

from __future__ import annotations

import importlib.metadata

import seigr_toolset_transmissions
import stt

DISTRIBUTION = "seigr-toolset-transmissions"


def test_the_distribution_has_a_name_no_other_project_uses():
    # ``stt`` on the package index is an unrelated speech-to-text library.
    dist = importlib.metadata.distribution(DISTRIBUTION)
    assert dist.metadata["Name"] == DISTRIBUTION
    assert dist.version == stt.__version__


def test_the_distribution_installs_the_stt_command():
    dist = importlib.metadata.distribution(DISTRIBUTION)
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"stt": "stt_io.cli:main"}


def test_the_manual_package_name_re_exports_the_asyncio_api():
    assert seigr_toolset_transmissions.__all__ == stt.__all__
    for name in stt.__all__:
        assert getattr(seigr_toolset_transmissions, name) is getattr(stt, name), name
