"""LPIPS weights load strictly through ``metrics.lpips_net.load_lpips`` (small random-weight files)."""

from __future__ import annotations

import pytest
import torch

from ernerf_core.errors import StageError
from ernerf_core.metrics import lpips_net

pytest.importorskip("lpips")

ALEX_FEATURES = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}
LIN_CHANNELS = (64, 192, 384, 256, 256)


def random_alexnet_features(seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision's AlexNet trunk keys and shapes (10 MB, not the 233 MB file with the classifier)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for i, (out_c, in_c, k) in ALEX_FEATURES.items():
        state[f"features.{i}.weight"] = torch.randn(out_c, in_c, k, k, generator=gen) * (2 / (in_c * k * k)) ** 0.5
        state[f"features.{i}.bias"] = torch.zeros(out_c)
    return state


def random_lin(seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=gen) for i, c in enumerate(LIN_CHANNELS)}


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """Write the two files where load_lpips looks (TORCH_HOME, and the lpips wheel's alex.pth)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    lin = tmp_path / "lpips" / "alex.pth"
    lin.parent.mkdir()
    monkeypatch.setattr(lpips_net, "lpips_linear_path", lambda: lin)
    backbone = lpips_net.alexnet_weights_path()
    backbone.parent.mkdir(parents=True)

    def write(lin_state=None, backbone_state=None):
        torch.save(random_lin() if lin_state is None else lin_state, lin)
        torch.save(random_alexnet_features() if backbone_state is None else backbone_state, backbone)
        return lin, backbone

    return write


def test_every_weight_arrives_from_the_files(weights):
    lin, backbone = weights()
    net = lpips_net.load_lpips("s", "finetune_lips")
    for i in range(len(LIN_CHANNELS)):
        assert torch.equal(getattr(net, f"lin{i}").model[1].weight, random_lin()[f"lin{i}.model.1.weight"])
    trunk = random_alexnet_features()
    assert torch.equal(net.net.slice1[0].weight, trunk["features.0.weight"])
    assert torch.equal(net.net.slice5._modules["10"].weight, trunk["features.10.weight"])
    # torchvision's full file (classifier included) loads too: the classifier is not LPIPS's
    full = {**random_alexnet_features(), "classifier.1.weight": torch.zeros(4, 4), "classifier.1.bias": torch.zeros(4)}
    weights(backbone_state=full)
    lpips_net.load_lpips("s", "finetune_lips")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert float(net(x, x).flatten()[0]) == pytest.approx(0.0, abs=1e-7)
    assert float(net(x, -x).flatten()[0]) > 0


@pytest.mark.parametrize("case", ["lin_missing", "lin_unexpected", "lin_shape", "trunk_missing", "trunk_unexpected",
                                  "trunk_shape", "not_a_state_dict", "garbage"])
def test_a_weight_file_that_does_not_fit_is_a_one_line_error(weights, case):
    lin_state, trunk = random_lin(), random_alexnet_features()
    if case == "lin_missing":
        del lin_state["lin4.model.1.weight"]
    elif case == "lin_unexpected":
        lin_state["lin5.model.1.weight"] = torch.rand(1, 8, 1, 1)
    elif case == "lin_shape":
        lin_state["lin2.model.1.weight"] = torch.rand(1, 383, 1, 1)
    elif case == "trunk_missing":
        del trunk["features.8.bias"]
    elif case == "trunk_unexpected":
        trunk["features.13.weight"] = torch.rand(3)
    elif case == "trunk_shape":
        trunk["features.3.weight"] = torch.rand(192, 64, 3, 3)
    elif case == "not_a_state_dict":
        trunk = [torch.zeros(1)]
    lin, backbone = weights(lin_state, trunk)
    if case == "garbage":
        backbone.write_bytes(b"not a torch file")
    with pytest.raises(StageError) as err:
        lpips_net.load_lpips("alice", "finetune_lips")
    message = str(err.value)
    assert "\n" not in message and "alice" in message and "finetune_lips" in message
    bad = lin if case.startswith("lin") else backbone
    assert str(bad) in message
    key = {"lin_missing": "lin4.model.1.weight", "lin_unexpected": "lin5.model.1.weight",
           "lin_shape": "lin2.model.1.weight", "trunk_missing": "slice4.8.bias", "trunk_unexpected": "features.13",
           "trunk_shape": "slice2.3.weight"}.get(case)
    if key:
        assert key in message


def test_a_pickle_payload_in_a_weight_file_is_refused(weights, tmp_path):
    """weights_only loading: a file whose unpickling would run code is refused, and the code never runs."""
    lin, backbone = weights()
    marker = tmp_path / "ran"
    torch.save({"features.0.weight": Payload(marker)}, backbone)
    with pytest.raises(StageError, match="cannot be read as weights"):
        lpips_net.load_lpips("alice", "finetune_lips")
    assert not marker.exists()


class Payload:
    """Unpickling this calls Path.touch: a stand-in for code run from a model file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))
