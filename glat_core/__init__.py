"""The TensorFlow-free floor of glat-tf, which every part stands on: audio reading and
conditioning (`audio`), the tag record (`tags`), the file tagger and glat-tag (`tagger`,
`tag`), one-line CLI errors (`cli_errors`) and what users of the command lines see
(`console`). NumPy, soundfile and soxr only; TensorFlow is imported only by the tagger's
.keras and SavedModel backends, when such a model is loaded.
"""
