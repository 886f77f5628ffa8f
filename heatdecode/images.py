"""Reading PNG and TIFF heatmaps with Pillow, safely: the pixel budget is
checked from the header (and every TIFF page) before pixels are decoded,
animated PNGs are refused, a 16-bit colour PNG is reported (Pillow reads it as
8 bits), and grey modes become one array of the stored precision.
"""

from __future__ import annotations

import threading
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageMode, ImageSequence, UnidentifiedImageError

from heatdecode.guards import Cancelled, LoadError, check_budget, short_reason

_GREY_MODES = {"L": None, "I;16": None, "I;16L": None, "I;16B": None, "I": None, "F": None}


def _frame_to_array(frame: Image.Image, notes: list[str]) -> np.ndarray:
    mode = frame.mode
    if mode not in _GREY_MODES:
        note = (
            f"{mode} image converted to grayscale (luma); a colour-mapped heatmap "
            "cannot be inverted, save the raw map instead"
        )
        if note not in notes:
            notes.append(note)
        frame = frame.convert("L")
    array = np.asarray(frame)
    if array.dtype.byteorder not in "=|":
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _check_pixels(frame: Image.Image) -> None:
    # Pillow only warns between MAX_IMAGE_PIXELS and twice that, and only checks a
    # TIFF's later pages when they are decoded; refuse it all here rather than
    # through warnings filters, which are not thread-safe.
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and frame.width * frame.height > limit:
        raise Image.DecompressionBombError(
            f"{frame.width}x{frame.height} pixels is over the limit of {limit}"
        )


def _page_bytes(image: Image.Image) -> int:
    """The bytes one page takes decoded: width x height x bytes per pixel."""
    mode = ImageMode.getmode(image.mode)
    return image.width * image.height * len(mode.bands) * np.dtype(mode.typestr).itemsize


def _pages(image: Image.Image, budget: int) -> list[tuple[int, int]]:
    """Every page's size, checked against Pillow's pixel limit and, summed, against
    the budget, before any page is decoded: ``seek`` reads a TIFF's page headers
    only. Other formats hold pages of one size: counted as that many copies."""
    frames = getattr(image, "n_frames", 1)
    if image.format == "PNG" and frames > 1:
        raise LoadError(
            f"animated PNG ({frames} frames): save one frame, or the volume as a .tif stack"
        )
    if image.format != "TIFF":
        _check_pixels(image)
        check_budget(frames * _page_bytes(image), budget)
        return [image.size] * frames
    sizes, total = [], 0
    for page in ImageSequence.Iterator(image):  # seeks: nothing is decoded yet
        _check_pixels(page)  # every page: a TIFF's later pages can be bombs too
        sizes.append(page.size)
        total += _page_bytes(page)
    check_budget(total, budget, "the pages would take")
    image.seek(0)
    return sizes


def _sixteen_bit_colour(head: bytes) -> bool:
    """A PNG whose header (IHDR) says 16 bits per sample in colour or with alpha:
    Pillow reads those as 8 bits per channel."""
    return (
        head[:8] == b"\x89PNG\r\n\x1a\n"
        and head[12:16] == b"IHDR"
        and len(head) >= 26
        and head[24] == 16
        and head[25] in (2, 4, 6)  # RGB, grey + alpha, RGBA
    )


def load_image(
    fh: BinaryIO, size: int, budget: int, cancel: threading.Event | None
) -> tuple[np.ndarray, str | None, list[str]]:
    if size == 0:
        raise LoadError("empty file")
    notes: list[str] = []
    head = fh.read(26)
    fh.seek(0)
    try:
        with Image.open(fh) as image:  # the file load_source opened: no second open()
            sizes = _pages(image, budget)
            if len(set(sizes)) != 1:  # known before decoding any
                raise LoadError("the pages of this stack differ in size or type")
            stack = None
            for index, frame in enumerate(ImageSequence.Iterator(image)):
                if cancel is not None and cancel.is_set():
                    raise Cancelled
                page = _frame_to_array(frame, notes)
                if stack is None:  # filled page by page: no second copy from np.stack
                    stack = np.empty((len(sizes), *page.shape), page.dtype)
                elif page.shape != stack.shape[1:] or page.dtype != stack.dtype:
                    raise LoadError("the pages of this stack differ in size or type")
                stack[index] = page
    except LoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise LoadError(
            f"image too large, refused as a decompression bomb ({short_reason(exc)})"
        ) from None
    except UnidentifiedImageError:
        raise LoadError("not a readable image") from None
    except PermissionError:
        raise
    except Exception as exc:  # Pillow raises many types on damaged files (TypeError, KeyError...)
        raise LoadError(f"corrupt or truncated image ({short_reason(exc)})") from None
    assert stack is not None
    if _sixteen_bit_colour(head):
        notes.append(
            "16-bit colour PNG read as 8 bits per channel (Pillow's limit); "
            "save a 16-bit grayscale PNG or a .npy to keep 16 bits"
        )
    if len(stack) == 1:
        return stack[0], None, notes
    # A multi-page TIFF is a volume: its auto layout is DHW, not CHW.
    return stack, "DHW", notes
