"""Scenario files: the shipped ones validate; errors name file, line and field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qkdnet.errors import ParameterError, ScenarioError
from qkdnet.scenario import dump_scenario, load_scenario, parse_duration_s, scenario_from_dict

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_validate(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.nodes and scenario.links
    # Every link's physics is a valid LinkSpec.
    for link in scenario.links:
        assert link.to_link_spec().length_km == link.length_km


def test_tokyo_scenario_has_the_published_network() -> None:
    s = load_scenario(SCENARIOS / "tokyo-qkd-network.yaml")
    assert {n.id for n in s.nodes} == {"Koganei", "Otemachi", "Hakusan", "Hongo"}
    lengths = {link.id: link.length_km for link in s.links}
    # Sasaki et al. 2011: six systems; NEC and Toshiba over 45 km, NTT DPS 90 km loop,
    # Mitsubishi 24 km loop, IDQ 13 km, All Vienna 1 km.
    assert lengths == {
        "NEC": 45, "Toshiba": 45, "NTT-DPS": 90, "Mitsubishi": 24, "IDQ": 13, "All-Vienna": 1,
    }
    assert s.failures, "the demo needs a failure to show a reroute"


@pytest.mark.parametrize(
    ("text", "expected"),
    [(90, 90.0), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0), ("1.5d", 129600.0)],
)
def test_parse_duration(text: object, expected: float) -> None:
    assert parse_duration_s(text) == expected


@pytest.mark.parametrize("bad", ["2 weeks", "-3h", "h", True])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ParameterError):
        parse_duration_s(bad)


MINIMAL = """\
name: t
nodes:
  - {id: A}
  - {id: B}
links:
  - id: L
    a: A
    b: B
    length_km: 10
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_loads(tmp_path: Path) -> None:
    s = load_scenario(_write(tmp_path, MINIMAL))
    assert s.duration_s == 86400.0 and s.links[0].loss_db_per_km == 0.2


def test_bad_value_names_file_line_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL.replace("length_km: 10", "length_km: -10"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert f"{path}:9:" in message and "links[0].length_km" in message


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + "    lenght_km: 3\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert f"{path}:10:" in str(info.value) and "lenght_km" in str(info.value)


def test_unknown_node_reference(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL.replace("b: B", "b: Z"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert f"{path}:8: links[0].b: unknown node 'Z'" in str(info.value)


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + "  - {id: [\n")
    with pytest.raises(ScenarioError, match=r"s\.yaml:1\d: invalid YAML"):
        load_scenario(path)


def test_failure_needs_timing(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + "failures:\n  - {element: L}\n")
    with pytest.raises(ScenarioError, match=r"failures\[0\]"):
        load_scenario(path)


def test_dump_round_trip(tmp_path: Path) -> None:
    s = load_scenario(SCENARIOS / "example.yaml")
    again = load_scenario(_write(tmp_path, dump_scenario(s)))
    assert again == s


def _doc_blocks() -> list[str]:
    text = (SCENARIOS.parent / "docs" / "scenarios.md").read_text(encoding="utf-8")
    return re.findall(r"```yaml\n(.*?)```", text, flags=re.S)


def test_docs_examples_validate(tmp_path: Path) -> None:
    """The YAML in docs/scenarios.md: whole scenarios load; fragments validate when put
    into the Tokyo scenario (whose node and link names they use)."""
    import yaml

    blocks = _doc_blocks()
    assert blocks
    tokyo = yaml.safe_load((SCENARIOS / "tokyo-qkd-network.yaml").read_text(encoding="utf-8"))
    for block in blocks:
        data = yaml.safe_load(block)
        if "name" in data:
            load_scenario(_write(tmp_path, block))
        elif "failures" in data:
            merged = dict(tokyo, failures=data["failures"])
            assert scenario_from_dict(merged).failures[0].element == "IDQ"
        elif "applications" in data:
            base = yaml.safe_load(MINIMAL)
            base["nodes"] = [{"id": "A"}, {"id": "B"}]
            merged = dict(base, **data)
            assert scenario_from_dict(merged).applications[0].id == "vpn"
