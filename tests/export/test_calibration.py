"""export.calibration's window shaping: padded() (glat-export --calibration-padded) and the
streaming variety built on it."""

import numpy as np

from export.calibration import padded, streaming_variety


def test_every_kth_window_starts_after_zeros_and_the_rest_is_untouched():
    windows = np.arange(1, 17 * 80 + 1, dtype=np.float32).reshape(17, 80)
    out = padded(windows, 4)
    for i, (row, original) in enumerate(zip(out, windows)):
        if i % 4:
            np.testing.assert_array_equal(row, original)
            continue
        pad = 80 * (1 + (i // 4) % 7) // 8  # 1/8, 2/8, ... of the window
        assert not row[:pad].any() and row[pad:].all()
        np.testing.assert_array_equal(row[pad:], original[:80 - pad])  # the clip's start
    assert windows[0].all()  # a copy: the caller's windows are not changed


def test_streaming_variety_pads_as_padded_and_quiets_others():
    windows = np.ones((8, 64), np.float32)
    out = streaming_variety(windows)
    np.testing.assert_array_equal(out[[0, 4]], padded(windows, 4)[[0, 4]])
    np.testing.assert_allclose(out[2], 10 ** (-10 / 20))  # -10 dB
    np.testing.assert_array_equal(out[[1, 3, 5, 7]], windows[[1, 3, 5, 7]])
