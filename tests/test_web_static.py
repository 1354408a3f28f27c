"""Static files the way production serves them: `collectstatic` into STATIC_ROOT with the hashed,
compressed storage of themoon/settings.py, then WhiteNoise answers /static/ under any server."""

import re

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client, override_settings

import themoon.settings as production


@pytest.fixture(scope="module")
def collected(tmp_path_factory, django_db_blocker):
    root = tmp_path_factory.mktemp("static")
    overrides = override_settings(
        STORAGES=production.STORAGES, STATIC_ROOT=root, WHITENOISE_USE_FINDERS=False
    )
    with overrides:
        call_command("collectstatic", "--noinput", verbosity=0)
        yield root


def test_production_storage_is_whitenoise_manifest():
    assert (
        production.STORAGES["staticfiles"]["BACKEND"]
        == "whitenoise.storage.CompressedManifestStaticFilesStorage"
    )
    assert "whitenoise.middleware.WhiteNoiseMiddleware" in production.MIDDLEWARE


def test_collectstatic_gathers_ours_the_docs_and_the_admin(collected):
    manifest = (collected / "staticfiles.json").read_text()
    for name in ("web/app.css", "web/chat.js", "ninja/swagger-ui-bundle.js", "admin/css/base.css"):
        assert f'"{name}"' in manifest
    assert (collected / "ninja" / "swagger-ui-bundle.js.gz").exists()  # compressed copies too


def test_pages_link_hashed_assets_that_whitenoise_serves_for_a_year(db, collected):
    html = Client().get("/api/docs").content.decode()
    bundle = re.search(r'src="(/static/ninja/swagger-ui-bundle\.[0-9a-f]{12}\.js)"', html)
    assert bundle, html
    response = Client().get(bundle.group(1), HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert "max-age=315360000" in response["Cache-Control"]
    assert "immutable" in response["Cache-Control"]


def test_the_admin_is_styled(db, collected):
    html = Client().get("/admin/login/").content.decode()
    stylesheet = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', html)
    assert stylesheet, html
    response = Client().get(stylesheet.group(1))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")


def test_an_unknown_static_file_is_a_404(db, collected):
    assert Client().get(settings.STATIC_URL + "web/nothing-here.js").status_code == 404
