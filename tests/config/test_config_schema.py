"""The generated JSON Schema of mcpwall.yaml: deterministic, checkable for staleness, true to the model."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from mcpwall.config import schema

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "config.schema.json"


def test_render_is_deterministic() -> None:
    assert schema.render() == schema.render()
    assert schema.render().endswith("}\n")


def test_committed_schema_is_current() -> None:
    assert schema.main(["--check", str(COMMITTED)]) == 0, (
        "run `make schema` and commit docs/config.schema.json"
    )


def test_check_fails_on_a_stale_file_and_passes_after_write(tmp_path: Path) -> None:
    target = tmp_path / "config.schema.json"
    target.write_text("{}\n")
    assert schema.main(["--check", str(target)]) == 1
    assert schema.main(["--write", str(target)]) == 0
    assert schema.main(["--check", str(target)]) == 0


def test_check_fails_when_the_file_is_missing(tmp_path: Path) -> None:
    assert schema.main(["--check", str(tmp_path / "absent.json")]) == 1


@pytest.mark.parametrize(
    "config",
    [
        {},
        {
            "listen": {"port": 9000},
            "servers": {"fs": {"command": "npx", "args": ["-y", "x"], "timeout": "30s"}},
        },
        {"servers": {"remote": {"url": "https://mcp.example.com/mcp", "timeout": 12.5}}},
        {"guards": {"limits": {"max_message_bytes": "4MiB"}}},
    ],
)
def test_valid_configs_validate_against_the_schema(config: dict[str, object]) -> None:
    jsonschema.Draft202012Validator(schema.generate()).validate(config)


@pytest.mark.parametrize(
    "config",
    [
        {"listen": {"port": 9000, "unknown": 1}},
        {"servers": {"fs": {"command": "npx", "timeout": "soon"}}},
        {"guards": {"limits": {"max_message_bytes": "4 parsecs"}}},
        {"listen": {"legacy_session_idle_timeout": -1}},
    ],
)
def test_invalid_configs_are_rejected_by_the_schema(config: dict[str, object]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema.generate()).validate(config)
