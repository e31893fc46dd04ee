"""Validate documents against OpenNebula's schemas in ../shared/xsd (when present)."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

XSD_DIR = Path(__file__).resolve().parents[3] / "shared" / "xsd"
NS = "http://opennebula.org/XMLSchema"
XS = "{http://www.w3.org/2001/XMLSchema}"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)
_SCHEMAS: dict[Path, etree.XMLSchema] = {}
_ROOTS: dict[str, Path] = {}
PREFERRED = {"VM_POOL": "vm_pool.xsd", "VNET_POOL": "vnet_pool.xsd"}


def available() -> bool:
    return XSD_DIR.is_dir()


def _schema_for(root: str) -> etree.XMLSchema:
    if not _ROOTS:
        for path in sorted(XSD_DIR.glob("*.xsd")):
            tree = etree.parse(str(path), _PARSER)
            for el in tree.getroot().findall(f"{XS}element"):
                _ROOTS.setdefault(el.get("name") or "", path)
        for name, file in PREFERRED.items():
            _ROOTS[name] = XSD_DIR / file
    path = _ROOTS[root]
    if path not in _SCHEMAS:
        _SCHEMAS[path] = etree.XMLSchema(etree.parse(str(path), _PARSER))
    return _SCHEMAS[path]


def _into_ns(el: etree._Element) -> etree._Element:
    new = etree.Element(f"{{{NS}}}{etree.QName(el).localname}", nsmap={None: NS})
    new.text, new.tail = el.text, el.tail
    for child in el:
        if isinstance(child.tag, str):
            new.append(_into_ns(child))
    return new


def errors(document: str) -> list[str]:
    """Schema errors of ``document`` (empty when valid)."""
    root = etree.fromstring(document.encode(), _PARSER)
    schema = _schema_for(etree.QName(root).localname)
    if schema.validate(_into_ns(root)):
        return []
    return [str(e.message) for e in schema.error_log][:5]
