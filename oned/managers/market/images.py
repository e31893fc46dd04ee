"""The image side of an image app's export (mirrors ``ImageManager::set_clone_state``
and ``release_cloning_resource`` for ``MARKETPLACEAPP`` clones).

While the market driver copies an image, the image is USED (CLONE when persistent)
with the app in its ``APP_CLONES`` and ``CLONING_OPS`` counting it: it cannot be
deleted, disabled or changed meanwhile. The reply (or the app's deletion) releases it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.errors import InternalError
from oned.log import logger
from oned.objects import image as im

if TYPE_CHECKING:
    from oned.core import Core
    from oned.objects.datastore import Datastore
    from oned.template import Template

log = logger("ImM")


class CloneError(Exception):
    """The image cannot be exported now (oned's text)."""


def set_app_clone_state(img: im.Image, app_id: int) -> None:
    """Mark ``img`` (a working copy) as being exported to app ``app_id``."""
    if img.type == im.BACKUP:
        raise CloneError("Cannoe clone backup images")
    if img.state == im.READY:
        img.set_state(im.CLONE if img.persistent else im.USED)
    elif img.state not in (im.USED, im.CLONE):
        raise CloneError("Cannot clone image in current state")
    img.cloning_ops += 1
    img.app_clones.add(app_id)


def release_app_clone(img: im.Image, app_id: int) -> bool:
    """The export of ``img`` to app ``app_id`` ended; False when nothing changed."""
    if img.type not in (im.OS, im.DATABLOCK, im.CDROM):
        log.error("Trying to release a cloning {t} image", t=im.type_name(img.type))
        return False
    if img.state not in (im.USED, im.CLONE):
        log.error("Release cloning image in wrong state")
        return False
    if app_id in img.app_clones:
        img.app_clones.discard(app_id)
        img.cloning_ops = max(img.cloning_ops - 1, 0)
    if img.cloning_ops == 0 and img.running_vms == 0:
        img.set_state(im.READY)
    return True


def from_app(core: Core, tmpl: Template, ds: Datastore) -> tuple[str, str] | None:
    """``ImageAllocate`` with ``FROM_APP``: an image made from a marketplace app takes
    its SOURCE as PATH, its FORMAT and MD5, and its SIZE (no STAT); returns (SIZE, the
    marketplace document for the CP), or None for an image not made from an app."""
    try:
        app_id = int((tmpl.get("FROM_APP") or "").strip())
    except ValueError:
        return None
    app = core.marketapps.get(app_id)
    if app is None:
        raise InternalError("Cannot determine image SIZE.")
    app.to_image_template(tmpl)
    market = core.markets.get(app.market_id)
    if market is None:
        raise InternalError("Could not get the appliance's market.")
    if ds.template.get("DRIVER"):
        tmpl.erase("DRIVER")
    return str(app.size), core.markets.body(market.oid)
