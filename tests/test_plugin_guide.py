"""docs/custom-trainer-plugin.md cannot rot: its code blocks are written out as a package,
installed, listed by `palaestra trainers`, and trained through `palaestra learn`."""
import os
import pathlib
import re
import subprocess
import sys

GUIDE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "custom-trainer-plugin.md"
BLOCK = re.compile(r"^```\w+ file=(\S+)\n(.*?)^```$", re.S | re.M)


def _write_guide_files(root: pathlib.Path) -> dict:
    files = dict(BLOCK.findall(GUIDE.read_text()))
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return files


def test_guide_lists_every_file_of_its_layout(tmp_path):
    files = _write_guide_files(tmp_path)
    assert set(files) == {"my-vpg/pyproject.toml", "my-vpg/vpg_Basic.yaml",
                          "my-vpg/my_vpg/__init__.py", "my-vpg/my_vpg/settings.py",
                          "my-vpg/my_vpg/optimizer.py", "my-vpg/my_vpg/trainer.py"}
    lines = sum(len(text.splitlines()) for name, text in files.items() if name.endswith(".py"))
    assert lines <= 150, f"the guide's plugin grew to {lines} lines of Python"


def test_guide_plugin_installs_lists_and_trains(tmp_path):
    _write_guide_files(tmp_path)
    site = tmp_path / "site"
    # Installed into a folder of its own, not into the test's environment.
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(tmp_path / "my-vpg")],
                   check=True, capture_output=True, text=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), os.environ.get("PYTHONPATH", "")]), "PALAESTRA_NO_PROGRESS": "1"}
    listed = subprocess.run([sys.executable, "-m", "palaestra", "trainers"], env=env,
                            capture_output=True, text=True, check=True).stdout
    assert any(line.split()[:3] == ["vpg", "my-vpg", "0.1.0"] for line in listed.splitlines()), \
        listed
    results = tmp_path / "results"
    run = subprocess.run([sys.executable, "-m", "palaestra", "learn",
                          str(tmp_path / "my-vpg" / "vpg_Basic.yaml"), "--run-id", "vpg",
                          "--results-dir", str(results)], env=env, capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(results / "vpg" / "Basic"))
    acc.Reload()
    rewards = [e.value for e in acc.Scalars("Environment/Cumulative Reward")]
    assert rewards[0] < 0.5 and max(rewards[-3:]) >= 0.9, rewards
