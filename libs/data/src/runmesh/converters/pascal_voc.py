"""The Pascal VOC converter: a writer of one XML file per image and its reader back into DM.

Layout under the dataset root::

    JPEGImages/<file_name>          the images (written by the caller at `image_path`)
    Annotations/<stem>.xml          one per image, `<stem>` being the file name's stem
    labels.txt                      the label schema's class names in id order, one a line
    ImageSets/Main/default.txt      the stems of the images, in the order they were added

Coordinates follow the VOC devkit, as supervision's `DetectionDataset.from_pascal_voc`
reads them: 1-based inclusive pixel indices, so a DM box `[x, y, w, h]` is written as
`xmin = x + 1`, `ymin = y + 1`, `xmax = x + w`, `ymax = y + h` (supervision subtracts one
from the minima only and gets back `x, y, x + w, y + h`). The sums are exact decimals of the
floats' shortest representations, so that the reader subtracts back exactly the DM floats;
whole numbers are written as integers, as VOC tools expect.

Only bounding boxes have a VOC form. What VOC has no field for rides in elements VOC tools
ignore: `<dm_id>` (the DM annotation's id) and a CVAT-style `<attributes>` block holding every
DM attribute, typed (`<value type="int">`; no type is a string). The attributes `pose`,
`truncated` and `difficult` are also written to VOC's own fields, for other tools.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Context, Decimal, InvalidOperation
from pathlib import Path
from typing import Final
from xml.etree import ElementTree

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as DefusedElementTree
from pydantic import ValidationError

from runmesh.converters.base import ConversionError, ConversionIssue, Dataset, DatasetWriter
from runmesh.dm import AttributeValue, BoundingBox, DMImage

IMAGES_DIR: Final = "JPEGImages"
ANNOTATIONS_DIR: Final = "Annotations"
LABELS_FILE: Final = "labels.txt"
IMAGE_SET_FILE: Final = "ImageSets/Main/default.txt"

_UNSPECIFIED_POSE: Final = "Unspecified"
# Doubles span about 10^-324..10^308 with at most 17 significant digits, so the exact sum of
# any two needs fewer than 700 digits: with 800, decimal arithmetic here never rounds.
_EXACT: Final = Context(prec=800)
_MAX_EXACT_INT: Final = 2**53

# Characters XML 1.0 cannot hold at all (not even as character references), and the ones
# that must be escaped; `\r` too, since parsers turn a raw one into `\n`.
_ILLEGAL: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SPECIAL: Final = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class _Unwritable(Exception):
    """A text with a character that XML 1.0 cannot hold."""


def _escape(text: str) -> str:
    """`text` as XML character data; raises `_Unwritable` when XML cannot hold it."""
    # One regex search for the common case (nothing to escape) keeps the writer fast.
    if _SPECIAL.search(text) is None:
        return text
    if _ILLEGAL.search(text) is not None:
        raise _Unwritable(text)
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def _exact_sum(a: float, b: float) -> str:
    """The exact decimal sum of `a` and `b` (as their shortest reprs), without exponent."""
    if a.is_integer() and b.is_integer() and abs(a) < _MAX_EXACT_INT and abs(b) < _MAX_EXACT_INT:
        return str(int(a) + int(b))
    text = format(_EXACT.add(Decimal(repr(a)), Decimal(repr(b))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _plus_one(value: float) -> str:
    """`_exact_sum(value, 1.0)`, by string for the usual coordinates (the minima's shift)."""
    text = repr(value)
    if value >= 0 and "e" not in text:
        whole, _, fraction = text.partition(".")
        return f"{int(whole) + 1}" if fraction == "0" else f"{int(whole) + 1}.{fraction}"
    return _exact_sum(value, 1.0)


def _attribute_value(value: AttributeValue) -> str:
    """The `<value>` element of an attribute: its text, typed unless it is a string."""
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return f'<value type="bool">{"true" if value else "false"}</value>'
    if isinstance(value, int):
        return f'<value type="int">{value}</value>'
    if isinstance(value, float):
        return f'<value type="float">{value!r}</value>'
    return f"<value>{_escape(value)}</value>"


def _flag(value: AttributeValue | None) -> str:
    """VOC's 0/1 `truncated` or `difficult` from a DM attribute (a bool or a number)."""
    return "1" if value is not None and not isinstance(value, str) and value else "0"


def _stem(file_name: str) -> str:
    return Path(file_name).stem


class PascalVocWriter(DatasetWriter):
    """Writes a Pascal VOC detection dataset: `Annotations/`, `JPEGImages/` and the lists.

    Each `add` writes its image's XML file at once; only the images' names stay in memory
    (to refuse two images with one annotation file, and for `default.txt` and the file list
    `close` returns). Polygons, keypoints and classifications have no VOC form, nor do boxes
    under one pixel wide or high (their 1-based `xmin` would pass `xmax`): each comes back
    as a `ConversionIssue`, unwritten, as do annotations with a character XML cannot hold.
    """

    format = "pascal_voc"

    def __init__(self, root: Path, classes: Sequence[str]) -> None:
        super().__init__(root, classes)
        for name in self.classes:
            if "\n" in name or "\r" in name:
                raise ValueError(f"class name {name!r}: {LABELS_FILE} holds one name a line")
        # Class names escaped once; None for a name XML cannot hold.
        self._class_text: dict[str, str | None] = {}
        for name in self.classes:
            try:
                self._class_text[name] = _escape(name)
            except _Unwritable:
                self._class_text[name] = None
        (root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        self._annotations_dir = root / ANNOTATIONS_DIR
        self._annotations_dir.mkdir(parents=True, exist_ok=True)
        # casefold(stem) -> file name, in the order added: supervision (and any dataset
        # copied to a case-insensitive file system) pairs images and XML files that way.
        self._names: dict[str, str] = {}
        self._closed = False

    def image_path(self, file_name: str) -> str:
        """`JPEGImages/<file_name>`; the layout is flat, so the name must be a plain one."""
        _check_file_name(file_name)
        return f"{IMAGES_DIR}/{file_name}"

    def add(self, image: DMImage) -> list[ConversionIssue]:
        """Write `Annotations/<stem>.xml` with the image's boxes; the rest comes back."""
        if self._closed:
            raise ValueError(f"{self.root / ANNOTATIONS_DIR}: the writer is closed")
        file_name = image.file_name
        _check_file_name(file_name)
        stem = _stem(file_name)
        key = stem.casefold()
        other = self._names.get(key)
        if other is not None:
            raise ValueError(
                f"images {other!r} and {file_name!r} would both be annotated in "
                f"{ANNOTATIONS_DIR}/{stem}.xml (their stems are equal, ignoring case)"
            )

        issues: list[ConversionIssue] = []
        parts = [
            "<annotation>\n",
            f"\t<folder>{IMAGES_DIR}</folder>\n",
            f"\t<filename>{_escape(file_name)}</filename>\n",
            "\t<size>\n",
            f"\t\t<width>{image.width}</width>\n",
            f"\t\t<height>{image.height}</height>\n",
            # DM has no channel count; VOC's images are colour.
            "\t\t<depth>3</depth>\n",
            "\t</size>\n",
            "\t<segmented>0</segmented>\n",
        ]
        class_text = self._class_text
        for annotation in image.annotations:
            if not isinstance(annotation, BoundingBox):
                issues.append(
                    ConversionIssue(
                        file_name,
                        annotation.id,
                        f"Pascal VOC cannot hold a {annotation.type.replace('_', ' ')}: "
                        "only bounding boxes are written",
                    )
                )
                continue
            if annotation.class_name not in class_text:
                issues.append(self.unknown_class(image, annotation.id, annotation.class_name))
                continue
            x, y, width, height = annotation.bbox
            if width < 1 or height < 1:
                issues.append(
                    ConversionIssue(
                        file_name,
                        annotation.id,
                        f"box {width}x{height} is under one pixel wide or high: Pascal VOC's "
                        "1-based inclusive xmin/ymin would pass xmax/ymax",
                    )
                )
                continue
            try:
                parts.append(
                    self._object(class_text[annotation.class_name], annotation, x, y, width, height)
                )
            except _Unwritable as error:
                issues.append(
                    ConversionIssue(
                        file_name,
                        annotation.id,
                        f"{error.args[0]!r} has a character that XML cannot hold",
                    )
                )
        parts.append("</annotation>\n")

        # Written before the name is recorded: a failed write leaves no trace in the lists.
        self.emit(f"{ANNOTATIONS_DIR}/{stem}.xml", "".join(parts).encode())
        self._names[key] = file_name
        return issues

    @staticmethod
    def _object(
        name: str | None, box: BoundingBox, x: float, y: float, width: float, height: float
    ) -> str:
        """One `<object>` element; raises `_Unwritable` for a text XML cannot hold.

        `name` is the class name escaped, None when XML cannot hold it.
        """
        if name is None:
            raise _Unwritable(box.class_name)
        attributes = box.attributes
        pose = attributes.get("pose")
        parts = [
            "\t<object>\n",
            f"\t\t<name>{name}</name>\n",
            f"\t\t<pose>{_escape(pose) if isinstance(pose, str) and pose else _UNSPECIFIED_POSE}"
            "</pose>\n",
            f"\t\t<truncated>{_flag(attributes.get('truncated'))}</truncated>\n",
            f"\t\t<difficult>{_flag(attributes.get('difficult'))}</difficult>\n",
            "\t\t<bndbox>\n",
            f"\t\t\t<xmin>{_plus_one(x)}</xmin>\n",
            f"\t\t\t<ymin>{_plus_one(y)}</ymin>\n",
            f"\t\t\t<xmax>{_exact_sum(x, width)}</xmax>\n",
            f"\t\t\t<ymax>{_exact_sum(y, height)}</ymax>\n",
            "\t\t</bndbox>\n",
            f"\t\t<dm_id>{_escape(box.id)}</dm_id>\n",
        ]
        if attributes:
            # Every attribute, pose/truncated/difficult included: VOC's own fields cannot
            # tell an absent attribute from a default one, nor keep its type.
            parts.append("\t\t<attributes>\n")
            for key, value in attributes.items():
                parts.append(
                    f"\t\t\t<attribute><name>{_escape(key)}</name>"
                    f"{_attribute_value(value)}</attribute>\n"
                )
            parts.append("\t\t</attributes>\n")
        parts.append("\t</object>\n")
        return "".join(parts)

    def close(self) -> list[str]:
        """Write `labels.txt` and `ImageSets/Main/default.txt`; returns every file written."""
        if self._closed:
            raise ValueError(f"{self.root / ANNOTATIONS_DIR}: the writer is closed")
        self._closed = True
        (self.root / LABELS_FILE).write_text(
            "".join(f"{name}\n" for name in self.classes), encoding="utf-8", newline="\n"
        )
        stems = [_stem(file_name) for file_name in self._names.values()]
        image_set = self.root / IMAGE_SET_FILE
        image_set.parent.mkdir(parents=True, exist_ok=True)
        image_set.write_text("".join(f"{stem}\n" for stem in stems), encoding="utf-8", newline="\n")
        files = [f"{ANNOTATIONS_DIR}/{stem}.xml" for stem in stems]
        files += [LABELS_FILE, IMAGE_SET_FILE]
        return files


def _check_file_name(file_name: str) -> None:
    """Refuse names that would leave the flat layout (or the root) or that XML cannot hold."""
    if (
        "/" in file_name
        or "\\" in file_name
        or file_name in {".", ".."}
        or _ILLEGAL.search(file_name) is not None
    ):
        raise ValueError(
            f"image file name {file_name!r}: Pascal VOC's layout needs a plain file name "
            "(no folders) that XML can hold"
        )


def read_pascal_voc(root: Path) -> Dataset:
    """Read the Pascal VOC dataset under `root` back into DM.

    Classes come from `labels.txt`, else the sorted names the objects use; one image per
    `Annotations/*.xml`, sorted by file name, its boxes in file order. A box's DM id is its
    `<dm_id>`, else its position in the file as text; its attributes are the `<attributes>`
    block, to which files without `<dm_id>` (not written here) add `pose` when specified and
    `truncated`/`difficult` when 1. Raises `ConversionError` naming the file for malformed
    XML and missing or invalid fields.
    """
    annotations_dir = root / ANNOTATIONS_DIR
    if not annotations_dir.is_dir():
        raise ConversionError(f"{annotations_dir}: missing, or not a directory")
    images = [_read_annotation(path) for path in sorted(annotations_dir.glob("*.xml"))]
    images.sort(key=lambda image: image.file_name)

    labels = root / LABELS_FILE
    classes: tuple[str, ...]
    if labels.exists():
        try:
            text = labels.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConversionError(f"{labels}: cannot be read: {error}") from error
        # Split on newlines only: str.splitlines would also split on \x1c, \x85, \u2028...
        # Blank lines are skipped; a name of spaces is still a name.
        lines = (line.removesuffix("\r") for line in text.split("\n"))
        classes = tuple(line for line in lines if line)
    else:
        classes = tuple(
            sorted({annotation.class_name for image in images for annotation in image.annotations})
        )
    return Dataset(classes=classes, images=images)


def _read_annotation(path: Path) -> DMImage:
    """One `Annotations/*.xml` file as a DM image."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConversionError(f"{path}: cannot be read: {error}") from error
    document = _parse(path, data)
    size = _child(path, document, "size")
    fields: dict[str, object] = {
        "file_name": _text(path, document, "filename"),
        "width": _integer(path, size, "width"),
        "height": _integer(path, size, "height"),
        "annotations": [
            _read_object(path, index, element)
            for index, element in enumerate(document.findall("object"))
        ],
    }
    try:
        return DMImage.model_validate(fields)
    except ValidationError as error:
        raise ConversionError(f"{path}: not valid DM: {error}") from error


def _parse(path: Path, data: bytes) -> ElementTree.Element:
    """The `<annotation>` root of a VOC document. No VOC file needs a DTD, so the parser
    refuses any (and with it entity declarations) in whatever encoding the document is: a
    byte search for `<!ENTITY` misses a UTF-16 one."""
    try:
        document = DefusedElementTree.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as error:
        raise ConversionError(
            f"{path}: DTDs and XML entity declarations are not accepted"
        ) from error
    except ElementTree.ParseError as error:
        raise ConversionError(f"{path}: not well-formed XML: {error}") from error
    if document.tag != "annotation":
        raise ConversionError(f"{path}: the root element is <{document.tag}>, not <annotation>")
    return document


def _read_object(path: Path, index: int, element: ElementTree.Element) -> dict[str, object]:
    """The DM bounding box fields of one `<object>`."""
    where = f"object {index}"
    box = _child(path, element, "bndbox", where)
    xmin, ymin, xmax, ymax = (
        _decimal(path, box, tag, where) for tag in ("xmin", "ymin", "xmax", "ymax")
    )
    # The inverse of the writer's exact sums: x = xmin - 1, w = xmax - x (likewise y, h).
    x = _EXACT.subtract(xmin, 1)
    y = _EXACT.subtract(ymin, 1)
    bbox = (
        float(x),
        float(y),
        float(_EXACT.subtract(xmax, x)),
        float(_EXACT.subtract(ymax, y)),
    )

    attributes: dict[str, AttributeValue] = {}
    block = element.find("attributes")
    if block is not None:
        for attribute in block.findall("attribute"):
            name_element = attribute.find("name")
            value_element = attribute.find("value")
            if name_element is None or value_element is None:
                raise ConversionError(f"{path}: {where}: an <attribute> lacks <name> or <value>")
            key = name_element.text or ""
            attributes[key] = _typed(path, where, key, value_element)

    dm_id = element.find("dm_id")
    if dm_id is None:
        # Not written here: VOC's own fields are the attributes (the block, from CVAT, wins).
        pose = element.findtext("pose")
        if pose and pose != _UNSPECIFIED_POSE:
            attributes.setdefault("pose", pose)
        for flag in ("truncated", "difficult"):
            if (element.findtext(flag) or "").strip() == "1":
                attributes.setdefault(flag, True)
        annotation_id = str(index)
    else:
        annotation_id = dm_id.text or ""

    return {
        "type": "bounding_box",
        "id": annotation_id,
        "class_name": _text(path, element, "name", where),
        "attributes": attributes,
        "bbox": bbox,
    }


def _typed(path: Path, where: str, key: str, element: ElementTree.Element) -> AttributeValue:
    """An attribute's value from its `<value>` text and `type`."""
    text = element.text or ""
    kind = element.get("type")
    try:
        if kind is None:
            return text
        if kind == "bool" and text in {"true", "false"}:
            return text == "true"
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        pass
    raise ConversionError(f"{path}: {where}: attribute {key!r}: {text!r} is not a {kind} value")


def _child(
    path: Path, element: ElementTree.Element, tag: str, where: str = "<annotation>"
) -> ElementTree.Element:
    child = element.find(tag)
    if child is None:
        raise ConversionError(f"{path}: {where}: missing <{tag}>")
    return child


def _text(path: Path, element: ElementTree.Element, tag: str, where: str = "<annotation>") -> str:
    text = _child(path, element, tag, where).text
    if not text:
        raise ConversionError(f"{path}: {where}: <{tag}> is empty")
    return text


def _integer(path: Path, element: ElementTree.Element, tag: str) -> int:
    text = _text(path, element, tag, "<size>")
    try:
        return int(text.strip())
    except ValueError:
        raise ConversionError(f"{path}: <size>: <{tag}> {text!r} is not an integer") from None


def _decimal(path: Path, element: ElementTree.Element, tag: str, where: str) -> Decimal:
    text = _text(path, element, tag, where)
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise ConversionError(f"{path}: {where}: <{tag}> {text!r} is not a finite number")
    return value


# -- single files (to_task: one annotation file per data unit) --------------------------------


def parse_pascal_voc_file(data: bytes, file_name: str = "annotation.xml") -> DMImage:
    """One Pascal VOC `<annotation>` XML document as a DM image (boxes read as in
    `read_pascal_voc`); raises `ConversionError` naming `file_name` when it is not one."""
    path = Path(file_name)  # only named in messages: the helpers take a path for that
    document = _parse(path, data)
    size = _child(path, document, "size")
    fields: dict[str, object] = {
        "file_name": _text(path, document, "filename"),
        "width": _integer(path, size, "width"),
        "height": _integer(path, size, "height"),
        "annotations": [
            _read_object(path, index, element)
            for index, element in enumerate(document.findall("object"))
        ],
    }
    try:
        return DMImage.model_validate(fields)
    except ValidationError as error:
        raise ConversionError(f"{path}: not valid DM: {error}") from error
