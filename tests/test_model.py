"""The PyTorch SMSR model: checkpoint compatibility, exact formulations, channel splits, other scales."""
from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from converters.model import SMSR, CheckpointError, load_smsr  # noqa: E402
from converters.model.checkpoint import build_model_from_state, load_state_dict_file  # noqa: E402

# DESIGN.md §1: dense/sparse output channels of conv1..conv4 per block of the official x2 checkpoint.
OFFICIAL_SPLITS = [
    [(24, 40), (9, 55), (3, 61), (0, 64)],
    [(16, 48), (4, 60), (1, 63), (0, 64)],
    [(16, 48), (7, 57), (1, 63), (0, 64)],
    [(3, 61), (0, 64), (0, 64), (0, 64)],
    [(14, 50), (5, 59), (0, 64), (0, 64)],
]


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()[None]


def _both(model, x):
    with torch.no_grad():
        a, ma = model.forward_with_masks(x, "dense_masked")
        b, mb = model.forward_with_masks(x, "sparse")
    return a, b, ma, mb


def test_strict_load_of_official_checkpoint(official_weights):
    state = load_state_dict_file(official_weights)
    assert len(state) == 99
    assert sum(v.numel() for v in state.values()) == 987_330
    model = load_smsr(official_weights, 2)
    assert not model.training
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for k, v in state.items():
        assert torch.equal(loaded[k], v), k


def test_channel_split_matches_design(official_model):
    splits = official_model.channel_splits()
    got = [[(len(s.dense), len(s.sparse)) for s in block] for block in splits]
    assert got == OFFICIAL_SPLITS


def test_formulations_agree_on_set5(official_model, set5_lr_images):
    densities = []
    for name, img in set5_lr_images.items():
        a, b, ma, mb = _both(official_model, _to_tensor(img))
        assert torch.equal(ma, mb)
        diff = (a - b).abs().max().item()
        assert diff <= 1e-3, f"{name}: dense-masked vs sparse differ by {diff}"
        densities.append(ma.mean().item())
    # DESIGN.md §1: 18 % (baby) ... 63 % (butterfly), mean 37 %.
    assert 0.35 <= np.mean(densities) <= 0.39


@pytest.mark.parametrize("shape", [(1, 3, 37, 23), (2, 3, 18, 31), (1, 3, 3, 2)])
def test_formulations_agree_on_odd_sizes_and_batches(official_model, shape):
    torch.manual_seed(0)
    x = torch.rand(shape) * 255
    a, b, ma, mb = _both(official_model, x)
    assert a.shape == (shape[0], 3, 2 * shape[2], 2 * shape[3])
    assert ma.shape == (shape[0], 5, shape[2], shape[3])
    assert (a - b).abs().max().item() <= 1e-3
    # Odd sizes: the mask branch only covers 2*floor(H/2) x 2*floor(W/2); the rest is zero.
    if shape[2] % 2:
        assert ma[:, :, -1, :].abs().sum() == 0
    if shape[3] % 2:
        assert ma[:, :, :, -1].abs().sum() == 0


def test_odd_size_equals_zero_padded_mask_semantics(official_model):
    """An odd image computes the same as the even crop's mask zero-padded bottom/right (official behaviour)."""
    torch.manual_seed(1)
    x = torch.rand(1, 3, 21, 17) * 255
    block = official_model.body[0]
    fea = official_model.head(official_model.sub_mean(x))
    mask = block.spatial_mask(fea)
    logits = block.spa_mask(fea)
    manual = torch.zeros(1, 1, 21, 17)
    manual[:, :, :20, :16] = (logits[:, 1:] > logits[:, :1]).float()
    assert torch.equal(mask, manual)


def test_constant_input_empty_mask_and_noise_full_mask(official_model):
    flat = torch.full((1, 3, 24, 24), 128.0)
    a, b, ma, _ = _both(official_model, flat)
    assert ma.sum() == 0, "a flat image should need no sparse computation"
    assert (a - b).abs().max().item() <= 1e-3
    torch.manual_seed(2)
    noise = torch.rand(1, 3, 24, 24) * 255
    a, b, ma, _ = _both(official_model, noise)
    assert ma.mean() > 0.9, f"noise should activate nearly all pixels, got {ma.mean():.2f}"
    assert (a - b).abs().max().item() <= 1e-3


def test_sparse_formulation_detects_wrong_mask_semantics(official_model, set5_lr_images):
    """Guard that the agreement test can fail: ignoring the mask on sparse inputs changes outputs."""
    x = _to_tensor(set5_lr_images["baby"][96:160, 96:160])
    block = official_model.body[0].body
    fea = official_model.head(official_model.sub_mean(x))
    mask = official_model.body[0].spatial_mask(fea)
    with torch.no_grad():
        good = block(fea, mask, "sparse")
        plan = block.inference_plan()
        saved = [dict(layer) for layer in plan]
        try:  # corrupt: treat every input channel as dense (ignores the mask on sparse inputs)
            for layer in plan:
                if layer["w_sparse_in"] is not None:
                    layer["w_dense_in"] = layer["w_sparse_in"] + (layer["w_dense_in"] if layer["w_dense_in"]
                                                                  is not None else 0)
                    layer["w_sparse_in"] = None
            bad = block(fea, mask, "dense_masked")
        finally:
            plan[:] = saved
    assert 0 < mask.mean() < 1
    assert (good - bad).abs().max().item() > 1e-2


@pytest.mark.parametrize("scale", [3, 4])
def test_other_scales_build_and_run(scale):
    model = SMSR(scale).eval().prepare()
    x = torch.rand(1, 3, 13, 10) * 255
    a, b, ma, _ = _both(model, x)
    assert a.shape == (1, 3, 13 * scale, 10 * scale)
    assert (a - b).abs().max().item() <= 1e-3


def test_too_small_input_is_rejected(official_model):
    with pytest.raises(ValueError, match="at least 2x2"):
        official_model(torch.rand(1, 3, 1, 9))


# ---- bad checkpoints -------------------------------------------------------------------------------

def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_smsr(tmp_path / "nope.pt", 2)


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_smsr(bad, 2)


def test_checkpoint_of_non_tensors(tmp_path):
    bad = tmp_path / "list.pt"
    torch.save([1, 2, 3], bad)
    with pytest.raises(CheckpointError, match="does not contain a PyTorch state dict"):
        load_smsr(bad, 2)


def test_checkpoint_for_another_scale(official_weights):
    with pytest.raises(CheckpointError, match=r"x2 checkpoint .* scale 4 was requested"):
        load_smsr(official_weights, 4)


def test_checkpoint_of_another_architecture(official_weights):
    state = load_state_dict_file(official_weights)
    edsr_like = {k.replace("body.", "blocks."): v for k, v in state.items()}
    with pytest.raises(CheckpointError, match="missing keys: .*unexpected keys"):
        build_model_from_state(edsr_like, 2)
    narrow = dict(state)
    narrow["head.0.weight"] = torch.zeros(32, 3, 3, 3)
    with pytest.raises(CheckpointError, match=r"wrong shape .*head\.0\.weight"):
        build_model_from_state(narrow, 2)


def test_wrapped_checkpoint_is_accepted(official_weights, tmp_path):
    state = load_state_dict_file(official_weights)
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    model = load_smsr(wrapped, 2)
    assert torch.equal(model.state_dict()["tail.0.weight"], state["tail.0.weight"])


# ---- model summary (numbers of DESIGN.md §1) -----------------------------------------------------

def test_summary_macs_match_design(official_model, set5_lr_images):
    from converters.summary import summarize
    # 720p output (640x360 LR), dense: 223.8 GMAC.
    dense_720p = summarize(official_model, np.zeros((5, 360, 640)))["gmac_dense"]
    assert abs(dense_720p - 223.8) < 0.1
    reductions = []
    for name, img in set5_lr_images.items():
        with torch.no_grad():
            _, masks = official_model.forward_with_masks(_to_tensor(img))
        s = summarize(official_model, masks[0].numpy())
        assert s["blocks"][0]["split"] == OFFICIAL_SPLITS[0]
        reductions.append(s["mac_reduction"])
    # Set5: -50 % per image on average (-29 % ... -65 %).
    assert 0.47 <= np.mean(reductions) <= 0.53
    assert 0.27 <= min(reductions) and max(reductions) <= 0.67


def test_summary_cli_bad_images_are_one_line_errors(official_weights, tmp_path):
    """Missing, corrupt and 1x5 images: one `error: <file>: ...` line each, exit 2, the good image still summarised."""
    import subprocess
    import sys
    from pathlib import Path
    from PIL import Image
    Image.new("RGB", (1, 5)).save(tmp_path / "thin.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    imgs = [tmp_path / n for n in ("missing.png", "corrupt.png", "thin.png", "ok.png")]
    r = subprocess.run([sys.executable, "-m", "converters.summary", "--weights", str(official_weights),
                        "--image"] + [str(p) for p in imgs], cwd=Path(__file__).resolve().parents[1],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3, r.stderr
    for p, what in zip(imgs, ("no such file", "not an image", "1x5")):
        assert any(str(p) in line and what in line for line in errors), (p, r.stderr)
    assert "ok.png (10x8 LR)" in r.stdout


def test_download_verifies_sha256_and_leaves_no_partial_file(official_weights, tmp_path):
    from converters.model import download_checkpoint, sha256_of
    url = official_weights.resolve().as_uri()  # file:// works offline, same code path as https://
    good = download_checkpoint(2, tmp_path / "ok", url=url, sha256=sha256_of(official_weights))
    assert sha256_of(good) == sha256_of(official_weights)
    umask = os.umask(0)
    os.umask(umask)
    assert good.stat().st_mode & 0o777 == 0o666 & ~umask, "permissions like any new file (not mkstemp's 0600)"
    with pytest.raises(CheckpointError, match="expected 0000"):
        download_checkpoint(2, tmp_path / "bad", url=url, sha256="0" * 64)
    assert not (tmp_path / "bad").exists()  # no partial file, no empty folder


def test_deploy_block_in_op_layout_matches_the_model(official_model):
    """The deploy module (what the exporter turns into SMSRSparseBlock) holds its weights in the op's layout
    (plugin_version 2: w_l 3 x 3 x Cin x Cout, wc 1 x 1 x K x C) and its op computes what the model's block does."""
    from converters.deploy_op import DeploySparseBlock, op_weights, permuted_weights
    rng = np.random.default_rng(3)
    for b in (0, 3):
        block = official_model.body[b].body
        deploy = DeploySparseBlock(block)
        oihw, wc_oihw, dense, sparse = permuted_weights(block)
        for l, w in enumerate(oihw):  # op_weights = permuted_weights in HWIO
            assert getattr(deploy, f"w{l}").shape == (3, 3, w.shape[1], w.shape[0])
            assert torch.equal(getattr(deploy, f"w{l}"), w.permute(2, 3, 1, 0))
        assert deploy.wc.shape == (1, 1, wc_oihw.shape[1], wc_oihw.shape[0])
        assert torch.equal(op_weights(block)[1], deploy.wc)
        x = torch.from_numpy(rng.random((2, 64, 13, 11), dtype=np.float32) * 4)
        mask = torch.from_numpy((rng.random((2, 1, 13, 11)) < 0.4).astype(np.float32))
        with torch.no_grad():
            want = block(x, mask, "dense_masked")
            got = deploy(x, mask)
        assert (got - want).abs().max().item() <= 1e-4 * max(1.0, want.abs().max().item())
