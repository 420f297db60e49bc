import subprocess
import sys

import pytest

from worker import __version__
from worker.cli import main


def test_version_flag_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"memscore {__version__}"


@pytest.mark.parametrize("command", ["run", "score", "migrate"])
def test_each_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: memscore {command}" in capsys.readouterr().out


def test_python_dash_m_worker_is_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker", "--version"], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout.strip()) == (0, f"memscore {__version__}")
