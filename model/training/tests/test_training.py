"""The training code: the network against the reference vectors, the losses, a tiny run that
learns and resumes, and its checkpoint read back by our Rust runtime.

Reads ../shared in place; without it the tests that need it skip, unless REQUIRE_SHARED=1.
"""

import json
import os
import pickle
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

TRAINING = Path(__file__).resolve().parents[1]
REPO = TRAINING.parents[1]
SHARED = REPO.parent / "shared"
PARITY = SHARED / "parity"
CASIA_B = SHARED / "data" / "casia-b" / "silhouettes"
sys.path.insert(0, str(TRAINING))

from augment import Strengths, WalkAugmentation, parse_kinds  # noqa: E402
from casia_b import TripletBatches, load_sequences, parse_subjects  # noqa: E402
from hstl_net import HSTL, PARTS, VARIANTS, network_input, part_distance, variant_of  # noqa: E402
import hstl_net  # noqa: E402
from losses import cross_entropy_loss, triplet_loss  # noqa: E402
import evaluate  # noqa: E402
import plot_log  # noqa: E402
import train  # noqa: E402


def shared(path):
    if not path.exists():
        if os.environ.get("REQUIRE_SHARED") == "1":
            pytest.fail(f"REQUIRE_SHARED=1 but {path} is missing")
        pytest.skip(f"{path} is missing")
    return path


def hstl_binary():
    """Our Rust `hstl` command, built as the workspace's tests build it."""
    subprocess.run(["cargo", "build", "--quiet", "--workspace", "--bin", "hstl"], cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "hstl"


def test_reference_checkpoint_loads_strictly_and_reproduces_the_parity_vectors():
    checkpoint = torch.load(shared(PARITY / "hstl_casiab_dev.pt"), map_location="cpu", weights_only=True)
    reference = np.load(PARITY / "hstl_casiab_dev_parity.npz")
    model = HSTL()
    model.load_state_dict(checkpoint["model"], strict=True)
    assert list(model.state_dict()) == list(checkpoint["model"])
    model.eval()
    for frames in (33, 8):
        with torch.no_grad():
            embedding, gait, logits = model(torch.from_numpy(reference[f"sil_{frames}"]))
        np.testing.assert_allclose(embedding.numpy(), reference[f"emb_{frames}"], atol=1e-4)
        np.testing.assert_allclose(gait.numpy(), reference[f"gait_{frames}"], atol=1e-6)
        np.testing.assert_allclose(logits.numpy(), reference[f"logits_{frames}"], atol=1e-5)
    distance = part_distance(torch.from_numpy(reference["emb_33"][0][None]), torch.from_numpy(reference["emb_8"][0][None]))
    assert distance.item() == pytest.approx(3.7604, abs=1e-4)


def test_parameter_count_and_part_count_match_the_spec():
    model = HSTL()
    assert sum(p.numel() for p in model.parameters()) == 4_745_834
    assert sum(p.numel() for n, p in model.named_parameters() if not n.startswith("Head1")) == 4_054_378
    assert len(model.state_dict()) == 41
    assert PARTS == 73


def test_the_compact_variant_matches_its_documented_shape():
    model = HSTL(classes=74, variant=hstl_net.COMPACT)
    assert sum(p.numel() for p in model.parameters()) == 1_077_050
    assert sum(p.numel() for n, p in model.named_parameters() if not n.startswith("Head1")) == 882_874
    assert list(model.state_dict()) == list(HSTL().state_dict()), "the published key list, other shapes"
    assert model.state_dict()["Head0.fc_bin"].shape == (41, 64, 64)
    assert variant_of(model.state_dict()) is hstl_net.COMPACT and variant_of(HSTL().state_dict()) is hstl_net.CASIA_B
    with torch.no_grad():
        embedding, _, _ = model.eval()(torch.rand(1, 30, 64, 44))
    assert embedding.shape == (1, 41, 64)


def test_the_compact_input_is_the_2x2_area_average_of_the_silhouette():
    sils = torch.zeros(1, 1, 64, 44)
    sils[0, 0, 0, 0] = 1.0
    sils[0, 0, 10:12, 20:22] = 1.0
    reduced = network_input(sils, hstl_net.COMPACT)
    assert reduced.shape == (1, 1, 32, 22)
    assert reduced[0, 0, 0, 0] == 0.25 and reduced[0, 0, 5, 10] == 1.0
    assert reduced.sum() == sils.sum() / 4
    assert network_input(sils, hstl_net.CASIA_B) is sils


def test_short_clips_are_tiled_like_the_reference():
    model = HSTL().eval()
    clip = (torch.rand(1, 2, 64, 44) > 0.5).float()
    with torch.no_grad():
        two, _, _ = model(clip)
        tiled, _, _ = model(clip.repeat(1, 2, 1, 1))
    torch.testing.assert_close(two, tiled)


def test_triplet_loss_is_zero_when_identities_are_far_apart_and_positive_when_mixed():
    labels = torch.tensor([0, 0, 1, 1])
    separated = torch.zeros(4, 3, 8)
    separated[2:] += 10.0
    separated[1] += 0.01
    loss, active = triplet_loss(separated, labels)
    assert loss.item() == 0.0 and active == 0.0
    mixed = torch.zeros(4, 3, 8)
    mixed[1] += 10.0
    loss, active = triplet_loss(mixed, labels)
    assert loss.item() > 0.2 and active > 0.0


def test_cross_entropy_counts_every_part_and_reports_accuracy():
    logits = torch.zeros(2, 5, 3)
    logits[0, :, 1] = 5.0
    logits[1, :, 2] = 5.0
    loss, accuracy = cross_entropy_loss(logits, torch.tensor([1, 0]))
    assert accuracy == 0.5
    assert loss.item() == pytest.approx((np.log(1 + 2 * np.exp(-5)) + (5 + np.log(2 + np.exp(5)) - 5)) / 2, rel=1e-5)


def test_the_reference_recipe_lowers_the_loss_on_real_walks():
    sequences = load_sequences(shared(CASIA_B), parse_subjects("001-004"), views=["090"])
    batches = TripletBatches(sequences, p=2, k=2, frames=9, rng=np.random.default_rng(3))
    clips, labels = batches.next()
    sils, labels = torch.from_numpy(clips), torch.from_numpy(labels)
    torch.manual_seed(0)
    model = HSTL(classes=4).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=5e-4)
    losses = []
    for _ in range(10):
        embeddings, _, logits = model(sils)
        loss = triplet_loss(embeddings, labels)[0] + cross_entropy_loss(logits, labels)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_batches_hold_p_subjects_of_k_walks_of_consecutive_frames():
    sequences = load_sequences(shared(CASIA_B), parse_subjects("001-003"), views=["000", "090"])
    batches = TripletBatches(sequences, p=2, k=3, frames=30, rng=np.random.default_rng(0))
    clips, labels = batches.next()
    assert clips.shape == (6, 30, 64, 44) and clips.dtype == np.float32
    assert set(np.unique(clips)) <= {0.0, 1.0}
    assert len(set(labels.tolist())) == 2 and all(np.bincount(labels)[np.unique(labels)] == 3)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two short runs of the training command, the second resuming the first, made once per variant
    on first use: variant name -> (run dir, checkpoint)."""
    runs = {}

    def run(variant):
        if variant not in runs:
            output = tmp_path_factory.mktemp(f"run-{variant}")
            common = [
                "--data", str(shared(CASIA_B)), "--subjects", "001-004", "--views", "090", "--output", str(output),
                "--batch-p", "2", "--batch-k", "2", "--frames", "9", "--log-every", "1", "--save-every", "2",
                "--milestones", "3", "--lr", "1e-4", "--warmup", "0", "--validation-subjects", "",
                "--variant", variant,
            ]
            first = train.train(train.parse_args(common + ["--iterations", "2"]))
            assert first.name == "hstl-00002.pt"
            runs[variant] = (output, train.train(train.parse_args(common + ["--iterations", "4"])))
        return runs[variant]

    return run


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_tiny_run_resumes_and_its_checkpoint_runs_in_our_rust_runtime(tiny_runs, variant, tmp_path):
    run, second = tiny_runs(variant)
    data = CASIA_B
    assert second.name == "hstl-00004.pt"
    log = (run / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in log] == [1, 2, 3, 4]

    state = torch.load(second, map_location="cpu", weights_only=True)
    assert set(state) == {"model", "optimizer", "scheduler", "iteration"}
    assert state["iteration"] == 4
    assert isinstance(state["scheduler"]["milestones"], Counter)
    assert state["scheduler"]["last_epoch"] == 4 and state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-5)
    assert state["optimizer"]["state"], "Adam moments are saved"

    variant = variant_of(state["model"])
    model = HSTL(classes=4, variant=variant)
    model.load_state_dict(state["model"], strict=True)
    model.eval()
    walk = next(s for s in load_sequences(data, ["005"], views=["090"]) if len(s) >= 12).clip(np.arange(12))
    with torch.no_grad():
        expected = model(torch.from_numpy(walk[None]))[0][0].numpy()

    hstl = hstl_binary()
    onnx = tmp_path / "trained.onnx"
    subprocess.run([hstl, "export", "--checkpoint", second, "--out", onnx], check=True)
    clip = tmp_path / "walk.npy"
    np.save(clip, walk)
    out = tmp_path / "embedding.npy"
    subprocess.run([hstl, "embed", "--model", onnx, "--input", clip, "--output", out], check=True)
    ours = np.load(out)
    assert ours.shape == (variant.parts, variant.embedding_channels)
    np.testing.assert_allclose(ours, expected, atol=1e-4 * max(1.0, float(np.abs(expected).max())))



def test_rust_and_pytorch_score_the_casia_b_protocol_alike(tiny_runs, tmp_path):
    """The protocol's code is the same for every variant: scored on the compact one, the cheapest."""
    _, checkpoint = tiny_runs("compact")
    subset = ["--subjects", "075-078", "--views", "090,108", "--max-frames", "12"]
    expected = evaluate.main(["--checkpoint", str(checkpoint), "--data", str(CASIA_B), "--json"] + subset)

    hstl = hstl_binary()
    onnx = tmp_path / "trained.onnx"
    subprocess.run([hstl, "export", "--checkpoint", checkpoint, "--out", onnx], check=True)
    result = subprocess.run(
        [hstl, "eval", "--model", onnx, "--casia-b", CASIA_B, "--json"] + subset,
        check=True, capture_output=True, text=True,
    )
    ours = json.loads(result.stdout)
    assert ours["views"] == expected["views"] == ["090", "108"]
    for name in evaluate.PROBE_SETS:
        assert ours[name]["per_view"] == pytest.approx(expected[name]["per_view"], abs=1e-3), name
        assert ours[name]["mean"] == pytest.approx(expected[name]["mean"], abs=1e-3), name


def test_opengait_pickle_tree_reads_like_the_packed_archive(tiny_runs, tmp_path):
    """OpenGait's own layout (SSS/COND/VVV/VVV.pkl), pickled with protocols 2, 4 and 5."""
    _, checkpoint = tiny_runs("compact")
    tree = tmp_path / "opengait"
    for index, sequence in enumerate(load_sequences(shared(CASIA_B), ["075", "076"], views=["000", "018"])):
        folder = tree / sequence.subject / sequence.condition / sequence.view
        folder.mkdir(parents=True)
        frames = np.unpackbits(sequence.frames, axis=-1)[..., :64] * np.uint8(255)
        with open(folder / f"{sequence.view}.pkl", "wb") as f:
            pickle.dump(frames, f, protocol=(2, 4, 5)[index % 3])
    from_tree = load_sequences(tree, ["075", "076"])
    assert len(from_tree) == 40 and not from_tree[0].packed

    hstl = hstl_binary()
    onnx = tmp_path / "trained.onnx"
    subprocess.run([hstl, "export", "--checkpoint", checkpoint, "--out", onnx], check=True)
    tables = []
    for root in (CASIA_B, tree):
        result = subprocess.run(
            [hstl, "eval", "--model", onnx, "--casia-b", root, "--subjects", "075-076", "--views", "000,018",
             "--max-frames", "3", "--json"],
            check=True, capture_output=True, text=True,
        )
        tables.append(json.loads(result.stdout))
    assert tables[0] == tables[1]


def test_a_resumed_runs_repeated_records_are_drawn_once(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(
        '{"iteration": 50, "loss": 4.0}\n{"iteration": 100, "loss": 3.9}\n'
        '{"iteration": 100, "loss": 3.8}\n\n{"iteration": 150, "loss": 3.7, "validation": {"NM": 60}}\n'
    )
    records = plot_log.read_log(log)
    assert [r["iteration"] for r in records] == [50, 100, 150]
    assert records[1]["loss"] == 3.8


def test_a_run_stopped_by_sigterm_saves_where_it_stopped(tmp_path):
    output = tmp_path / "run"
    command = [
        sys.executable, str(TRAINING / "train.py"), "--data", str(shared(CASIA_B)), "--subjects", "001-004",
        "--views", "090", "--output", str(output), "--batch-p", "2", "--batch-k", "2", "--frames", "9",
        "--log-every", "1", "--save-every", "1000", "--iterations", "1000", "--validation-subjects", "",
        "--variant", "compact", "--warmup", "0", "--threads", "1",
    ]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    for line in run.stdout:
        if line.startswith("{") and json.loads(line)["iteration"] >= 2:
            run.send_signal(signal.SIGTERM)
            break
    rest = run.stdout.read()
    assert run.wait(timeout=120) == 0, rest
    assert "SIGTERM: stopping at iteration" in rest
    saved = sorted((output / "checkpoints").glob("hstl-*.pt"))
    assert len(saved) == 1
    iteration = torch.load(saved[0], map_location="cpu", weights_only=True)["iteration"]
    assert 2 <= iteration < 1000
    assert saved[0].name == f"hstl-{iteration:05d}.pt"


def test_denormal_weights_are_set_to_zero_and_normal_ones_kept():
    layer = torch.nn.Linear(3, 2)
    tiny = torch.finfo(torch.float32).tiny
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[tiny / 4, -tiny / 2, 0.5], [tiny, 0.0, -1.0]]))
    assert train.flush_denormals(layer) == 2
    assert layer.weight.tolist() == [[0.0, 0.0, 0.5], [tiny, 0.0, -1.0]]
    assert train.flush_denormals(layer) == 0


def asymmetric_walks(count=6, frames=5):
    """Clips of a left-leaning figure on a background, each frame slightly different."""
    clips = np.zeros((count, frames, 64, 44), dtype=np.float32)
    for frame in range(frames):
        clips[:, frame, 8:60, 6 + frame : 20 + frame] = 1.0
    return clips


def test_a_walk_is_mirrored_whole_or_not_at_all():
    clips = asymmetric_walks(count=32)
    augmented = WalkAugmentation({"flip"}, np.random.default_rng(3))(clips)
    mirrored = [np.array_equal(a, c[..., ::-1]) for a, c in zip(augmented, clips)]
    kept = [np.array_equal(a, c) for a, c in zip(augmented, clips)]
    assert all(m != k for m, k in zip(mirrored, kept)), "every clip is exactly one of the two"
    assert 4 <= sum(mirrored) <= 28


def test_augmentation_is_repeatable_from_its_seed_and_none_leaves_walks_alone():
    clips = asymmetric_walks()
    first = WalkAugmentation(parse_kinds("all"), np.random.default_rng(11))(clips)
    second = WalkAugmentation(parse_kinds("all"), np.random.default_rng(11))(clips)
    np.testing.assert_array_equal(first, second)
    assert first.shape == clips.shape and first.dtype == np.float32
    assert 0.0 <= first.min() and first.max() <= 1.0
    assert not np.array_equal(first, clips)
    assert WalkAugmentation(parse_kinds("none"), np.random.default_rng(11))(clips) is clips
    with pytest.raises(ValueError, match="unknown augmentation"):
        parse_kinds("flip,mirror")


def test_a_geometric_change_is_the_same_in_every_frame_of_a_walk():
    still = np.repeat(asymmetric_walks(count=8, frames=1), 4, axis=1)
    warped = WalkAugmentation({"affine", "erase"}, np.random.default_rng(5), Strengths(affine=1.0, erase=1.0))(still)
    for clip in warped:
        for frame in clip[1:]:
            np.testing.assert_array_equal(frame, clip[0])
    assert not np.array_equal(warped, still)


@pytest.mark.parametrize("kind", range(5))
def test_each_background_model_corruption_changes_frames_differently(kind):
    augmentation = WalkAugmentation({"corrupt"}, np.random.default_rng(0))
    augmentation.rng = np.random.default_rng(0)
    original = np.repeat(asymmetric_walks(count=1, frames=1), 6, axis=1)[0]
    chosen = {0: augmentation._ragged, 1: augmentation._holes, 2: augmentation._merged_legs,
              3: augmentation._shadow, 4: augmentation._low_resolution}[kind]
    walkers = np.zeros((6, 64, 44), dtype=np.float32)
    walkers[:, 10:62, 12:16] = 1.0  # two legs a few pixels apart, and a body
    walkers[:, 40:62, 20:24] = 1.0
    walkers[:, 10:40, 12:24] = 1.0
    frames = torch.from_numpy(walkers if kind in (2, 3) else original)[:, None]
    corrupted = chosen(frames)[:, 0].numpy()
    assert corrupted.shape == frames[:, 0].shape
    assert not np.array_equal(corrupted, frames[:, 0].numpy())
    assert 0.0 <= corrupted.min() and corrupted.max() <= 1.0
    if kind in (0, 1):
        assert not all(np.array_equal(corrupted[0], f) for f in corrupted[1:]), "drawn afresh per frame"


def test_the_cosine_schedule_warms_up_then_falls_to_its_final_rate():
    args = train.parse_args(["--data", "x", "--output", "y", "--schedule", "cosine", "--iterations", "1000",
                             "--warmup", "100", "--lr", "1e-3", "--final-lr-ratio", "0.01"])
    factors = [train.cosine_factor(args, i) for i in range(1000)]
    assert factors[0] == pytest.approx(0.01) and factors[99] == pytest.approx(1.0)
    assert factors[100] == pytest.approx(1.0)
    assert factors[550] == pytest.approx(0.505, abs=1e-3)
    assert train.cosine_factor(args, 1000) == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(factors[100:], factors[101:]))


def test_a_run_starts_from_other_weights_and_keeps_their_average(tmp_path):
    source = HSTL(classes=6, variant=hstl_net.COMPACT)
    weights = tmp_path / "start.pt"
    torch.save({"model": source.state_dict()}, weights)
    output = tmp_path / "run"
    common = [
        "--data", str(shared(CASIA_B)), "--subjects", "001-004", "--views", "090", "--output", str(output),
        "--batch-p", "2", "--batch-k", "2", "--frames", "9", "--log-every", "1", "--save-every", "2",
        "--validation-subjects", "", "--variant", "compact", "--init", str(weights), "--lr", "0",
        "--schedule", "cosine", "--warmup", "0", "--augment", "all", "--average-from", "1", "--weight-decay", "0",
    ]
    model = HSTL(classes=4, variant=hstl_net.COMPACT)
    assert train.load_initial_weights(model, weights) == ["Head1.fc_bin"]
    first = train.train(train.parse_args(common + ["--iterations", "2"]))
    state = torch.load(first, map_location="cpu", weights_only=True)
    learnt = {name for name, _ in source.named_parameters()} - {"Head1.fc_bin"}
    for name in learnt:
        torch.testing.assert_close(state["model"][name], source.state_dict()[name], msg=f"{name} moved at a rate of 0")
    averaged = torch.load(train.averaged_path(first), map_location="cpu", weights_only=True)
    assert averaged["averaged_iterations"] == 1
    second = train.train(train.parse_args(common + ["--iterations", "4"]))
    assert torch.load(train.averaged_path(second), map_location="cpu", weights_only=True)["averaged_iterations"] == 3
