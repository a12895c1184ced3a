"""PNG bytes of an image array, and the data URI that puts them inside an HTML page (the report, the dissection
page, the widget's images): one encoder, so equal pixels give equal bytes everywhere."""
from __future__ import annotations

import base64
import io

import numpy as np


def png_bytes(array: np.ndarray) -> bytes:
    """PNG with fixed encoder settings and no metadata, so the bytes depend only on the pixels."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()
