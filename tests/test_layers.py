"""The layer rule, read from the source's imports: api -> services -> stores, security,
models, mail, observability; nothing imports back up (README, "Development")."""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"
# Run by a command or a server, imported by no module: they may use one layer only.
ENTRY_POINTS = {"app.main", "app.cli"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module the file imports, at any depth of the file (also inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            assert node.module is not None
            found.add(node.module)
            # `from app.services import sessions` imports the module app.services.sessions.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


IMPORTS = {_module_name(path): _imports(path) for path in sorted(APP.rglob("*.py"))}


def _modules_in(package: str) -> dict[str, set[str]]:
    return {name: found for name, found in IMPORTS.items() if name.startswith(f"app.{package}.")}


def _offending(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for module, found in _modules_in(package).items()
        for name in found
        if any(name == banned or name.startswith(f"{banned}.") for banned in forbidden)
    )


def test_the_import_reader_sees_every_package() -> None:
    # Guards the rules below against passing because they read nothing.
    for package in ("api", "services", "stores", "security", "mail", "observability"):
        assert _modules_in(package), package
    assert "app.services.sessions" in IMPORTS["app.services.accounts"]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        pytest.param(
            "security",
            ("fastapi", "starlette", "sqlalchemy", "app.api", "app.services", "app.stores"),
            id="security-is-pure",
        ),
        pytest.param("stores", ("fastapi", "app.api", "app.services"), id="stores-below-services"),
        pytest.param("services", ("fastapi", "app.api"), id="services-know-no-http"),
        pytest.param("observability", ("app.api", "app.services"), id="observability-below-all"),
        pytest.param(
            "mail",
            ("app.api",),
            id="mail-below-api",
        ),
    ],
)
def test_a_layer_imports_nothing_above_it(package: str, forbidden: tuple[str, ...]) -> None:
    assert _offending(package, forbidden) == []


def test_mail_backends_know_no_use_case_and_only_the_sender_drives_the_outbox() -> None:
    # The sender is a worker, like a command: it runs the outbox use cases (claim, mark
    # sent) and hands each mail to a backend, which knows nothing above it.
    users_of_services = {
        module
        for module, found in _modules_in("mail").items()
        if any(name == "app.services" or name.startswith("app.services.") for name in found)
    }
    assert users_of_services == {"app.mail.sender"}
    assert "app.mail.backends" in IMPORTS


def test_no_module_imports_the_api_layer_but_the_app_factory() -> None:
    importers = sorted(
        module
        for module, found in IMPORTS.items()
        if not module.startswith("app.api")
        and any(name == "app.api" or name.startswith("app.api.") for name in found)
    )
    assert set(importers) <= {"app.main", "app.cli"}, importers


def _room(module: str) -> str:
    """Where a module lives: its subpackage (app.api, ...) or itself at the top level."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_every_top_level_module_serves_more_than_one_room() -> None:
    """A top-level module used by one subpackage only belongs inside that subpackage."""
    users: defaultdict[str, set[str]] = defaultdict(set)
    for module, found in IMPORTS.items():
        for name in found:
            parts = name.split(".")
            if parts[0] == "app" and len(parts) > 1:
                target = f"app.{parts[1]}"
                if target in IMPORTS and _room(module) != target:
                    users[target].add(_room(module))
    top_level = {
        module for module in IMPORTS if module.count(".") == 1 and not (APP / module[4:]).is_dir()
    }
    assert top_level >= {"app.config", "app.models", "app.errors"}
    lonely = {
        module: sorted(users[module])
        for module in sorted(top_level - ENTRY_POINTS)
        if len(users[module]) < 2
    }
    assert lonely == {}


def test_the_database_module_the_services_use_knows_no_http() -> None:
    # Services import app.db: through it they would reach FastAPI (get_db lives in api/).
    assert not [
        name for name in IMPORTS["app.db"] if name.split(".")[0] in ("fastapi", "starlette")
    ]
