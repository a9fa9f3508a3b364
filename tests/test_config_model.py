"""engine.config.model (and model_tools): the sections' import path, the module size limit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import engine.config.model as model
import engine.config.model_tools as model_tools
from engine.config.convert import from_data


def test_tools_and_mcp_sections_are_importable_from_model() -> None:
    """Every class moved to model_tools is still importable from engine.config.model, the same object."""
    moved = [name for name, obj in vars(model_tools).items() if dataclasses.is_dataclass(obj)]
    assert {"McpConfig", "ToolsConfig", "WorkerConfig", "GatewayConfig", "HookConfig"} <= set(moved)
    for name in [*moved, "McpAuthMode"]:
        assert getattr(model, name) is getattr(model_tools, name), name


def test_config_modules_stay_under_the_line_limit() -> None:
    """No module of engine.config is over the project's ~400-line limit."""
    for path in Path(model.__file__).parent.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path.name


def test_a_config_with_moved_sections_converts() -> None:
    """from_data resolves the moved sections' type hints (mcp, tools, workers) into their dataclasses."""
    config = from_data(
        model.Config,
        {
            "mcp": {"auth": "none", "gateways": [{"slug": "g", "tools": ["A.*"]}]},
            "workers": [{"id": "w", "uri": "u"}],
        },
    )
    assert config.mcp.gateways[0] == model.GatewayConfig(slug="g", tools=("A.*",))
    assert config.workers[0].id == "w" and isinstance(config.tools, model.ToolsConfig)
