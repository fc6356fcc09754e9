"""The house's rules, checked on the source: layers import downward only (models → memory → tools → agent → ui),
and only the settings classes read the environment. Imports inside functions count too: a lazy import up a
layer is still an upward dependency."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["models", "memory", "tools", "agent", "ui"]
RANK = {name: i for i, name in enumerate(LAYERS)}

# Modules that read the environment on purpose: each layer's settings class, the Openfabric client's own settings,
# and the one place that composes a child process's PYTHONPATH (it extends the variable, it is not configuration).
ENV_READERS = {
    "models/settings.py", "memory/settings.py", "tools/settings.py", "agent/settings.py", "ui/settings.py",
    "tools/openfabric/config.py",
}
ENV_PASS_THROUGH = {("agent/api/server.py", "PYTHONPATH")}


def modules():
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            if "node_modules" not in path.parts:
                yield layer, path, ast.parse(path.read_text(), filename=str(path))


def imported(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__" and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            yield node.lineno, node.args[0].value


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and getattr(node.value, "id", None) == "os"


def environment_reads(tree: ast.AST):
    """(line, variable) for os.environ.get(...), os.getenv(...), os.environ[...] read, and `... in os.environ`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            reading = (isinstance(func, ast.Attribute) and func.attr == "get" and _is_environ(func.value)) or \
                      (isinstance(func, ast.Attribute) and func.attr == "getenv" and getattr(func.value, "id", None) == "os")
            if reading:
                name = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else "?"
                yield node.lineno, name
        elif isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
            yield node.lineno, node.slice.value if isinstance(node.slice, ast.Constant) else "?"
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            yield node.lineno, node.left.value if isinstance(node.left, ast.Constant) else "?"


def test_no_import_runs_up_a_layer():
    upward = []
    for layer, path, tree in modules():
        for line, name in imported(tree):
            top = name.split(".")[0]
            if top in RANK and RANK[top] > RANK[layer]:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert upward == [], "imports that run up a layer (models → memory → tools → agent → ui):\n" + "\n".join(upward)


def test_only_settings_classes_read_the_environment():
    reads = []
    for _layer, path, tree in modules():
        rel = str(path.relative_to(ROOT))
        if rel in ENV_READERS:
            continue
        reads += [f"{rel}:{line} reads {name}" for line, name in environment_reads(tree) if (rel, name) not in ENV_PASS_THROUGH]
    assert reads == [], "read the environment through the layer's settings class instead:\n" + "\n".join(reads)


def test_the_checks_catch_what_they_look_for():
    """The two checks above would pass on anything if the parsing were wrong; a planted example must be caught."""
    tree = ast.parse("import os\ndef f():\n    from agent.graph import build_graph\n    return os.environ.get('X'), os.getenv('Y'), "
                     "os.environ['Z'], 'W' in os.environ\nos.environ['V'] = '1'\n")
    assert [name for _, name in imported(tree)] == ["os", "agent.graph"]
    assert sorted(name for _, name in environment_reads(tree)) == ["W", "X", "Y", "Z"]


def test_every_setting_is_described():
    """Each layer's settings fields say what they are (they are the configuration reference)."""
    import agent.settings
    import memory.settings
    import models.settings
    import tools.settings
    import ui.settings

    classes = [models.settings.ModelSettings, memory.settings.MemorySettings, tools.settings.ToolSettings,
               agent.settings.AgentSettings, ui.settings.UISettings]
    missing = [f"{cls.__name__}.{name}" for cls in classes for name, field in cls.model_fields.items() if not field.description]
    assert missing == []
    names = [name for cls in classes for name in cls.model_fields]
    assert len(names) == len(set(names)), "one variable, one owner"


def undescribed_configuration_fields(cls) -> list[str]:
    """Per-run fields (dataclass fields a caller can set) without a non-empty metadata["description"]."""
    from dataclasses import fields

    return [f"{cls.__name__}.{f.name}" for f in fields(cls) if f.init and not str(f.metadata.get("description") or "").strip()]


def test_every_per_run_setting_is_described():
    """The per-run configuration (RunnableConfig["configurable"]) is a reference too: every field a caller can set
    says what it is and what it accepts, in the tools' part and the agent's."""
    from dataclasses import dataclass, field, fields

    import agent.configuration
    import tools.configuration

    classes = [tools.configuration.ToolConfiguration, agent.configuration.Configuration]
    assert [undescribed_configuration_fields(cls) for cls in classes] == [[], []]
    described = {f.name for cls in classes for f in fields(cls)}
    assert {"user_id", "width", "seed", "image_backends", "decision_policy", "review_prompt"} <= described

    @dataclass(kw_only=True)
    class Careless(tools.configuration.ToolConfiguration):  # the check itself catches a field left bare
        speed: int = 1
        mood: str = field(default="", metadata={"description": " "})

    assert undescribed_configuration_fields(Careless) == ["Careless.speed", "Careless.mood"]


def _settings_variables() -> dict[str, str]:
    """ATELIER_* variable → the class that owns it (aliases included, e.g. ATELIER_API_JOBS)."""
    import agent.settings
    import memory.settings
    import models.settings
    import tools.openfabric.config
    import tools.settings
    import ui.settings

    owners: dict[str, str] = {}
    for cls in (models.settings.ModelSettings, memory.settings.MemorySettings, tools.settings.ToolSettings,
                agent.settings.AgentSettings, ui.settings.UISettings, tools.openfabric.config.OpenfabricSettings):
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            aliases = getattr(field.validation_alias, "choices", None) or ([field.validation_alias] if field.validation_alias else [])
            for variable in [a for a in aliases if isinstance(a, str)] or [f"{prefix}{name}".upper()]:
                owners[variable.upper()] = cls.__name__
    return owners


def test_the_readme_names_every_variable_and_no_dead_one():
    """The README's configuration is the operator's reference: every ATELIER_ variable a settings class reads is
    in it, and every ATELIER_ variable it (or docs/) names is read by one (a renamed or removed setting fails here)."""
    import re

    owners = {v: c for v, c in _settings_variables().items() if v.startswith("ATELIER_")}
    readme = (ROOT / "README.md").read_text()
    configuration = readme[readme.index("## Configuration"):]
    openfabric_doc = (ROOT / "docs" / "openfabric.md").read_text()
    unlisted = sorted(v for v, c in owners.items() if v not in configuration
                      and not (c == "OpenfabricSettings" and v in openfabric_doc))
    assert unlisted == [], f"settings the README's Configuration section does not name: {unlisted}"
    # Variables that are not settings on purpose: the test suite's knobs (read in tests/), the compose files' own
    # (ports, replicas: ${ATELIER_...} there) and scripts/bootstrap.sh's cache folder.
    not_settings = {"ATELIER_CACHE"}
    for path in (ROOT / "tests").rglob("*.py"):
        not_settings |= {name for _, name in environment_reads(ast.parse(path.read_text()))}
    for path in ROOT.glob("docker-compose*.yml"):
        not_settings |= set(re.findall(r"\$\{(ATELIER_[A-Z0-9_]+)", path.read_text()))
    named = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        named |= set(re.findall(r"\bATELIER_[A-Z0-9_]*[A-Z0-9]\b", doc.read_text()))
    dead = sorted(v for v in named - set(owners) - not_settings if not v.endswith("_"))
    assert dead == [], f"variables the docs name but no settings class reads: {dead}"
