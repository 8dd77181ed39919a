"""Every config, study (with each of its profiles) and sweep the repository ships loads.

A shipped file that no longer validates (a renamed key, a profile's override that the schema
refuses) would otherwise surface only when a user runs it, minutes into a study.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from encoderlab.config import Config, FinetuneConfig, load_config
from encoderlab.study import load_study
from encoderlab.sweep.spec import load_sweep

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted([*ROOT.glob("configs/*.yaml"), *ROOT.glob("examples/*/*.yaml")])


def kind(path: Path) -> str:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if "arms" in data:
        return "study"
    if "space" in data:
        return "sweep"
    return "finetune" if "task" in data else "pretrain"


def test_the_repository_ships_configs_of_every_kind():
    kinds = {kind(p) for p in FILES}
    assert {"study", "sweep", "finetune", "pretrain"} <= kinds, kinds


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_file_loads(path: Path, monkeypatch):
    monkeypatch.chdir(ROOT)  # data paths in shipped configs are relative to the repository root
    what = kind(path)
    if what == "study":
        if not (ROOT.parent / "shared" / "data").is_dir():  # load_study checks the data files
            pytest.skip("../shared/data is absent: a study's data files cannot be checked")
        profiles = yaml.safe_load(path.read_text(encoding="utf-8")).get("profiles") or {}
        for profile in [None, *profiles]:
            study = load_study(path, profile)  # checks every entry's config with its overrides
            assert study.entries(), (path, profile)
    elif what == "sweep":
        assert load_sweep(path).spec.space
    elif what in ("finetune", "pretrain"):
        cfg = load_config(path, [], FinetuneConfig if what == "finetune" else Config)
        assert cfg.name
