"""Running a Prefect SDK script against the browser tests' live server."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.e2e.conftest import last_json_line, sdk_env


def sdk_runner(ui_server, tmp_path_factory, source: str, name: str):
    """A function that runs the SDK script ``source`` (saved as ``name``) against the live
    server with its arguments and returns the script's last JSON line."""
    script = tmp_path_factory.mktemp("sdk") / name
    script.write_text(textwrap.dedent(source))

    def call(*args: str) -> dict:
        out = subprocess.run([sys.executable, str(script), *args], env=sdk_env(ui_server.url, ui_server.home),
                             capture_output=True, text=True, timeout=240, cwd=str(script.parent))
        assert out.returncode == 0, out.stderr[-3000:]
        return last_json_line(out.stdout)

    return call
