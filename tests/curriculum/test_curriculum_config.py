"""CurriculumConfig and the phase table: errors name file and key."""

from pathlib import Path

import pytest
import yaml

from carla_rl.contract.config import ConfigError
from carla_rl.curriculum import CurriculumConfig, load_curriculum_config, load_phase_table

CONFIG_FILE = Path(__file__).resolve().parents[2] / "config" / "curriculum.yaml"


def edited_copy(tmp_path, edit) -> Path:
    data = yaml.safe_load(CONFIG_FILE.read_text())
    edit(data)
    path = tmp_path / "curriculum.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_block_matches_defaults():
    assert load_curriculum_config(CONFIG_FILE) == CurriculumConfig()


def test_unknown_key_names_file_and_key(tmp_path):
    def edit(data):
        data["/**/curriculum_manager"]["ros__parameters"]["evaluate_every"] = 3
    path = edited_copy(tmp_path, edit)
    expected = r"curriculum\.yaml: curriculum_manager.*'evaluate_every'"
    with pytest.raises(ConfigError, match=expected):
        load_curriculum_config(path)


def test_bad_policy_is_rejected(tmp_path):
    def edit(data):
        data["/**/curriculum_manager"]["ros__parameters"]["on_budget_exhausted"] = "give_up"
    with pytest.raises(ConfigError, match="on_budget_exhausted"):
        load_curriculum_config(edited_copy(tmp_path, edit))


def test_broken_phase_is_isolated_in_the_table(tmp_path):
    def edit(data):
        data["/**"]["ros__parameters"]["phases"]["phase_4"]["scenario"]["map_name"] = "moon"
    table = load_phase_table(edited_copy(tmp_path, edit))
    assert isinstance(table[3], ConfigError)
    assert "curriculum.yaml" in str(table[3])
    assert "phases.phase_4.scenario.map_name" in str(table[3])
    assert sum(isinstance(entry, ConfigError) for entry in table) == 1


def test_missing_phase_fails_the_table(tmp_path):
    def edit(data):
        del data["/**"]["ros__parameters"]["phases"]["phase_10"]
    with pytest.raises(ConfigError, match="missing phase_10"):
        load_phase_table(edited_copy(tmp_path, edit))
