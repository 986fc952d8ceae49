"""The versioned records beside the SavedModel (assets/model.json) and the MediaPipe file
(single_file.json): written and read through the contract, bad ones refused with the reason."""

import json

import pytest

from edge_runtime.contract import ContractError, SavedModelFacts, SingleFileRecord

FACTS = SavedModelFacts(sample_rate=32000, num_classes=4, n_clips=2, crop_samples=64000,
                        min_samples=64000, outputs=("fused", "global", "local"))
RECORD = SingleFileRecord(backbone="cnn10_tiny", sample_rate=32000, window_samples=160000,
                          crop_samples=64000, n_clips=2, tau=2.0, num_classes=4, frames=501,
                          suppress_overlap=True, frontend={"n_fft": 1024},
                          outputs=("fused", "global", "local", "clip_start_seconds"),
                          variants={"f32": "glat_f32.tflite"})


@pytest.mark.parametrize("record", [FACTS, RECORD], ids=["saved_model", "single_file"])
def test_a_record_reads_back_what_was_written(record, tmp_path):
    path = record.validate().write(tmp_path)
    assert path.name == record.FILE
    data = json.loads(path.read_text())
    assert next(iter(data)) == "format" and data["format"] == record.format
    assert type(record).read(tmp_path) == record == type(record).read(path)


@pytest.mark.parametrize("change, message", [
    (dict(format="glat-tf-saved-model/0"), "re-export it with glat-export saved-model"),
    (dict(format=None), "format must be 'glat-tf-saved-model/1'"),
    (dict(sample_rate=0), "sample_rate must be a positive integer"),
    (dict(n_clips=5), "n_clips <= num_classes"),
    (dict(crop_samples=0), "a crop exactly when there are clips"),
    (dict(n_clips=0), "a crop exactly when there are clips"),
    (dict(min_samples=100), "shorter than a crop"),
    (dict(outputs=["fused"]), "`global` among them")])
def test_bad_saved_model_facts_are_refused(change, message):
    with pytest.raises(ContractError, match=message):
        SavedModelFacts.from_dict({**FACTS.to_dict(), **change})


def test_the_facts_of_a_baseline_have_no_crop():
    facts = SavedModelFacts.from_dict({**FACTS.to_dict(), "n_clips": 0, "crop_samples": 0,
                                       "min_samples": 32000, "outputs": ["global", "framewise"]})
    assert facts.outputs == ("global", "framewise") and facts.min_samples == 32000


@pytest.mark.parametrize("change, message", [
    (dict(format="glat-tf-single-file/1"), "re-export it with glat-export tflite --single-file"),
    (dict(n_clips=0, crop_samples=0), "n_clips must be a positive integer"),
    (dict(crop_samples=200000), "crop_samples <= window_samples"),
    (dict(frames=0), "frames must be a positive integer"),
    (dict(outputs=[]), "outputs must name the heads"),
    (dict(variants={}), "variants must map")])
def test_bad_single_file_records_are_refused(change, message):
    with pytest.raises(ContractError, match=message):
        SingleFileRecord.from_dict({**RECORD.to_dict(), **change})


def test_missing_file_keys_and_json_are_named(tmp_path):
    with pytest.raises(ContractError, match="no model.json at .*glat-export saved-model"):
        SavedModelFacts.read(tmp_path)
    with pytest.raises(ContractError, match=r"missing keys \['min_samples'\]"):
        SavedModelFacts.from_dict({k: v for k, v in FACTS.to_dict().items()
                                   if k != "min_samples"})
    (tmp_path / "single_file.json").write_text("{not json")
    with pytest.raises(ContractError, match="single_file.json: is not valid JSON"):
        SingleFileRecord.read(tmp_path)


def test_a_saved_model_without_the_record_is_refused_before_loading(tmp_path):
    """The model.json a pre-contract export wrote (no format) fails with the reason, and
    TensorFlow never loads the folder."""
    from glat_core.backends import open_backend
    (tmp_path / "saved_model.pb").write_bytes(b"not a graph")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "model.json").write_text('{"sample_rate": 32000, "crop_samples": 0}')
    with pytest.raises(ContractError, match="format must be 'glat-tf-saved-model/1'"):
        open_backend(tmp_path)
