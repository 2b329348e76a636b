"""Bounds on what one request body may ask of a parser, checked before the costly work.

A body within the size limit can still cost far more than its bytes: a 409 KB CSV header of
60,000 columns kept pandas busy for a minute, a 657 KB PNG decodes to 640 MB of pixels, a small
Parquet file run-length encodes billions of cells. Each descriptor checks the shape a body
declares (the CSV's delimiters, the JSON's keys, the image header's size, the Parquet footer)
against these limits before it builds anything, and answers a 400 naming the limit.

The server applies ``api_server.input_limits`` of the serving configuration to every API's
input (``IODescriptor.apply_limits``); a descriptor's own option (``max_columns=``,
``max_pixels=``) wins over it. Without a server (offline runs, tests) the defaults below apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from dosirak.exceptions import BadInput
from dosirak.io.base import field_error


@dataclass(frozen=True)
class InputLimits:
    """The most a request body may declare; see ``api_server.input_limits`` in the docs."""

    #: Columns of a DataFrame body (CSV fields per line, JSON keys, Parquet schema width).
    max_dataframe_columns: int = 1000
    #: Cells (rows x columns) a Parquet body may declare; a CSV or JSON body within the size
    #: limit cannot hold more than about this many, but Parquet's encodings can.
    max_dataframe_cells: int = 10_000_000
    #: Pixels (width x height) of an image body, read from its header before decoding.
    max_image_pixels: int = 25_000_000


DEFAULT_LIMITS = InputLimits()


def limit_exceeded(what: str, found: int, limit: int, option: str, setting: str) -> BadInput:
    """The 400 for a body that declares more than a limit allows, saying how to raise it."""
    return BadInput(f"the body declares {found:,} {what}, more than the {limit:,} this API "
                    f"accepts; send fewer, or raise the limit ({option} on the descriptor, "
                    f"or api_server.input_limits.{setting} in the serving configuration)",
                    [field_error(["body"], f"{found} {what}, at most {limit}",
                                 "limit_exceeded")])
