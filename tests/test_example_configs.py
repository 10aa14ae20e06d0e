"""The example configs travel inside the package (a plain `pip install palaestra` has them) and
`palaestra configs` lists, prints and copies them."""
import os
import subprocess
import sys
import zipfile

import pytest
import yaml

from helpers import REPO
from palaestra.cli import main
from palaestra.example_configs import copy, find, shipped
from palaestra.exception import PalaestraError


def test_every_config_of_the_source_tree_is_shipped():
    folder = os.path.join(REPO, "src", "palaestra", "configs")
    on_disk = {f"{t}/{n[:-5]}" for t in os.listdir(folder)
               for n in os.listdir(os.path.join(folder, t)) if n.endswith(".yaml")}
    assert set(shipped()) == on_disk and "ppo/3DBall" in on_disk


def test_the_wheel_holds_the_configs_and_the_license(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", REPO, "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("palaestra-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"palaestra/configs/{k}.yaml" for k in shipped()} <= set(names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_names_resolve_with_or_without_the_trainer_folder():
    assert find("ppo/3DBall") == find("3DBall.yaml") == find("3dball") == "ppo/3DBall"
    with pytest.raises(PalaestraError, match="ppo/Pendulum, sac/Pendulum"):
        find("Pendulum")
    with pytest.raises(PalaestraError, match="no such example config; there are: .*ppo/3DBall"):
        find("Nope")


def test_the_command_lists_prints_and_copies(tmp_path, capsys, monkeypatch):
    assert main(["configs"]) == 0
    listing = capsys.readouterr().out
    assert "ppo/3DBall" in listing and "PPO on the built-in 3DBall" in listing
    assert main(["configs", "sac/Pendulum"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["behaviors"]["Pendulum-v1"]["trainer_type"] \
        == "sac"
    monkeypatch.chdir(tmp_path)
    assert main(["configs", "3DBall", "-o", "mine"]) == 0
    assert (tmp_path / "mine" / "3DBall.yaml").read_text() == shipped()["ppo/3DBall"]
    assert main(["configs", "3DBall", "-o", "mine"]) == 1  # not replaced
    assert "exists" in capsys.readouterr().err
    assert main(["configs", "3DBall", "-o", "mine", "--force"]) == 0
    written = copy([], str(tmp_path / "all"))
    assert len(written) == len(shipped()) and (tmp_path / "all" / "sac" / "Hopper.yaml").is_file()
    with pytest.raises(PalaestraError, match="a file name takes one config"):
        copy([], str(tmp_path / "x.yaml"))
    assert copy(["GridWorld"], str(tmp_path / "g.yaml")) == [str(tmp_path / "g.yaml")]
