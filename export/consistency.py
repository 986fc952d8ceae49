"""The consistency matrix: one model, one fixed set of audio, every path that tags it.

Every path answers stretches of audio (a whole input, a glat-tag window, a MediaPipe chunk,
a stream window); each answer is compared with the Keras model on exactly that stretch of
the conditioned audio (glat_core.audio; shorter than the shortest input, end-padded to it,
the one rule of every path): max |diff| of the fused, global and local scores, and whether
the clips are the same (or as good, by Keras' own scores, within a tie tolerance).

The audio set (write_audio_set): the real clip, 0.3 s, 3 s, 7 s, 10 s and 30 s of demo
audio, a stereo 48 kHz file and digital silence.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from export import acceptance
from glat_core.audio import pad_to, read_audio

SCORES = ("fused", "global", "local")
CASES = ("real clip 7 s", "0.3 s", "3 s", "7 s", "10 s", "30 s", "stereo 48 kHz 10 s",
         "digital silence 10 s")
REAL_CLIP = pathlib.Path(__file__).parent / "data" / "R9_ZSCveAHg_7s.wav"


@dataclasses.dataclass
class Answer:
    """A path's answer for the samples [start, end) of one input: scores (L,), clips in
    samples from the input's start (N,), and their classes (N,)."""

    start: int
    end: int
    fused: np.ndarray
    global_: np.ndarray
    local: np.ndarray
    clip_starts: np.ndarray
    selected_classes: np.ndarray


def write_audio_set(folder, sample_rate: int = 32000, seed: int = 0) -> dict[str, pathlib.Path]:
    """The fixed audio set as files in `folder`, {case: path} in CASES order (float WAV:
    decoding is exact, so every path reads the same samples)."""
    import soundfile
    import soxr
    from glat_tf.data.synthetic import SAMPLE_RATE, make_clip
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    demo = np.concatenate([make_clip(rng)[0] for _ in range(3)])
    if sample_rate != SAMPLE_RATE:
        demo = soxr.resample(demo, SAMPLE_RATE, sample_rate).astype(np.float32)
    second = sample_rate
    audio = {"0.3 s": demo[:int(0.3 * second)], "3 s": demo[:3 * second],
             "7 s": demo[second:8 * second], "10 s": demo[:10 * second], "30 s": demo,
             "digital silence 10 s": np.zeros(10 * second, np.float32)}
    paths = {"real clip 7 s": folder / "real_clip_7s.wav"}
    paths["real clip 7 s"].write_bytes(REAL_CLIP.read_bytes())
    for case, samples in audio.items():
        paths[case] = folder / (case.replace(" ", "_") + ".wav")
        soundfile.write(paths[case], samples.astype(np.float32), sample_rate, subtype="FLOAT")
    left = demo[10 * second:20 * second]
    stereo = soxr.resample(np.stack([left, left[::-1]], axis=1), sample_rate, 48000)
    paths["stereo 48 kHz 10 s"] = folder / "stereo_48k_10s.wav"
    soundfile.write(paths["stereo 48 kHz 10 s"], stereo.astype(np.float32), 48000,
                    subtype="FLOAT")
    return {case: paths[case] for case in CASES}


class Reference:
    """The Keras model on stretches of one conditioned input, cached by stretch."""

    def __init__(self, model, waveform: np.ndarray):
        self.model, self.waveform = model, np.asarray(waveform, np.float32)
        self.shortest = model.min_samples
        self.cache: dict = {}

    def __call__(self, start: int, end: int) -> dict:
        if (start, end) not in self.cache:
            piece = pad_to(self.waveform[start:end], self.shortest)[None]
            out = acceptance.keras_outputs(self.model, piece) if self.model.n_clips else {
                k: np.asarray(v) for k, v in self.model(piece, training=False).items()}
            self.cache[start, end] = out
        return self.cache[start, end]


def compare(reference: Reference, answers: list[Answer], tie: float = 0.0,
            start_tolerance: int = 0) -> dict:
    """max |diff| per score over the answers, and the fraction of clips that are Keras'
    own (`same_clips`) or as good by Keras' scores within `tie` (`clips_as_good`). Paths
    that write seconds (rounded to 1 ms) match a start within `start_tolerance` samples."""
    diffs = {k: 0.0 for k in SCORES}
    same, good, total = 0, 0, 0
    for answer in answers:
        ref = reference(answer.start, answer.end)
        for key in SCORES:
            ours = getattr(answer, "global_" if key == "global" else key)
            want = ref.get(key, ref["global"])[0]
            diffs[key] = max(diffs[key], float(np.abs(ours - want).max()))
        if "clip_starts" not in ref or not len(answer.selected_classes):
            continue
        starts = np.asarray(answer.clip_starts) - answer.start
        near = np.abs(starts - ref["clip_starts"][0]) <= start_tolerance
        got = {"clip_starts": np.where(near, ref["clip_starts"][0], starts)[None],
               "selected_classes": np.asarray(answer.selected_classes)[None]}
        length = max(answer.end - answer.start, reference.shortest)
        ok = acceptance.equivalent_picks(ref, got, length, reference.shortest, tie)
        same += int(((got["clip_starts"] == ref["clip_starts"])
                     & (got["selected_classes"] == ref["selected_classes"])).sum())
        good += int(ok.sum())
        total += ok.size
    return {**{f"max_abs_{k}": v for k, v in diffs.items()}, "answers": len(answers),
            "same_clips": same / total if total else 1.0,
            "clips_as_good": good / total if total else 1.0}


# ---- in-process paths: (conditioned waveform, file) -> [Answer]

def keras_path(model):
    def run(waveform, _file):
        ref = Reference(model, waveform)(0, len(waveform))
        return [answer_from(ref, 0, len(waveform))]
    return run


def answer_from(out: dict, start: int, end: int, row: int = 0) -> Answer:
    """An Answer from a dict of model outputs (batch first; clip_starts from `start`)."""
    glob = np.asarray(out["global"][row])
    n = out["clip_starts"].shape[-1] if "clip_starts" in out else 0
    return Answer(start, end, np.asarray(out.get("fused", out["global"])[row]), glob,
                  np.asarray(out.get("local", out["global"])[row]),
                  (np.asarray(out["clip_starts"][row]) + start if n else np.zeros(0, int)),
                  np.asarray(out["selected_classes"][row]) if n else np.zeros(0, int))


def tagger_path(model_path, variant: str = "f32", **settings):
    """The Python Tagger (glat-tag's engine) on a model file or folder: one answer per
    window of the file (`settings`: the LiteRT mode and crop budget)."""
    from glat_core.tagger import Tagger
    tagger = Tagger.load(model_path, variant=variant, **settings)

    def run(_waveform, file):
        return tags_answers(tagger.tag(file))
    return run


def tags_answers(tags) -> list[Answer]:
    return [Answer(int(tags.window_starts[w]), int(tags.window_ends[w]), tags.fused[w],
                   tags.global_[w], tags.local[w], tags.clip_starts[w],
                   tags.selected_classes[w]) for w in range(len(tags.window_starts))]


def litert_exact_path(folder, variant: str = "f32"):
    """The edge runtime's exact pipeline on the whole input at its own length."""
    from edge_runtime import Pipeline
    pipeline = Pipeline.from_export(folder, variant, mode="exact")

    def run(waveform, _file):
        return [hop_answer(pipeline.exact(waveform))]
    return run


def hop_answer(result) -> Answer:
    local = result.local if result.local is not None else result.global_
    return Answer(result.start, result.end, result.fused, result.global_, local,
                  result.start + np.asarray(result.clip_starts), result.selected_classes)


def mediapipe_path(tflite_path, sample_rate: int):
    """MediaPipe Tasks' AudioClassifier (AUDIO_CLIPS) on the single-file model: one answer
    per window-long chunk, fed the conditioned audio at the model's rate."""
    from mediapipe.tasks.python import audio
    from mediapipe.tasks.python.components.containers import audio_data
    from mediapipe.tasks.python.core import base_options
    from ai_edge_litert.interpreter import Interpreter
    window = int(Interpreter(model_path=str(tflite_path)).get_input_details()[0]["shape"][1])
    options = audio.AudioClassifierOptions(
        base_options=base_options.BaseOptions(model_asset_path=str(tflite_path)),
        running_mode=audio.RunningMode.AUDIO_CLIPS, max_results=-1)

    def run(waveform, _file):
        with audio.AudioClassifier.create_from_options(options) as classifier:
            results = classifier.classify(audio_data.AudioData.create_from_array(
                np.asarray(waveform, np.float32), sample_rate))
        answers = []
        for k, result in enumerate(results):
            heads = {h.head_name: h for h in result.classifications}
            values = {}
            for name, head in heads.items():
                row = np.zeros(len(head.categories), np.float32)
                for c in head.categories:
                    row[c.index] = c.score
                values[name] = row
            start = k * window
            # The model answers the chunk without its trailing exact zeros (MediaPipe's
            # padding, or digital silence): that is the audio its answer covers.
            chunk = np.asarray(waveform[start:start + window])
            heard = int(np.flatnonzero(chunk)[-1]) + 1 if chunk.any() else 0
            chosen = np.flatnonzero(values["clip_start_seconds"] >= 0)
            order = np.argsort(-values["global"][chosen], kind="stable")  # the top-N order
            classes = chosen[order]
            starts = np.round(values["clip_start_seconds"][classes] * sample_rate).astype(int)
            answers.append(Answer(start, start + heard, values["fused"],
                                  values["global"], values["local"], starts + start, classes))
        return answers
    return run


def record_answer(record: dict, labels, sample_rate: int) -> Answer:
    """An Answer from a tag record (glat_core.tags) that lists every class in `top`."""
    index = {name: i for i, (name, _) in enumerate(labels)}
    scores = {k: np.zeros(len(labels), np.float32) for k in SCORES}
    for entry in record["top"]:
        for key in SCORES:
            scores[key][index[entry["label"]]] = entry.get(key, entry["global"])
    clips = record.get("clips", [])
    return Answer(int(round(record["start_seconds"] * sample_rate)),
                  int(round(record["end_seconds"] * sample_rate)), scores["fused"],
                  scores["global"], scores["local"],
                  np.array([round(c["start_seconds"] * sample_rate) for c in clips], int),
                  np.array([index[c["class"]] for c in clips], int))


def matrix(model, files: dict, paths: dict, ties: dict | None = None,
           start_tolerances: dict | None = None) -> dict:
    """{path: {case: compare()}} for `paths` {name: run(waveform, file) -> [Answer]} over the
    audio `files` {case: path}, conditioned once at the model's rate."""
    rows = {name: {} for name in paths}
    for case, file in files.items():
        waveform, _ = read_audio(file, int(model.sample_rate))
        reference = Reference(model, waveform)
        for name, run in paths.items():
            rows[name][case] = compare(reference, run(waveform, file),
                                       (ties or {}).get(name, 0.0),
                                       (start_tolerances or {}).get(name, 0))
    return rows


def markdown(rows: dict) -> str:
    """The table: one row per path, one column per case, max |diff| over fused, global and
    local (and a * where a clip differs from Keras' but is as good)."""
    cases = list(next(iter(rows.values())))
    lines = ["| path | " + " | ".join(cases) + " |", "|---" * (len(cases) + 1) + "|"]
    for name, by_case in rows.items():
        cells = []
        for case in cases:
            stats = by_case[case]
            worst = max(stats[f"max_abs_{k}"] for k in SCORES)
            mark = "" if stats["same_clips"] == 1 else (
                "*" if stats["clips_as_good"] == 1 else " (clips differ)")
            cells.append(f"{worst:.1e}{mark}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def saved_model_path(folder):
    """The SavedModel's serving signature, in this process (end-padded to one second, the
    signature's shortest input, only when shorter)."""
    from glat_core.backends import SavedModelBackend, saved_model_folder
    backend = SavedModelBackend(saved_model_folder(pathlib.Path(folder)))

    def run(waveform, _file):
        return [answer_from(backend(pad_to(waveform, backend.min_samples)[None]), 0,
                            len(waveform))]
    return run


def report_matrix(model, exported, folder, saved_model=None, single_file=None) -> dict:
    """The matrix `glat-export report` prints: Keras, every exported LiteRT variant (exact),
    the Python Tagger on the export folder, and the SavedModel and the single-file models
    (`single_file`: one glat_<v>.tflite or a list, a row per variant) in MediaPipe when
    given, on the audio set written into `folder`."""
    from edge_runtime import ExportMetadata
    from export.acceptance import TOLERANCES
    meta = ExportMetadata.read(exported)
    files = write_audio_set(folder, int(model.sample_rate))
    paths = {"Keras": keras_path(model)}
    if saved_model:
        paths["SavedModel"] = saved_model_path(saved_model)
    for variant in meta.variants:
        paths[f"LiteRT {variant}"] = litert_exact_path(exported, variant)
    first = "f32" if "f32" in meta.variants else next(iter(meta.variants))
    paths[f"Tagger (LiteRT {first}, exact)"] = tagger_path(exported, first, mode="exact")
    if meta.streaming is not None and meta.streaming.exact_edges:
        from edge_runtime.streaming import full_budget
        paths[f"Tagger (LiteRT {first}, streaming, every pick scored)"] = tagger_path(
            exported, first, mode="streaming", crop_budget=full_budget(meta))
    singles = [single_file] if isinstance(single_file, (str, os.PathLike)) else single_file
    for file in singles or ():  # glat_<variant>.tflite
        variant = pathlib.Path(file).stem.rsplit("_", 1)[-1]
        paths[f"MediaPipe {variant}"] = mediapipe_path(file, int(model.sample_rate))
    ties = {f"{kind} {v}": TOLERANCES[v].tie for kind in ("LiteRT", "MediaPipe")
            for v in TOLERANCES}
    return matrix(model, files, paths, ties)
