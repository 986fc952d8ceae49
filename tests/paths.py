"""Where the tests find the repository and the shipped test data, from any tests/ subfolder."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent  # the repository
DATA = ROOT / "tests" / "data"
