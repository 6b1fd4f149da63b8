"""The README is the front door: its pasted outputs are real, every command is documented."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```\n\$ (pcapstate [^\n]*)\n(.*?)\n```", README, flags=re.S)


def pcapstate(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "pcapstate", *args], capture_output=True, text=True,
                          cwd=ROOT).stdout.rstrip("\n")


@pytest.mark.parametrize("command, shown", [b for b in BLOCKS if "\n$ " not in b[1]], ids=lambda v: v[:60])
def test_pasted_output_matches_a_real_run(command, shown):
    out = pcapstate(*command.split()[1:])
    if shown.startswith("...\n"):  # an excerpt: the end of the output
        assert out.endswith(shown[4:])
    elif "\n...\n" in shown:  # head ... tail
        head, tail = shown.split("\n...\n")
        assert out.startswith(head) and out.endswith(tail)
    else:
        assert out == shown


def test_the_two_setup_commands_are_there():
    assert "pip install . && pcapstate analyze samples/" in README
    assert "\nbash tests/run.sh\n" in README
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("bash tests/run.sh -q")


def test_every_command_has_help_and_a_readme_section():
    from pcapstate.cli import cli

    assert set(cli.commands) >= {"analyze", "packets", "retries", "check"}
    for name, command in cli.commands.items():
        assert command.help and len(command.help) > 40, name
        assert f"### `pcapstate {name} " in README, name
