"""The running normaliser matches the statistics of everything it has seen."""
import numpy as np
import torch

from palaestra.networks import Normalizer


def test_running_mean_and_variance_match_the_whole_data():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(3.0, 2.0, size=(n, 4)).astype(np.float32) for n in (1, 7, 50, 300, 2)]
    norm = Normalizer(4)
    for chunk in chunks:
        norm.update(torch.from_numpy(chunk))
    data = np.concatenate(chunks)
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=1e-3, atol=1e-3)
    assert float(norm.count) == len(data) + 1e-4
    out = norm(torch.from_numpy(data))
    assert out.abs().max() <= 5.0 and abs(float(out.mean())) < 0.05
