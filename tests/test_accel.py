"""palaestra.accel: the plan's modes, the per-machine measurement and its cache, and the two
halves side by side giving what one thread gives."""
import json
import os
import threading

import pytest
import torch

from palaestra.accel import Accel, calibrate


def test_off_is_plain_torch_and_modes_are_checked():
    plan = Accel.from_mode("off")
    assert not (plan.onednn_linear or plan.flat_adam or plan.numpy_acting or plan.side_thread)
    assert "plain torch" in plan.describe()
    with pytest.raises(ValueError, match="auto, off"):
        Accel.from_mode("fast")


def test_auto_on_a_gpu_device_keeps_the_cpu_only_paths_off(monkeypatch):
    monkeypatch.setattr(calibrate, "onednn_pays", lambda folder=None: pytest.fail("measured"))
    plan = Accel.auto("cuda")
    assert plan.flat_adam and not (plan.numpy_acting or plan.side_thread or plan.onednn_linear)


@pytest.fixture
def fake_times(monkeypatch, tmp_path):
    monkeypatch.setattr(calibrate, "onednn_available", lambda: True)
    calls = []

    def measure(**_):
        calls.append(1)
        return dict(times)

    times = {"torch_s": 1e-3, "onednn_s": 0.5e-3}
    monkeypatch.setattr(calibrate, "measure_onednn", measure)
    return tmp_path, times, calls


def test_the_measurement_decides_and_is_remembered_per_machine(fake_times):
    folder, times, calls = fake_times
    assert calibrate.onednn_pays(str(folder)) is True
    assert calibrate.onednn_pays(str(folder)) is True and len(calls) == 1  # from the cache
    saved = json.loads((folder / calibrate.CACHE_FILE).read_text())
    (key,) = saved
    assert key == calibrate.machine_key() and "torch" in key and "threads" in key
    assert saved[key]["onednn_linear"] is True


def test_a_tie_goes_to_torchs_own_kernels(fake_times):
    folder, times, calls = fake_times
    times["onednn_s"] = 0.97e-3  # within the margin: not worth a private API
    assert calibrate.onednn_pays(str(folder)) is False


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"x": 1}', "\x00\x01"])
def test_a_broken_or_foreign_cache_is_measured_again(fake_times, content):
    folder, times, calls = fake_times
    (folder / calibrate.CACHE_FILE).write_text(content)
    key = calibrate.machine_key()
    assert calibrate.onednn_pays(str(folder)) is True and len(calls) == 1
    assert json.loads((folder / calibrate.CACHE_FILE).read_text())[key]["onednn_linear"]


def test_a_cache_that_is_a_link_is_neither_read_nor_followed(fake_times, tmp_path_factory):
    folder, times, calls = fake_times
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "target.json"
    elsewhere.write_text(json.dumps({calibrate.machine_key(): {"onednn_linear": False}}))
    os.symlink(elsewhere, folder / calibrate.CACHE_FILE)
    assert calibrate.onednn_pays(str(folder)) is True and len(calls) == 1
    assert json.loads(elsewhere.read_text())[calibrate.machine_key()] == {"onednn_linear": False}


def test_an_unwritable_cache_only_means_measuring_again(fake_times):
    folder, times, calls = fake_times
    blocked = folder / "file-not-folder"
    blocked.write_text("")
    assert calibrate.onednn_pays(str(blocked)) is True
    assert calibrate.onednn_pays(str(blocked)) is True and len(calls) == 2


def test_the_real_measurement_returns_two_positive_times():
    times = calibrate.measure_onednn(size=64, rounds=2, repeats=2)
    assert times["torch_s"] > 0 and times["onednn_s"] > 0


def test_processor_names_the_model_beyond_its_marketing_name():
    name = calibrate.processor()
    assert name
    if os.path.exists("/proc/cpuinfo"):
        assert "family" in name


def _net(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2))


def test_parallel_grads_on_a_side_thread_equal_one_thread():
    a, b = _net(0), _net(1)
    x = torch.randn(64, 6)
    results = []
    for side in (False, True):
        plan = Accel(side_thread=side)
        seen = {}

        def loss_a():
            seen["a"] = threading.current_thread().name
            return a(x).pow(2).mean(), "a"

        def loss_b():
            seen["b"] = threading.current_thread().name
            return (b(x) - a(x)).abs().mean(), "b"  # reads a's parameters too

        (ea, ga), (eb, gb) = plan.parallel_grads(loss_a, list(a.parameters()),
                                                 loss_b, list(b.parameters()))
        plan.close()
        assert (ea, eb) == ("a", "b")
        assert seen["a"] == threading.current_thread().name
        assert seen["b"].startswith("palaestra-side") == side
        results.append(ga + gb)
    for g1, g2 in zip(*results):
        assert torch.equal(g1, g2)
    assert all(p.grad is None for p in [*a.parameters(), *b.parameters()])  # nothing stepped


def test_a_failing_half_raises_after_the_other_half_is_done():
    plan = Accel(side_thread=True)
    done = []

    def slow_ok():
        done.append("side")
        return 1

    def failing():
        raise ArithmeticError("boom")

    with pytest.raises(ArithmeticError, match="boom"):
        plan.run_pair(failing, slow_ok)
    assert done == ["side"]
    with pytest.raises(KeyError):
        plan.run_pair(lambda: 1, lambda: {}["missing"])
    plan.close()


def test_parallel_grads_skip_parameters_a_loss_does_not_use():
    a = _net(2)
    unused = torch.nn.Parameter(torch.zeros(3))
    (_, grads), _ = Accel().parallel_grads(lambda: (a(torch.ones(1, 6)).sum(), None),
                                           [*a.parameters(), unused],
                                           lambda: (unused.sum() * 0, None), [unused])
    assert grads[-1] is None and all(g is not None for g in grads[:-1])
