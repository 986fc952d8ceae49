"""GlatModel: outputs, the two loss modes' gradients, save/load, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from glat_tf import GlatModel
from tests.harness import check

CLASSES = 6


def tiny(**kwargs):
    args = dict(backbone="cnn10_tiny", num_classes=CLASSES, n_clips=2, tau=1.0)
    args.update(kwargs)
    return GlatModel(**args)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    wave = rng.normal(0, 0.1, (2, 3 * 32000)).astype(np.float32)
    labels = (rng.random((2, CLASSES)) < 0.4).astype(np.float32)
    return wave, labels


def test_outputs_and_round_trip(batch):
    model = tiny()
    shapes = {"global": (2, CLASSES), "local": (2, CLASSES), "fused": (2, CLASSES),
              "per_clip": (2, 2, CLASSES),
              "framewise": (2, 18, CLASSES), "clip_starts": (2, 2), "selected_classes": (2, 2)}
    out = check.run_backbone_test(model, (batch[0],), shapes, "glat_model",
                                  variable_inputs=[(batch[0][:1, :32000],)],
                                  int_outputs=("clip_starts", "selected_classes"))
    assert {k: v.shape for k, v in out.items()} == shapes
    for key in ("global", "local", "fused", "framewise"):
        assert ((out[key] >= 0) & (out[key] <= 1)).all()
    # Fusion is (max + mean) / 2 of the two streams, so it lies between them.
    low = np.minimum(out["global"], out["local"])
    high = np.maximum(out["global"], out["local"])
    np.testing.assert_allclose(out["fused"], (high + (low + high) / 2) / 2, atol=1e-6)
    # The selected classes are the global top-N.
    top = np.argsort(-out["global"], axis=1)[:, :2]
    assert (np.sort(top, 1) == np.sort(out["selected_classes"], 1)).all()


def test_any_length_at_least_tau():
    model = tiny()
    for seconds in (1.0, 2.5, 7.0):
        out = model(tf.zeros([1, int(seconds * 32000)]))
        assert out["clip_starts"].numpy().max() <= int(seconds * 32000) - 32000


def test_joint_global_gradient_is_the_gradient_of_global_loss_alone(batch):
    model = tiny()
    wave, labels = batch
    model(wave)
    variables = model.global_backbone.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        losses = model.stream_losses(model(wave, training=False), labels)
        joint = tf.reduce_mean(losses["loss"])
        global_only = tf.reduce_mean(losses["global_loss"])
    g_joint = tape.gradient(joint, variables)
    g_global = tape.gradient(global_only, variables)
    assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in g_global)
    for a, b in zip(g_joint, g_global):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-7, rtol=1e-6)
    local_grads = tape.gradient(joint, model.local_backbone.trainable_variables)
    assert all(g is not None for g in local_grads)


def test_frozen_global_leaves_global_weights_bit_identical(batch):
    model = tiny(loss_mode="frozen_global")
    wave, labels = batch
    model(wave)
    before = [v.numpy().copy() for v in model.global_backbone.weights]
    local_before = [v.numpy().copy() for v in model.local_backbone.trainable_variables]
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(wave, labels, batch_size=2, epochs=2, verbose=0)
    for a, v in zip(before, model.global_backbone.weights):
        assert np.array_equal(a, v.numpy()), v.path
    assert any(not np.array_equal(a, v.numpy())
               for a, v in zip(local_before, model.local_backbone.trainable_variables))


def test_joint_training_moves_both_streams(batch):
    model = tiny()
    wave, labels = batch
    model(wave)
    g0 = [v.numpy().copy() for v in model.global_backbone.trainable_variables]
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(wave, labels, batch_size=2, epochs=1, verbose=0).history
    assert set(history) == {"loss", "global_loss", "local_loss"}
    assert any(not np.array_equal(a, v.numpy())
               for a, v in zip(g0, model.global_backbone.trainable_variables))


def test_bad_input_names_the_argument():
    model = tiny()
    with pytest.raises(ValueError, match="rank 2"):
        model(tf.zeros([1, 1, 32000]))
    with pytest.raises(ValueError, match="dtype"):
        model(tf.zeros([1, 32000], tf.int32))
    with pytest.raises(ValueError, match="tau=1.0"):
        model(tf.zeros([1, 16000]))
    with pytest.raises(ValueError, match="n_clips=7"):
        tiny(n_clips=7)
    with pytest.raises(ValueError, match="tau"):
        tiny(tau=0.0)
    with pytest.raises(ValueError, match="backbone='cnn99'"):
        tiny(backbone="cnn99")
    with pytest.raises(ValueError, match="loss_mode"):
        tiny(loss_mode="both")


@pytest.mark.float_sensitive
def test_call_is_the_composition_of_its_stages(batch):
    """call = global_stage -> crops -> local_stage -> fuse; per_clip is the local stage's
    score of each window, so nothing has to run the local backbone again to get it."""
    model = tiny()
    wave = tf.constant(batch[0])
    out = model(wave, training=False)
    stage = model.global_stage(wave)
    for key in ("global", "framewise", "clip_starts", "selected_classes"):
        np.testing.assert_array_equal(out[key], stage[key], err_msg=key)
    crops = np.stack([[batch[0][b, s:s + model.crop_samples] for s in row]
                      for b, row in enumerate(stage["clip_starts"].numpy())])  # (2, N, window)
    np.testing.assert_array_equal(stage["crops"], crops)
    per_clip = model.local_stage(tf.constant(crops.reshape(-1, model.crop_samples)))["per_clip"]
    np.testing.assert_allclose(out["per_clip"], np.reshape(per_clip, (2, 2, CLASSES)), atol=1e-6)
    fused = model.fuse(out["global"], out["per_clip"])
    np.testing.assert_allclose(out["local"], fused["local"], atol=0)
    np.testing.assert_allclose(out["fused"], fused["fused"], atol=0)
    # The streaming stages compose to the same global scores.
    head = model.global_head(model.branch_features("global", wave))
    np.testing.assert_allclose(head["global"], out["global"], atol=1e-6)
    local_head = model.local_head(model.branch_features("local", tf.reshape(crops, [-1, model.crop_samples])))
    np.testing.assert_allclose(local_head["per_clip"], per_clip, atol=1e-6)


@pytest.mark.parametrize("preset", ["cnn10_tiny", "cnn6_tiny", "atsca_tiny", "mobilenetv1_tiny",
                                    "mobilenetv2_tiny", "resnet38_tiny", "talnet_tiny"])
def test_summary_works_on_every_family(preset):
    model = tiny(backbone=preset)
    model(tf.zeros([1, 2 * 32000]))
    lines = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    text = "\n".join(lines)
    assert "select_clips" in text and "global_stream" in text and "local_stream" in text
    assert f"{model.count_params():,}" in text


def test_from_preset_takes_a_typed_frontend():
    from glat_tf.config import FrontendConfig
    model = GlatModel.from_preset("cnn10_tiny", num_classes=CLASSES, n_clips=2, tau=1.0,
                                  frontend=FrontendConfig(n_mels=32, hop_length=640))
    for stream in (model.global_backbone, model.local_backbone):
        assert stream.frontend_config.n_mels == 32 and stream.frontend.hop_length == 640
    assert model.global_backbone.name == "global_stream"
    assert model.local_backbone.name == "local_stream"
    assert model.local_backbone.arch == model.global_backbone.arch
    with pytest.raises(ValueError, match="unknown frontend keys"):
        GlatModel.from_preset("cnn10_tiny", num_classes=CLASSES, frontend={"n_mel": 32})
    with pytest.raises(ValueError, match="has no setting 'colour'"):
        tiny(backbone_kwargs={"colour": 1})


def test_class_names_travel_inside_the_model(batch):
    names, mids = [f"class {i}" for i in range(CLASSES)], [f"/m/{i}" for i in range(CLASSES)]
    model = tiny(class_names=names, class_mids=mids)
    loaded = check.run_model_saving_test(model, (batch[0],), "glat_model")
    assert loaded.class_names == tuple(names) and loaded.class_mids == tuple(mids)
    with pytest.raises(ValueError, match="2 class_names for a model of 6 classes"):
        tiny(class_names=["a", "b"])


def test_shared_weights_are_one_network_trained_by_both_losses(batch):
    model = tiny(share_weights=True)
    wave, labels = batch
    model(wave)
    assert model.local_backbone is model.global_backbone
    separate = tiny()
    separate(wave)
    assert model.count_params() * 2 == separate.count_params()
    variables = model.global_backbone.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        losses = model.stream_losses(model(wave, training=False), labels)
        local = tf.reduce_mean(losses["local_loss"])
    # L_l reaches the (shared) global features: the point of the variant.
    assert any(g is not None and float(tf.reduce_max(tf.abs(g))) > 0
               for g in tape.gradient(local, variables))
    loaded = check.run_model_saving_test(model, (wave,), "glat_model")  # fused among them
    assert loaded.local_backbone is loaded.global_backbone
    with pytest.raises(ValueError, match="share_weights"):
        tiny(share_weights=True, loss_mode="frozen_global")


def test_distillation_trains_the_global_stream_towards_the_fused_score(batch):
    wave, labels = batch
    model = tiny(distill_weight=1.0, distill_target="local")
    out = model(wave, training=False)
    losses = model.stream_losses(out, labels)
    expected = keras.losses.binary_crossentropy(out["local"], out["global"])
    np.testing.assert_allclose(losses["distill_loss"], expected, atol=1e-6)
    np.testing.assert_allclose(losses["loss"], losses["global_loss"] + losses["local_loss"]
                               + losses["distill_loss"], atol=1e-6)
    # The target is a constant: distillation moves the global stream only.
    variables = model.local_backbone.trainable_variables
    with tf.GradientTape() as tape:
        distill = tf.reduce_mean(model.stream_losses(model(wave, training=False),
                                                     labels)["distill_loss"])
    assert all(g is None for g in tape.gradient(distill, variables))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(wave, labels, batch_size=2, epochs=1, verbose=0).history
    assert set(history) == {"loss", "global_loss", "local_loss", "distill_loss"}
    with pytest.raises(ValueError, match="distill"):
        tiny(distill_weight=1.0, loss_mode="frozen_global")


def test_a_cheaper_local_backbone(batch):
    from glat_tf import backbones
    local = backbones.build("cnn6_tiny", num_classes=CLASSES, frontend={"n_mels": 32},
                            name="local_stream")
    model = tiny(local_backbone=local)
    out = model(batch[0])
    assert out["per_clip"].shape == (2, 2, CLASSES)
    assert model.local_backbone.count_params() < model.global_backbone.count_params()
    config = model.get_config()
    clone = GlatModel.from_config(config)
    assert clone.local_backbone.frontend_config.n_mels == 32
