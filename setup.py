"""The package list: app* plus the top-level alembic/ folder, shipped as app.migrations.

`jwt-auth-api migrate` finds the migrations inside the installed package, so a wheel
works from any directory; alembic/ stays at the top level for `alembic upgrade head`
in a checkout (pyproject.toml maps app.migrations to it).
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["app", "app.*"]), "app.migrations", "app.migrations.versions"]
)
