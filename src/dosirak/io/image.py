"""Image: pictures in (raw ``image/*`` body, form upload, or base64 in JSON), pictures out.

    >>> @svc.api(input=Image(pilmode="RGB"), output=JSON())
    ... def classify(image: PIL.Image.Image) -> dict: ...

Three ways to send an image, so every client has one: the file itself as the body
(``curl --data-binary @cat.png -H 'Content-Type: image/png'``), a multipart/form-data upload (an
HTML form, Swagger UI), or JSON with base64 text, ``{"b64": "..."}`` or TensorFlow Serving's
``{"instances": [{"b64": "..."}]}`` from the seeds. The image is decoded fully when the request is
read, so a corrupt file is a 400, not an error inside the model.
"""

from __future__ import annotations

import io
from typing import Any

from dosirak.exceptions import BadInput, MissingDependency
from dosirak.io.base import (
    BINARY_SCHEMA,
    JSON_MEDIA_TYPE,
    InvalidOutput,
    IODescriptor,
    check_option,
    field_error,
)
from dosirak.io.file import FORM_MEDIA_TYPE, decode_base64, single_upload, upload_form_schema
from dosirak.io.form import parse_form
from dosirak.io.limits import DEFAULT_LIMITS, InputLimits, limit_exceeded

# {"b64": ...} holds nothing else (other keys are refused); the instances wrapper may.
_B64_OBJECT: dict[str, Any] = {"type": "object",
                               "properties": {"b64": {"type": "string", "format": "byte"}},
                               "required": ["b64"], "additionalProperties": False}
_B64_SCHEMA: dict[str, Any] = {
    "oneOf": [
        _B64_OBJECT,
        {"type": "object", "properties": {"instances": {
            "type": "array", "minItems": 1, "maxItems": 1, "items": _B64_OBJECT}},
         "required": ["instances"]},
    ],
}


def _pil() -> Any:
    try:
        from PIL import Image as PILImage
    except ImportError:
        raise MissingDependency("the Image descriptor needs Pillow: pip install 'dosirak[image]' "
                                "(or pip install pillow)") from None
    PILImage.init()
    return PILImage


class Image(IODescriptor):
    """A ``PIL.Image.Image``.

    ``pilmode`` converts every input (``"RGB"``, ``"L"``...); ``allowed_mime_types`` limits the
    formats accepted (``["image/png", "image/jpeg"]``; any format Pillow reads by default);
    ``mime_type`` is the format of output images. API functions may also return numpy arrays
    (converted with ``Image.fromarray``) or encoded bytes.

    ``max_pixels`` bounds width x height, read from the image's header before it is decoded: a
    small compressed file can decode to gigabytes (a 657 KB PNG of 13000x13000 pixels takes
    640 MB). Unset, the server's ``api_server.input_limits.max_image_pixels`` applies (25
    million by default). Pillow's own bomb check (past about 179 million pixels) stays.
    """

    python_type = "PIL.Image.Image"
    # A compressed image decodes to many times its size (a 64 KB JPEG to about a megapixel,
    # ~5 ms): decode larger ones off the event loop.
    parse_on_loop_below = 64 * 1024

    def __init__(self, pilmode: str | None = None, mime_type: str = "image/png",
                 allowed_mime_types: list[str] | tuple[str, ...] | None = None,
                 max_pixels: int | None = None) -> None:
        pil = _pil()
        check_option(max_pixels is None or (isinstance(max_pixels, int) and max_pixels >= 1),
                     f"Image: max_pixels must be a positive int, got {max_pixels!r}")
        self.max_pixels = max_pixels
        self._max_pixels = max_pixels or DEFAULT_LIMITS.max_image_pixels
        formats_by_mime = {mime: name for name, mime in pil.MIME.items()}
        check_option(mime_type in formats_by_mime and formats_by_mime[mime_type] in pil.SAVE,
                     f"Image: Pillow cannot write {mime_type!r}; use one of "
                     f"{sorted(m for m, f in formats_by_mime.items() if f in pil.SAVE)}")
        check_option(pilmode is None or pilmode in pil.MODES,
                     f"Image: pilmode must be a Pillow mode such as 'RGB' or 'L', got {pilmode!r}")
        self.pilmode = pilmode
        self.mime_type = mime_type
        self._save_format = formats_by_mime[mime_type]
        self.allowed_mime_types = tuple(allowed_mime_types) if allowed_mime_types else None
        # Clients that do not know the image type send application/octet-stream; Pillow finds
        # the format from the bytes either way.
        raw_types = self.allowed_mime_types or ("image/*", "application/octet-stream")
        self.input_media_types = (*raw_types, FORM_MEDIA_TYPE, JSON_MEDIA_TYPE)
        self.output_media_types = (mime_type,)

    def apply_limits(self, limits: InputLimits) -> None:
        self._max_pixels = self.max_pixels or limits.max_image_pixels

    @classmethod
    def from_sample(cls, sample: Any, **options: Any) -> Image:
        """An Image descriptor whose output format is the sample's (a PIL image or a path)."""
        pil = _pil()
        image = sample if isinstance(sample, pil.Image) else pil.open(sample)
        mime = pil.MIME.get(image.format or "", "image/png")
        descriptor = cls(mime_type=options.pop("mime_type", mime), **options)
        descriptor.sample = image
        return descriptor

    # ----- reading ------------------------------------------------------------------------

    def parse(self, body: bytes | bytearray, media_type: str, params: dict[str, str]) -> Any:
        if media_type == FORM_MEDIA_TYPE:
            return self.decode(single_upload(parse_form(body, params), "image").data)
        if media_type == JSON_MEDIA_TYPE:
            from dosirak.io.encoding import loads

            return self.from_json_value(loads(body))
        return self.decode(body)

    def from_json_value(self, value: Any) -> Any:
        if isinstance(value, dict) and "instances" in value:
            instances = value["instances"]
            if not isinstance(instances, list) or len(instances) != 1:
                raise BadInput('"instances" must be a list holding one {"b64": "..."} object; '
                               "send one image per request",
                               [field_error(["body", "instances"], "expected one instance")])
            value = instances[0]
        return self.decode(decode_base64(value))

    def decode(self, data: bytes | bytearray) -> Any:
        """The decoded image; unreadable data and disallowed formats are a 400."""
        pil = _pil()
        try:
            image = pil.open(io.BytesIO(data))  # reads the header only
            self._check_pixels(image.size)
            image.load()
        except (pil.DecompressionBombError, pil.DecompressionBombWarning) as error:
            # Pillow's own check, past its limit (a warning turned error where warnings are).
            raise limit_exceeded("pixels", _pixels_in(error), self._max_pixels, "max_pixels",
                                 "max_image_pixels") from None
        except (pil.UnidentifiedImageError, OSError, SyntaxError, ValueError,
                EOFError) as error:
            raise BadInput(f"the image could not be read: {error}",
                           [field_error(["body"], "not a readable image", "image_invalid")]) \
                from None
        if self.allowed_mime_types is not None:
            mime = pil.MIME.get(image.format or "")
            if mime not in self.allowed_mime_types:
                raise BadInput(f"images of type {mime or image.format} are not accepted; send "
                               f"one of {list(self.allowed_mime_types)}",
                               [field_error(["body"], f"format {image.format} not allowed",
                                            "image_invalid")])
        if self.pilmode is not None and image.mode != self.pilmode:
            image = image.convert(self.pilmode)
        return image

    def _check_pixels(self, size: tuple[int, int]) -> None:
        width, height = size
        if width * height > self._max_pixels:
            raise limit_exceeded(f"pixels ({width}x{height})", width * height, self._max_pixels,
                                 "max_pixels", "max_image_pixels")

    # ----- writing ------------------------------------------------------------------------

    def render(self, value: Any, media_type: str) -> tuple[bytes, str]:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value), self.mime_type
        pil = _pil()
        if not isinstance(value, pil.Image):
            try:
                value = pil.fromarray(value)
            except (TypeError, ValueError, AttributeError) as error:
                raise InvalidOutput(f"the API returned {type(value).__name__}; an Image output "
                                    f"needs a PIL image, an image array or bytes ({error})") \
                    from None
        if self._save_format == "JPEG" and value.mode not in ("RGB", "L", "CMYK"):
            value = value.convert("RGB")  # JPEG has no alpha channel
        buffer = io.BytesIO()
        value.save(buffer, format=self._save_format)
        return buffer.getvalue(), self.mime_type

    # ----- describing ---------------------------------------------------------------------

    def schema(self) -> dict[str, Any]:
        return dict(BINARY_SCHEMA)

    def openapi_request_body(self) -> dict[str, Any]:
        content: dict[str, Any] = {
            media_type: {"schema": dict(BINARY_SCHEMA)}
            for media_type in self.input_media_types[:-2]
        }
        # The part is an image file: saying so lets clients (and fuzzers) send one.
        part_types = ", ".join(t for t in self.input_media_types[:-2])
        content[FORM_MEDIA_TYPE] = {"schema": upload_form_schema("image"),
                                    "encoding": {"image": {"contentType": part_types}}}
        content[JSON_MEDIA_TYPE] = {"schema": _B64_SCHEMA}
        return {"required": True, "content": content}

    def to_spec(self) -> dict[str, Any]:
        return {"type": "Image", "pilmode": self.pilmode, "mime_type": self.mime_type,
                "allowed_mime_types": self.allowed_mime_types, "max_pixels": self.max_pixels}


def _pixels_in(error: Exception) -> int:
    """The pixel count Pillow's bomb message states ("Image size (169000000 pixels) ...")."""
    words = str(error).replace("(", " ").split()
    return next((int(word) for word in words if word.isdigit()), 0)
