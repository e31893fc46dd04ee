"""The VNTEMPLATE object (mirrors ``VNTemplate.h``): the ``TEMPLATE`` a virtual network is
instantiated from; the document is a VM template's under its own root."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from oned.objects.vmtemplate import TemplateObject


@dataclass
class VNTemplate(TemplateObject):
    TABLE: ClassVar[str] = "vn_template_pool"
    ROOT: ClassVar[str] = "VNTEMPLATE"
