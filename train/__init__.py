"""glat-fit, glat-eval and the demo; they need the [train] extra, which importing glat_tf checks."""

import glat_tf  # noqa: F401
