"""The explorer's server: what it serves, and the paths it refuses (Starlette's TestClient
over the real app; the `..` forms that an HTTP client would normalise away are sent as raw
ASGI requests)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from polysemy.cli import main
from polysemy.explorer.server import ServeConfig, create_app, is_loopback, safe_path


@pytest.fixture(scope="module")
def client(tiny_run: Path) -> TestClient:
    return TestClient(create_app(tiny_run), base_url="http://127.0.0.1")


def raw_get(app: Any, raw_path: bytes, host: bytes = b"127.0.0.1") -> tuple[int, bytes]:
    """One GET with `raw_path` exactly as written (no client-side normalisation)."""
    from urllib.parse import unquote

    path = unquote(raw_path.decode("latin-1"))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": raw_path, "query_string": b"",
        "root_path": "", "headers": [(b"host", host)], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        # The body once; then the client "disconnects" (a response may listen for it).
        return requests.pop() if requests else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


def test_pages_static_and_data(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "polysemy explorer" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    for name in ("app.js", "style.css", "plotly.min.js"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/static/index.py").status_code == 404
    index = client.get("/data/index.json").json()
    assert index["dictionaries"][0]["id"] == "mlp"
    assert client.get("/data/dicts/mlp/features/0.json").json()["3"]["feature"] == 3
    assert client.get("/data/dicts/mlp/neurons/0.json").json()["0"]["neuron"] == 0


@pytest.mark.parametrize(
    "path", ["/data/dicts/mlp/features/1.json", "/data/dicts/mlp/features/999999.json",
             "/data/dicts/mlp/features/-1.json", "/data/dicts/mlp/neurons/2.json",
             "/data/dicts/nope/features/0.json", "/data/nothing"],
)  # fmt: skip
def test_unknown_ids_are_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


SECRET = b"polysemy.analysis/1"  # in every analysis.json, outside explorer/


@pytest.mark.parametrize(
    "raw",
    [
        b"/data/../analyses/claims-demo/analysis.json",
        b"/data/dicts/../../analyses/claims-demo/analysis.json",
        b"/data/%2e%2e/analyses/claims-demo/analysis.json",
        b"/data/%2E%2E/analyses/claims-demo/analysis.json",
        b"/data/..%2fanalyses/claims-demo/analysis.json",
        b"/data/%2e%2e%2fanalyses%2fclaims-demo%2fanalysis.json",
        b"/data/%252e%252e/analyses/claims-demo/analysis.json",
        b"/data//etc/passwd",
        b"/data/%2fetc%2fpasswd",
        b"/data/..\\analyses\\claims-demo\\analysis.json",
        b"/data/./index.json",
        b"/data/.hidden",
    ],
)
def test_traversal_is_refused(tiny_run: Path, raw: bytes) -> None:
    status, body = raw_get(create_app(tiny_run), raw)
    assert status in (400, 404)
    assert SECRET not in body and b"root:" not in body


def test_symlinks_out_of_the_folder_are_refused(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    outside = tmp_path / "secret.json"
    outside.write_text('{"secret": 1}')
    os.symlink(outside, run / "explorer" / "leak.json")
    os.symlink(tmp_path, run / "explorer" / "up")
    app = create_app(run)
    client = TestClient(app, base_url="http://127.0.0.1")
    assert client.get("/data/leak.json").status_code == 404
    assert client.get("/data/up/secret.json").status_code == 404
    assert client.get("/data/index.json").status_code == 200
    assert safe_path(run / "explorer", "leak.json") is None
    with pytest.raises(ValueError):
        safe_path(run / "explorer", "../secret.json")


def test_foreign_host_header_is_refused(tiny_run: Path) -> None:
    status, _ = raw_get(create_app(tiny_run), b"/data/index.json", host=b"evil.example")
    assert status == 400
    status, _ = raw_get(create_app(tiny_run), b"/data/index.json", host=b"localhost:8000")
    assert status == 200


def test_serve_config_and_loopback() -> None:
    assert ServeConfig().host == "127.0.0.1" and ServeConfig().loopback
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    with pytest.raises(ValueError, match="port must be"):
        ServeConfig(port=70000)


def test_cli_refuses_bad_input(tiny_run: Path, tmp_path: Path, capsys: Any) -> None:
    assert main(["explore", str(tmp_path / "missing"), "--no-browser"]) == 2
    assert "run must be a folder" in capsys.readouterr().err
    assert main(["explore", str(tiny_run), "--port", "-1", "--no-browser"]) == 2
    assert "--port" in capsys.readouterr().err


def test_cli_warns_for_a_non_loopback_host(tiny_run: Path, capsys: Any) -> None:
    # 192.0.2.1 (TEST-NET-1) is not an address of this machine: the bind fails after the
    # warning (uvicorn exits), so nothing listens beyond loopback.
    with pytest.raises(SystemExit):
        main(["explore", str(tiny_run), "--host", "192.0.2.1", "--port", "0", "--no-browser"])
    assert "warning: --host 192.0.2.1 is not a loopback address" in capsys.readouterr().err
