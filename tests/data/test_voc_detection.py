"""VOCDetection and its safe annotation reader, on tiny VOCdevkit trees written under
tmp_path (JPEGs via Pillow, XML by hand), and the seed's annotation (spec errata 6)."""
import os

import numpy as np
import pytest
from PIL import Image         # pillow is in the test extras: required, never skipped

from minicnn.data import DataLoader, detection_collate
from minicnn.data import detection_transforms as D
from minicnn.data.datasets import VOC_CLASSES, VOCDetection, VOCSegmentation
from minicnn.data.datasets.voc import RefusedXMLError, parse_voc_xml, read_voc_xml

# The seed's annotation ([002] L114-152) with the broken "</" newline "database>" joined.
SEED_XML = """<annotation>
    <folder>n02123394</folder>
    <filename>n02123394_2084</filename>
    <source>
        <database>ImageNet database</database>
    </source>
    <size>
        <width>500</width>
        <height>375</height>
        <depth>3</depth>
    </size>
    <segmented>0</segmented>
    <object>
        <name>n02123394</name>
        <pose>Unspecified</pose>
        <truncated>0</truncated>
        <difficult>0</difficult>
        <bndbox>
            <xmin>265</xmin>
            <ymin>185</ymin>
            <xmax>470</xmax>
            <ymax>374</ymax>
        </bndbox>
    </object>
    <object>
        <name>n02123394</name>
        <pose>Unspecified</pose>
        <truncated>0</truncated>
        <difficult>0</difficult>
        <bndbox>
            <xmin>90</xmin>
            <ymin>1</ymin>
            <xmax>323</xmax>
            <ymax>353</ymax>
        </bndbox>
    </object>
</annotation>
"""
# as printed in the seed
SEED_XML_AS_PRINTED = SEED_XML.replace("ImageNet database</database>",
                                       "ImageNet database</\n                database>")


def _object(name, box, difficult=None):
    flag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    xmin, ymin, xmax, ymax = box
    return (f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>{flag}"
            f"<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax>"
            f"<ymax>{ymax}</ymax></bndbox></object>")


def _annotation(width, height, objects):
    return (f"<?xml version='1.0'?>\n<annotation><folder>VOC2012</folder>"
            f"<filename>x.jpg</filename><size><width>{width}</width><height>{height}"
            f"</height><depth>3</depth></size><segmented>0</segmented>"
            + "".join(objects) + "</annotation>")


def _fake_voc(root, files, year="2012", image_set="train"):
    """``files``: name -> (width, height, annotation text)."""
    voc = root / "VOCdevkit" / f"VOC{year}"
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, (w, h, xml) in files.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            voc / "JPEGImages" / f"{name}.jpg")
        (voc / "Annotations" / f"{name}.xml").write_text(xml)
    (voc / "ImageSets" / "Main" / f"{image_set}.txt").write_text("\n".join(files) + "\n")
    return voc


def _two_images(tmp_path):
    return _fake_voc(tmp_path, {
        "2008_000001": (12, 10, _annotation(12, 10, [
            _object("dog", (1, 1, 12, 10)), _object("person", (3, 2, 7, 9), difficult=1)])),
        "2008_000002": (9, 7, _annotation(9, 7, [_object("car", (2, 3, 2, 5), difficult=0)])),
    })


def test_reads_boxes_labels_and_difficult_flags(tmp_path):
    _two_images(tmp_path)
    ds = VOCDetection(tmp_path, image_set="train")
    assert len(ds) == 2 and ds.classes == VOC_CLASSES
    image, target = ds[0]
    assert image.shape == (3, 10, 12) and image.dtype == np.float32 and image.max() <= 1
    # VOC's 1-based inclusive pixels -> pixel edges: the whole image is (0, 0, W, H)
    np.testing.assert_array_equal(target["boxes"], [[0, 0, 12, 10], [2, 1, 7, 9]])
    assert target["boxes"].dtype == np.float32
    assert target["labels"].tolist() == [VOC_CLASSES.index("dog"),
                                         VOC_CLASSES.index("person")]
    assert target["labels"].dtype == np.int64
    assert target["difficult"].tolist() == [False, True]
    # a one-pixel-wide box (xmin == xmax) is 1 wide
    _, target = ds[1]
    np.testing.assert_array_equal(target["boxes"], [[1, 2, 2, 5]])
    easy = VOCDetection(tmp_path, keep_difficult=False)
    assert easy[0][1]["labels"].tolist() == [VOC_CLASSES.index("dog")]
    assert easy[0][1]["difficult"].tolist() == [False]


def test_transforms_get_the_picture_and_collate(tmp_path):
    _two_images(tmp_path)
    seen = []

    def spy(image, target):
        seen.append((image.dtype, image.shape, sorted(target)))
        return image, target
    VOCDetection(tmp_path, transforms=spy)[1]
    assert seen == [(np.uint8, (7, 9, 3), ["boxes", "difficult", "labels"])]
    ds = VOCDetection(tmp_path, transforms=D.Compose([
        D.RandomHorizontalFlip(p=1.0), D.Resize((20, 30)), D.ToTensor()]))
    images, targets = next(iter(DataLoader(ds, batch_size=2, collate_fn=detection_collate)))
    assert images.shape == (2, 3, 20, 30)
    # flip (W = 9): (1, 2, 2, 5) -> (7, 2, 8, 5); resize x by 30/9, y by 20/7
    np.testing.assert_allclose(targets[1]["boxes"].numpy(),
                               [[7 * 30 / 9, 2 * 20 / 7, 8 * 30 / 9, 5 * 20 / 7]], rtol=1e-6)
    assert targets[0]["difficult"].numpy().tolist() == [False, True]


def test_parse_voc_xml_of_the_seed_annotation(tmp_path):
    path = tmp_path / "n02123394_2084.xml"
    path.write_text(SEED_XML)
    parsed = parse_voc_xml(read_voc_xml(path))
    box = {"name": "n02123394", "pose": "Unspecified", "truncated": "0", "difficult": "0"}
    assert parsed == {"annotation": {
        "folder": "n02123394", "filename": "n02123394_2084",
        "source": {"database": "ImageNet database"},
        "size": {"width": "500", "height": "375", "depth": "3"}, "segmented": "0",
        "object": [dict(box, bndbox={"xmin": "265", "ymin": "185", "xmax": "470",
                                     "ymax": "374"}),
                   dict(box, bndbox={"xmin": "90", "ymin": "1", "xmax": "323",
                                     "ymax": "353"})]}}
    assert VOCDetection.parse_voc_xml(read_voc_xml(path)) == parsed   # torchvision's name
    # the seed as printed breaks </database> across two lines: not well-formed
    path.write_text(SEED_XML_AS_PRINTED)
    with pytest.raises(ValueError, match="n02123394_2084.xml is not well-formed XML"):
        read_voc_xml(path)


def test_seed_annotation_as_a_sample(tmp_path):
    """The seed's annotation with a 500x375 picture, read with its own class list."""
    _fake_voc(tmp_path, {"n02123394_2084": (500, 375, SEED_XML)}, year="2007",
              image_set="trainval")
    ds = VOCDetection(tmp_path, year=2007, image_set="trainval",
                      classes=("background", "n02123394"))
    image, target = ds[0]
    assert image.shape == (3, 375, 500)
    np.testing.assert_array_equal(target["boxes"], [[264, 184, 470, 374], [89, 0, 323, 353]])
    assert target["labels"].tolist() == [1, 1] and target["difficult"].tolist() == [0, 0]
    assert ds.annotation(0)["annotation"]["size"]["width"] == "500"


def test_parse_voc_xml_object_lists_and_empty_leaves(tmp_path):
    """torchvision's rules: ``object`` is always a list under ``annotation``; a repeated
    tag elsewhere becomes a list; an empty leaf disappears; a blank one is ''."""
    path = tmp_path / "a.xml"
    path.write_text("<annotation><size><width>4</width><height>3</height></size>"
                    "<segmented/><note> </note><object><name>cat</name><part><name>head"
                    "</name></part><part><name>paw</name></part></object></annotation>")
    parsed = parse_voc_xml(read_voc_xml(path))["annotation"]
    assert list(parsed) == ["size", "note", "object"]
    assert parsed["note"] == ""
    assert parsed["object"] == [{"name": "cat", "part": [{"name": "head"}, {"name": "paw"}]}]
    path.write_text("<annotation><size><width>4</width><height>3</height></size>"
                    "</annotation>")
    assert parse_voc_xml(read_voc_xml(path))["annotation"]["object"] == []


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><object><name>&lol9;</name></object></annotation>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<annotation><folder>&secret;</folder></annotation>
"""


@pytest.mark.parametrize("text", [BILLION_LAUGHS, EXTERNAL_ENTITY,
                                  '<!DOCTYPE annotation SYSTEM "voc.dtd"><annotation/>'])
def test_entities_and_doctypes_are_refused(tmp_path, text):
    voc = _two_images(tmp_path)
    path = voc / "Annotations" / "2008_000002.xml"
    path.write_text(text)
    with pytest.raises(RefusedXMLError, match="2008_000002.xml: refused to parse"):
        read_voc_xml(path)
    with pytest.raises(RefusedXMLError, match="VOCDetection: .*2008_000002.xml"):
        VOCDetection(tmp_path)[1]
    VOCDetection(tmp_path)[0]                          # the other file still reads


def test_malformed_xml_names_the_file(tmp_path):
    voc = _two_images(tmp_path)
    path = voc / "Annotations" / "2008_000001.xml"
    for text in ("<annotation><object></annotation>", "", "<annotation>&nbsp;</annotation>",
                 "<annotation><name>a</name>"):
        path.write_text(text)
        with pytest.raises(ValueError, match=r"2008_000001.xml is not well-formed XML "
                                             r"\(.*line \d+, column \d+"):
            VOCDetection(tmp_path)[0]
    path.write_text("<voc><object/></voc>")
    with pytest.raises(ValueError, match="root element is <voc>, expected <annotation>"):
        VOCDetection(tmp_path)[0]


def test_unknown_class_and_missing_fields_name_the_file(tmp_path):
    voc = _two_images(tmp_path)
    path = voc / "Annotations" / "2008_000002.xml"
    cases = [
        (_annotation(9, 7, [_object("dog", (1, 1, 3, 3)), _object("unicorn", (1, 1, 3, 3))]),
         r"2008_000002.xml, object 1: unknown class name 'unicorn'"),
        (_annotation(9, 7, ["<object><bndbox><xmin>1</xmin></bndbox></object>"]),
         r"object 0: missing <name>"),
        (_annotation(9, 7, ["<object><name>dog</name></object>"]),
         r"object 0: missing <bndbox>"),
        (_annotation(9, 7, ["<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                            "<xmax>3</xmax></bndbox></object>"]), r"object 0: missing <ymax>"),
        (_annotation(9, 7, [_object("dog", (1, "one", 3, 3))]),
         r"bndbox ymin is not a number: 'one'"),
        (_annotation(9, 7, [_object("dog", (1, 1, 3, 3), difficult="yes")]),
         r"difficult must be 0 or 1"),
        (_annotation(8, 7, [_object("dog", (1, 1, 3, 3))]),
         r"2008_000002.xml gives the image size 8x7 \(W x H\) but .*2008_000002.jpg is 9x7"),
    ]
    for text, message in cases:
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            VOCDetection(tmp_path)[1]


def test_boxes_outside_the_image_or_inverted(tmp_path):
    voc = _two_images(tmp_path)
    path = voc / "Annotations" / "2008_000002.xml"             # a 9x7 image
    path.write_text(_annotation(9, 7, [_object("dog", (2, 2, 5, 5)),
                                       _object("cat", (4, 0, 10, 6)),      # ymin 0, xmax 10
                                       _object("cow", (12, 2, 14, 5))]))   # wholly outside
    with pytest.raises(ValueError, match=r"2008_000002.xml, object 1: the box .* = "
                                         r"\(4, 0, 10, 6\) reaches outside the 9x7 image.*"
                                         r"invalid_boxes='clip' or 'drop'"):
        VOCDetection(tmp_path)[1]
    dropped = VOCDetection(tmp_path, invalid_boxes="drop")[1][1]
    np.testing.assert_array_equal(dropped["boxes"], [[1, 1, 5, 5]])
    clipped = VOCDetection(tmp_path, invalid_boxes="clip")[1][1]
    np.testing.assert_array_equal(clipped["boxes"], [[1, 1, 5, 5], [3, 0, 9, 6]])
    assert clipped["labels"].tolist() == [VOC_CLASSES.index("dog"), VOC_CLASSES.index("cat")]
    path.write_text(_annotation(9, 7, [_object("dog", (5, 2, 3, 5))]))
    with pytest.raises(ValueError, match=r"\(5, 2, 3, 5\) has xmax < xmin"):
        VOCDetection(tmp_path)[1]
    assert len(VOCDetection(tmp_path, invalid_boxes="clip")[1][1]["boxes"]) == 0


def test_missing_split_files_and_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"VOCDetection: no split file train.txt"
                                                r"(.|\n)*ImageSets/Main/train.txt"):
        VOCDetection(tmp_path)
    voc = _two_images(tmp_path)
    os.remove(voc / "Annotations" / "2008_000002.xml")
    with pytest.raises(FileNotFoundError, match=r"1 annotation\(s\) listed in .* missing"
                                                r"(.|\n)*2008_000002.xml"):
        VOCDetection(tmp_path)
    with pytest.raises(ValueError, match="image_set must be one of"):
        VOCDetection(tmp_path, image_set="test")
    with pytest.raises(ValueError, match="invalid_boxes must be"):
        VOCDetection(tmp_path, invalid_boxes="ignore")
    with pytest.raises(ValueError, match="classes must list distinct names"):
        VOCDetection(tmp_path, classes=["background"])
    # the segmentation reader looks for its own split folder, and still says so
    with pytest.raises(FileNotFoundError, match="ImageSets/Segmentation/train.txt"):
        VOCSegmentation(tmp_path)


def test_image_without_objects(tmp_path):
    _fake_voc(tmp_path, {"empty": (5, 4, _annotation(5, 4, []))})
    _, target = VOCDetection(tmp_path)[0]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert target["difficult"].dtype == np.bool_
