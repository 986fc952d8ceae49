"""SelectClips on hand-built activations: where the windows land, and what they contain."""

import numpy as np
import pytest
import tensorflow as tf

from export.litert_convert import convert, op_names, run
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


def test_converts_to_litert_builtins_with_same_outputs():
    select = SelectClips(n_clips=3, tau=2.0, sample_rate=RATE)
    wave, scores, acts = scene(10, [(0, 10, 0.9), (1, 12, 0.8), (5, 60, 0.7)])
    expected = [t.numpy() for t in select(wave, scores, acts)]
    flatbuffer = convert(lambda w, s, a: dict(zip(("crops", "starts", "classes"), select(w, s, a))),
                         [tf.TensorSpec(wave.shape), tf.TensorSpec(scores.shape),
                          tf.TensorSpec(acts.shape)], select)
    assert not [op for op in op_names(flatbuffer) if op.startswith("Flex")]
    lite = run(flatbuffer, w=wave, s=scores, a=acts)
    for name, ref in zip(("crops", "starts", "classes"), expected):
        np.testing.assert_array_equal(lite[name], ref)
