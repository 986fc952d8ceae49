"""SelectClips on hand-built activations: where the windows land, and what they contain."""

import numpy as np
import pytest
import tensorflow as tf

from export.litert_convert import op_names, signature_runner
from export.tflite import convert_callable
from glat_tf.layers.select_clips import SelectClips

RATE = 32000
FRAMES_PER_SECOND = 6.2  # CNN10: 62 frames for 10 s


def scene(seconds, peaks, num_classes=6, batch=1):
    """Waveform, clip scores, activations with class c peaking at frame f for (c, f, score)."""
    samples = int(seconds * RATE)
    frames = int(seconds * FRAMES_PER_SECOND)
    wave = np.random.default_rng(0).normal(size=(batch, samples)).astype(np.float32)
    scores = np.full((batch, num_classes), 0.01, np.float32)
    acts = np.full((batch, frames, num_classes), 0.05, np.float32)
    for cls, frame, score in peaks:
        scores[:, cls] = score
        acts[:, frame, cls] = 0.9
    return wave, scores, acts


def expected_start(frame, frames, samples, window):
    centre = (frame + 0.5) * samples / frames
    return int(np.clip(np.floor(centre - window / 2), 0, samples - window))


@pytest.mark.parametrize("seconds", [7, 10, 30])
@pytest.mark.parametrize("where", ["middle", "first", "last"])
def test_window_centred_on_peak_and_clamped(seconds, where):
    wave, scores, acts = scene(seconds, [])
    frames = acts.shape[1]
    frame = {"middle": frames // 2, "first": 0, "last": frames - 1}[where]
    scores[:, 3] = 0.9
    acts[:, frame, 3] = 0.95
    select = SelectClips(n_clips=1, tau=3.0, sample_rate=RATE)
    crops, starts, classes = (t.numpy() for t in select(wave, scores, acts))
    window = 3 * RATE
    assert classes.tolist() == [[3]]
    start = starts[0, 0]
    assert start == expected_start(frame, frames, wave.shape[1], window)
    if where == "first":
        assert start == 0
    elif where == "last":
        assert start == wave.shape[1] - window
    else:
        centre = (frame + 0.5) * wave.shape[1] / frames
        assert abs(start + window / 2 - centre) <= 1
    assert crops.shape == (1, 1, window)
    np.testing.assert_array_equal(crops[0, 0], wave[0, start:start + window])


def test_classes_ranked_by_clip_score():
    wave, scores, acts = scene(10, [(1, 10, 0.5), (4, 30, 0.9), (2, 50, 0.7)])
    _, starts, classes = SelectClips(n_clips=3, tau=2.0, sample_rate=RATE)(wave, scores, acts)
    assert classes.numpy().tolist() == [[4, 2, 1]]
    frames, samples = acts.shape[1], wave.shape[1]
    assert starts.numpy().tolist() == [[expected_start(f, frames, samples, 2 * RATE)
                                        for f in (30, 50, 10)]]


def test_overlap_suppression_moves_the_second_pick():
    wave, scores, acts = scene(10, [(0, 30, 0.9), (1, 31, 0.8)])
    acts[:, 50, 1] = 0.6  # class 1's second-best region, far from the first pick
    on = SelectClips(n_clips=2, tau=3.0, sample_rate=RATE, suppress_overlap=True)
    off = SelectClips(n_clips=2, tau=3.0, sample_rate=RATE, suppress_overlap=False)
    frames, samples, window = acts.shape[1], wave.shape[1], 3 * RATE
    _, starts_off, _ = off(wave, scores, acts)
    _, starts_on, _ = on(wave, scores, acts)
    assert starts_off.numpy().tolist() == [[expected_start(30, frames, samples, window),
                                            expected_start(31, frames, samples, window)]]
    # o = (3 s = 18 frames) // 4 = 4: frames [26, 34) are zeroed after the first pick.
    assert starts_on.numpy().tolist() == [[expected_start(30, frames, samples, window),
                                           expected_start(50, frames, samples, window)]]


def test_random_selection_draws_valid_varied_starts():
    wave, scores, acts = scene(10, [(0, 5, 0.9), (1, 6, 0.8)], batch=64)
    select = SelectClips(n_clips=2, tau=3.0, sample_rate=RATE, selection="random", seed=3)
    crops, starts, classes = (t.numpy() for t in select(wave, scores, acts))
    assert starts.min() >= 0 and starts.max() <= wave.shape[1] - 3 * RATE
    assert len(np.unique(starts)) > 100  # not the attention's fixed pick
    assert (classes == [0, 1]).all()
    b, n = 17, 1
    np.testing.assert_array_equal(crops[b, n], wave[b, starts[b, n]:starts[b, n] + 3 * RATE])


def test_no_gradient_through_selection():
    wave, scores, acts = (tf.constant(a) for a in scene(7, [(0, 10, 0.9)]))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([wave, scores, acts])
        crops, _, _ = SelectClips(n_clips=1, tau=1.0, sample_rate=RATE)(wave, scores, acts)
        total = tf.reduce_sum(crops)
    for source in (wave, scores, acts):
        assert tape.gradient(total, source) is None


def test_static_shapes_and_bad_input():
    select = SelectClips(n_clips=2, tau=3.0, sample_rate=RATE)
    spec = tf.function(select).get_concrete_function(
        tf.TensorSpec([4, 320000]), tf.TensorSpec([4, 6]), tf.TensorSpec([4, 62, 6]))
    assert [tuple(o.shape) for o in spec.outputs] == [(4, 2, 96000), (4, 2), (4, 2)]
    wave, scores, acts = scene(2, [(0, 3, 0.9)])
    with pytest.raises(ValueError, match="tau=3.0"):
        select(wave, scores, acts)
    with pytest.raises(ValueError, match="n_clips=9"):
        SelectClips(n_clips=9, tau=1.0)(*scene(7, [], num_classes=6))
    with pytest.raises(ValueError, match="rank 2"):
        select(wave[None], scores, acts)
    for bad in (dict(tau=0.0), dict(tau=-1.0), dict(n_clips=0), dict(selection="best")):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SelectClips(**bad)


def assert_litert_gives_the_same(select, wave, scores, acts):
    """`select` converts to LiteRT builtins only, and the flatbuffer's outputs equal its own."""
    expected = [t.numpy() for t in select(wave, scores, acts)]
    flatbuffer = convert_callable(
        lambda w, s, a: dict(zip(("crops", "starts", "classes"), select(w, s, a))),
        [tf.TensorSpec(wave.shape), tf.TensorSpec(scores.shape), tf.TensorSpec(acts.shape)],
        select, ["f32"])["f32"]
    assert not [op for op in op_names(flatbuffer) if op.startswith("Flex")]
    lite = signature_runner(flatbuffer)(w=wave, s=scores, a=acts)
    for name, ref in zip(("crops", "starts", "classes"), expected):
        np.testing.assert_array_equal(lite[name], ref)


def test_converts_to_litert_builtins_with_same_outputs():
    select = SelectClips(n_clips=3, tau=2.0, sample_rate=RATE)
    wave, scores, acts = scene(10, [(0, 10, 0.9), (1, 12, 0.8), (5, 60, 0.7)])
    assert_litert_gives_the_same(select, wave, scores, acts)


def authors_region_select(acts, classes, samples, window):
    """The authors' region_select loop (GL-AT models.py) in NumPy, with this layer's centre."""
    acts = acts.copy()
    frames = acts.shape[1]
    o = (window * frames // samples) // 4
    starts = np.zeros(classes.shape, np.int64)
    for b in range(acts.shape[0]):
        maps = acts[b].T[classes[b]]  # (N, frames): the selected classes' maps
        for j in range(classes.shape[1]):
            m = int(np.argmax(maps[j]))
            start = int(np.floor((m + 0.5) * samples / frames - window / 2))
            if start + window >= samples:
                maps[:, -2 * o:] = 0.0
            elif start < 0:
                maps[:, :2 * o] = 0.0
            else:
                maps[:, m - o:m + o] = 0.0
            starts[b, j] = min(max(start, 0), samples - window)
    return starts


def edge_scene():
    """10 s, 62 frames, tau 3 s: o = 4. Picks clamped at both edges, then classes near them."""
    wave, scores, acts = scene(10, [(0, 60, 0.9), (1, 55, 0.8), (2, 1, 0.7), (3, 6, 0.6),
                                    (4, 53, 0.5)])
    acts[:, 40, 1] = acts[:, 20, 3] = acts[:, 30, 4] = 0.4  # each one's second-best frame
    return wave, scores, acts


def test_reference_suppression_zeroes_the_clamped_edge():
    wave, scores, acts = edge_scene()
    frames, samples, window = acts.shape[1], wave.shape[1], 3 * RATE
    at = lambda *fs: [[expected_start(f, frames, samples, window) for f in fs]]  # noqa: E731
    select = lambda mode: SelectClips(n_clips=5, tau=3.0, sample_rate=RATE,  # noqa: E731
                                      suppress_overlap=mode)(wave, scores, acts)[1].numpy()
    # Frame 60 is clamped to the end. Today's rule zeroes [56, 64): class 1 keeps its peak 55,
    # whose pick zeroes [51, 59), so class 4 (peak 53) moves to frame 30. The authors' rule
    # zeroes the last 8 frames [54, 62): class 1 moves to frame 40, class 4 keeps 53.
    # Frame 1 is clamped to the start: today's rule zeroes [-3, 5), the authors' [0, 8), so
    # there class 3 (peak 6) moves to frame 20.
    assert select(True).tolist() == at(60, 55, 1, 6, 30)
    assert select("reference").tolist() == at(60, 40, 1, 20, 53)
    assert select(False).tolist() == at(60, 55, 1, 6, 53)
    assert select("reference").tolist() == authors_region_select(
        acts, np.array([[0, 1, 2, 3, 4]]), samples, window).tolist()


def test_reference_window_ending_at_the_clip_end_counts_as_clamped():
    # 8 s = 256000 samples over 64 frames (4000 each), window 68000 = 17 frames, o = 4.
    # Peak 54: centre 218000, window [184000, 252000), inside: [50, 58) is zeroed.
    # Peak 55: centre 222000, window [188000, 256000) ends exactly at the clip's end, which
    # the authors' test (index_r >= duration_all) counts as clamped: [56, 64) is zeroed.
    samples, frames, window = 256000, 64, 68000
    wave = np.zeros((2, samples), np.float32)
    scores = np.array([[0.9, 0.8, 0.1]] * 2, np.float32)
    acts = np.full((2, frames, 3), 0.05, np.float32)
    acts[0, 54, 0] = acts[1, 55, 0] = 0.9
    acts[:, 52, 1] = 0.8  # zeroed around 54, kept by the edge rule
    acts[:, 10, 1] = 0.3
    select = SelectClips(n_clips=2, tau=2.125, sample_rate=32000, suppress_overlap="reference")
    starts = select(wave, scores, acts)[1].numpy()
    assert starts.tolist() == [[184000, 8000], [188000, 176000]]
    expected = authors_region_select(acts, np.array([[0, 1]] * 2), samples, window)
    assert starts.tolist() == expected.tolist()


def test_reference_with_no_reach_zeroes_the_whole_map_at_the_end():
    # tau 0.5 s at 6.2 frames/s is 3 frames, o = 0: the authors' maps[:, -0:] = 0 is every frame.
    wave, scores, acts = scene(10, [(0, 61, 0.9), (1, 30, 0.8)])
    starts = SelectClips(n_clips=2, tau=0.5, sample_rate=RATE, suppress_overlap="reference")(
        wave, scores, acts)[1].numpy()
    assert starts.tolist() == [[wave.shape[1] - RATE // 2, 0]]  # class 1: argmax of zeros
    assert starts.tolist() == authors_region_select(acts, np.array([[0, 1]]), wave.shape[1],
                                                    RATE // 2).tolist()


def test_reference_matches_the_authors_loop_on_random_activations():
    rng = np.random.default_rng(5)
    wave = np.zeros((64, 10 * RATE), np.float32)
    scores = rng.uniform(size=(64, 20)).astype(np.float32)
    acts = rng.uniform(size=(64, 62, 20)).astype(np.float32)
    classes = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    select = lambda mode: SelectClips(n_clips=5, tau=3.0, sample_rate=RATE,  # noqa: E731
                                      suppress_overlap=mode)(wave, scores, acts)[1].numpy()
    reference = select("reference")
    np.testing.assert_array_equal(reference, authors_region_select(acts, classes, 10 * RATE,
                                                                   3 * RATE))
    assert (reference != select(True)).any()  # the rules do differ on such data


def test_suppress_overlap_values_are_checked_and_kept_by_glat_model():
    from glat_tf.model import GlatModel
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="suppress_overlap"):
            SelectClips(suppress_overlap=bad)
    with pytest.raises(ValueError, match="suppress_overlap"):
        GlatModel(backbone="cnn10_tiny", num_classes=6, n_clips=2, tau=1.0,
                  suppress_overlap="Reference")
    model = GlatModel(backbone="cnn10_tiny", num_classes=6, n_clips=2, tau=1.0,
                      suppress_overlap="reference")
    assert model.select.suppress_overlap == "reference"
    assert GlatModel.from_config(model.get_config()).select.suppress_overlap == "reference"


def test_reference_suppression_converts_to_litert_with_same_outputs():
    select = SelectClips(n_clips=5, tau=3.0, sample_rate=RATE, suppress_overlap="reference")
    wave, scores, acts = edge_scene()
    wave, scores, acts = (np.concatenate([a, a[:, ::-1] if a.ndim == 3 else a]) for a in
                          (wave, scores, acts))  # a second clip, its peaks mirrored in time
    assert_litert_gives_the_same(select, wave, scores, acts)
