"""The README and .env.example name every setting, so one grep finds each of them."""

import pytest

from app.config import Settings
from tests.conftest import ROOT


@pytest.mark.parametrize("document", ["README.md", ".env.example"])
def test_every_setting_is_named_in_the_document(document: str) -> None:
    text = (ROOT / document).read_text()

    missing = [name for name in Settings.model_fields if name not in text]

    assert missing == []


def test_the_readme_shows_the_browser_screenshots_it_references() -> None:
    readme = (ROOT / "README.md").read_text()

    for image in ("docs/images/demo-client.png", "docs/images/swagger-authorize.png"):
        assert f"]({image})" in readme
        assert (ROOT / image).read_bytes().startswith(b"\x89PNG")
