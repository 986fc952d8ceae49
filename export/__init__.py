"""glat-export; it needs the [train] extra, which importing glat_tf checks."""

import glat_tf  # noqa: F401
