"""The pools and shared services API handlers work on (mirrors ``Nebula``'s pool set).

``Core`` is built once by ``oned.app`` and handed to the request manager; it is a plain
bundle of collaborators, not a global. It also implements ``UserDirectory`` for the
authenticator, because both need the same user and group pools.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IReactorTime

from oned._async import Eventually
from oned.auth import acl
from oned.auth.acl import AclRule
from oned.auth.authorize import AclEngine, Caller
from oned.auth.one_key import OneKey
from oned.auth.session import Authenticator
from oned.config import OnedConfig
from oned.db.database import Database
from oned.log import logger
from oned.managers.auth.manager import parse_authn_result
from oned.managers.ipam.vnpool import VirtualNetworkPool
from oned.managers.schedaction.pool import ScheduledActionPool
from oned.objects.backupjob import BackupJob
from oned.objects.base import parse_xml
from oned.objects.cluster import Cluster
from oned.objects.datastore import Datastore
from oned.objects.document import Document
from oned.objects.group import USERS_GID, Group
from oned.objects.hook import Hook
from oned.objects.host import Host
from oned.objects.image import Image
from oned.objects.market import FIRST_USER_OID as FIRST_MARKET_OID
from oned.objects.market import MarketPlace
from oned.objects.marketapp import MarketPlaceApp
from oned.objects.secgroup import FIRST_USER_OID as FIRST_SECGROUP_OID
from oned.objects.secgroup import SecurityGroup
from oned.objects.user import User, sha256_hex
from oned.objects.vdc import Vdc
from oned.objects.vlans import vlans_xml
from oned.objects.vmgroup import VMGroup
from oned.objects.vmtemplate import VMTemplate
from oned.objects.vntemplate import VNTemplate
from oned.objects.vrouter import VirtualRouter
from oned.objects.zone import Zone
from oned.pools.acl import AclPool
from oned.pools.base import Locks, Pool, Unit
from oned.pools.keyed import KeyedTable
from oned.pools.quotas import QuotaTable
from oned.pools.vm import VirtualMachinePool

if TYPE_CHECKING:
    from oned.managers.dispatch.manager import DispatchManager
    from oned.managers.hook.manager import HookManager
    from oned.managers.image.manager import ImageManager
    from oned.managers.information.manager import InformationManager
    from oned.managers.ipam.manager import IPAMManager


def random_password() -> str:
    """``one_util::random_password``: 64 lowercase hex characters."""
    return sha256_hex(str(secrets.randbits(64)))


def _load_vlans(body: str) -> list[dict[str, str]]:
    root = parse_xml(body)
    return [
        {str(c.tag): c.text or "" for c in rule if isinstance(c.tag, str)}
        for rule in root.findall("RULE")
    ]


@dataclass
class Core:
    """Everything an API handler may touch."""

    log = logger("AuM")

    config: OnedConfig
    clock: IReactorTime
    db: Database
    users: Pool[User]
    groups: Pool[Group]
    zones: Pool[Zone]
    vdcs: Pool[Vdc]
    vmgroups: Pool[VMGroup]
    vrouters: Pool[VirtualRouter]
    clusters: Pool[Cluster]
    datastores: Pool[Datastore]
    documents: Pool[Document]
    hosts: Pool[Host]
    images: Pool[Image]
    templates: Pool[VMTemplate]
    secgroups: Pool[SecurityGroup]
    vnets: VirtualNetworkPool
    vntemplates: Pool[VNTemplate]
    hooks: Pool[Hook]
    user_quotas: QuotaTable
    group_quotas: QuotaTable
    group_vlans: KeyedTable[list[dict[str, str]]]
    acl_pool: AclPool
    acl: AclEngine
    eventually: Eventually
    one_key: OneKey
    auth: Authenticator = field(init=False)
    vms: VirtualMachinePool = field(init=False)
    #: Set by ``oned.app`` once the drivers run (``None`` in driverless unit tests).
    information_manager: InformationManager | None = None
    image_manager: ImageManager | None = None
    dispatch_manager: DispatchManager | None = None
    lifecycle_manager: Any = None
    vm_manager: Any = None
    transfer_manager: Any = None
    ipam_manager: IPAMManager | None = None
    scheduler_manager: Any = None
    sched_actions: ScheduledActionPool = field(init=False)
    backupjobs: Pool[BackupJob] = field(init=False)
    hook_manager: HookManager = field(init=False)
    markets: Pool[MarketPlace] = field(init=False)
    marketapps: Pool[MarketPlaceApp] = field(init=False)
    market_manager: Any = None

    @classmethod
    def create(cls, config: OnedConfig, clock: IReactorTime, db: Database) -> Core:
        core = cls(
            config=config,
            clock=clock,
            db=db,
            users=Pool(db, "user_pool", User.from_xml),
            groups=Pool(db, "group_pool", Group.from_xml, first_oid=100),
            zones=Pool(db, "zone_pool", Zone.from_xml, first_oid=100),
            vdcs=Pool(db, "vdc_pool", Vdc.from_xml, first_oid=100),
            vmgroups=Pool(db, "vmgroup_pool", VMGroup.from_xml),
            vrouters=Pool(db, "vrouter_pool", VirtualRouter.from_xml),
            clusters=Pool(db, "cluster_pool", Cluster.from_xml, first_oid=100),
            datastores=Pool(db, "datastore_pool", Datastore.from_xml, first_oid=100),
            documents=Pool(db, "document_pool", Document.from_xml),
            hosts=Pool(db, "host_pool", Host.from_xml),
            images=Pool(db, "image_pool", Image.from_xml),
            templates=Pool(db, "template_pool", VMTemplate.from_xml),
            secgroups=Pool(
                db, "secgroup_pool", SecurityGroup.from_xml, first_oid=FIRST_SECGROUP_OID
            ),
            vnets=VirtualNetworkPool(db, clock),
            vntemplates=Pool(db, "vn_template_pool", VNTemplate.from_xml),
            hooks=Pool(db, "hook_pool", Hook.from_xml),
            user_quotas=QuotaTable(db, "user_quotas", "user_oid", "QUOTAS", "DEFAULT_USER_QUOTAS"),
            group_quotas=QuotaTable(
                db, "group_quotas", "group_oid", "QUOTAS", "DEFAULT_GROUP_QUOTAS"
            ),
            group_vlans=KeyedTable(db, "group_vlans", _load_vlans, vlans_xml, list),
            acl_pool=AclPool(db),
            acl=AclEngine(config.zone_id),
            eventually=Eventually(clock),
            one_key=OneKey.load_or_create(config.locations.var / ".one" / "one_key"),
        )
        if config.template.get("ONE_KEY") is None:
            config.template.add("ONE_KEY", core.one_key.key)
        core.vms = VirtualMachinePool(db)
        core.markets = Pool(db, "marketplace_pool", MarketPlace.from_xml, FIRST_MARKET_OID)
        core.marketapps = Pool(db, "marketplaceapp_pool", MarketPlaceApp.from_xml)
        core.sched_actions = ScheduledActionPool(db)
        core.backupjobs = Pool(db, "backupjob_pool", BackupJob.from_xml)
        from oned.managers.lifecycle.wiring import attach_vm_managers

        attach_vm_managers(core)
        from oned.managers.hook.manager import HookManager

        core.hook_manager = HookManager(core)
        core.auth = Authenticator(
            core,
            clock,
            config.session_expiration_time,
            config.default_auth,
        )
        return core

    async def load(self) -> None:
        """Read every pool from the database."""
        for pool in (
            self.users,
            self.groups,
            self.zones,
            self.vdcs,
            self.vmgroups,
            self.vrouters,
            self.clusters,
            self.datastores,
            self.documents,
            self.hosts,
            self.images,
            self.templates,
            self.secgroups,
            self.vnets,
            self.vntemplates,
            self.hooks,
            self.backupjobs,
            self.markets,
            self.marketapps,
        ):
            await pool.load()
        await self.hook_manager.load()
        await self.vms.load()
        await self.sched_actions.load()
        await self.user_quotas.load()
        await self.group_quotas.load()
        await self.group_vlans.load()
        self.acl.load(await self.acl_pool.load())

    def attr_list(self, setting: str | None) -> list[str]:
        """Upper-cased values of a repeated oned.conf setting (``*_ENCRYPTED_ATTR``)."""
        if setting is None:
            return []
        return [v.strip().upper() for v in self.config.all_of(setting) if v.strip()]

    # -- ACL rules oned manages itself ----------------------------------------------

    def stage_rule(self, unit: Unit, text: str) -> None:
        """Add a rule in ``unit`` (skipped when an equal one exists: oned only logs it)."""
        key = acl.parse_rule_string(text, self.config.zone_id)
        if self.acl.find(key) is not None:
            return
        rule = AclRule(self.acl_pool.next_oid(), *key)
        unit.sql(self.acl_pool.insert(rule), lambda: self.acl.add(rule))
        unit.sql(self.acl_pool.control())

    def drop_rule(self, unit: Unit, oid: int) -> None:
        unit.sql(self.acl_pool.delete(oid), lambda: self.acl.remove(oid))

    @staticmethod
    def admin_rules(uid: int, gid: int) -> list[str]:
        """The rules that make ``uid`` an administrator of group ``gid``."""
        return [
            f"#{uid} USER/@{gid} USE+MANAGE+ADMIN+CREATE *",
            f"#{uid} VM+NET+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VROUTER+VMGROUP+BACKUPJOB/@{gid} "
            "USE+MANAGE *",
            f"#{uid} VROUTER/* CREATE *",
            f"#{uid} GROUP/#{gid} MANAGE *",
        ]

    def stage_admin_rules(self, unit: Unit, uid: int, gid: int) -> None:
        for text in self.admin_rules(uid, gid):
            self.stage_rule(unit, text)

    def drop_admin_rules(self, unit: Unit, uid: int, gid: int) -> None:
        for text in self.admin_rules(uid, gid):
            rule = self.acl.find(acl.parse_rule_string(text, self.config.zone_id))
            if rule is not None:
                self.drop_rule(unit, rule.oid)

    def unit(self) -> Unit:
        return Unit(self.db)

    def now(self) -> int:
        return int(self.clock.seconds())

    # -- UserDirectory -------------------------------------------------------------

    def user_by_name(self, name: str) -> User | None:
        return self.users.by_name(name)

    def user(self, oid: int) -> User | None:
        return self.users.get(oid)

    def group_name(self, gid: int) -> str:
        group = self.groups.get(gid)
        return group.name if group else ""

    def umask_of(self, user: User) -> int:
        raw = user.template.get("UMASK")
        if raw:
            try:
                return int(raw, 8)
            except ValueError:
                pass
        return self.config.default_umask

    async def upgrade_password(self, uid: int, hashed: str) -> None:
        async with self.users.lock(uid):
            user = self.users.get(uid)
            if user is None:
                return
            user = user.copy()
            user.password = hashed
            unit = self.unit()
            unit.save(self.users, user)
            await unit.commit("upgrade password")

    async def create_external(self, name: str, driver: str, reply: str) -> User | None:
        """Create a user an external driver accepted (``driver user secret [gids]``).

        The primary group is the first group the driver names, else ``users``.
        """
        try:
            result = parse_authn_result(reply)
        except ValueError:
            self.log.error("Can't create user: bad driver reply. Driver response: {r}", r=reply)
            return None
        existing = self.users.by_name(name)
        if existing is not None:
            return existing
        gids = [g for g in result.group_ids if self.groups.get(g) is not None] or [USERS_GID]
        user_driver = result.driver or driver
        if user_driver == "default" or not user_driver:
            user_driver = driver
        user = await self.add_user(name, result.secret or "-", user_driver, gids)
        if result.admin_group_ids and self._managed(user_driver, "DRIVER_MANAGED_GROUP_ADMIN"):
            await self._set_admins(user.oid, result.admin_group_ids)
        return self.users.get(user.oid)

    def _managed(self, driver: str, key: str) -> bool:
        conf = self.config.auth_mad_conf.get(driver, {})
        return conf.get(key, "NO").upper() == "YES"

    async def sync_external_groups(self, uid: int, reply: str) -> None:
        """With DRIVER_MANAGED_GROUPS, make the user's groups those the driver named."""
        user = self.users.get(uid)
        if user is None or not self._managed(user.auth_driver, "DRIVER_MANAGED_GROUPS"):
            return
        try:
            result = parse_authn_result(reply)
        except ValueError:
            return
        wanted = [g for g in result.group_ids if self.groups.get(g) is not None]
        if not wanted or (set(wanted) == set(user.groups) and wanted[0] == user.gid):
            return
        touched = set(wanted) | set(user.groups)
        async with Locks((self.users, uid), *((self.groups, g) for g in touched)):
            user = self.users.get(uid)
            if user is None:
                return
            user = user.copy()
            unit = self.unit()
            for gid in touched:
                group = self.groups.get(gid)
                if group is None:
                    continue
                group = group.copy()
                if gid in wanted:
                    group.users.add(uid)
                else:
                    group.users.discard(uid)
                    if uid in group.admins:
                        group.admins.discard(uid)
                        self.drop_admin_rules(unit, uid, gid)
                unit.save(self.groups, group)
            primary = self.groups.get(wanted[0])
            assert primary is not None
            user.gid, user.gname, user.groups = primary.oid, primary.name, sorted(set(wanted))
            unit.save(self.users, user)
            await unit.commit(f"sync groups of user {uid}")
        if self._managed(user.auth_driver, "DRIVER_MANAGED_GROUP_ADMIN"):
            await self._set_admins(uid, result.admin_group_ids)

    async def _set_admins(self, uid: int, admin_gids: list[int]) -> None:
        for gid in admin_gids:
            async with self.groups.lock(gid):
                group = self.groups.get(gid)
                if group is None or uid not in group.users or uid in group.admins:
                    continue
                group = group.copy()
                group.admins.add(uid)
                unit = self.unit()
                unit.save(self.groups, group)
                self.stage_admin_rules(unit, uid, gid)
                await unit.commit(f"admin {uid} of group {gid}")

    async def add_user(self, name: str, stored_password: str, driver: str, gids: list[int]) -> User:
        """Insert a user and add it to its groups (one transaction)."""
        unit = self.unit()
        oid = unit.allocate(self.users)
        primary = self.groups.get(gids[0])
        assert primary is not None
        user = User(
            oid=oid,
            name=name,
            gid=primary.oid,
            gname=primary.name,
            groups=sorted(set(gids)),
            password=stored_password,
            auth_driver=driver,
        )
        user.template.add("TOKEN_PASSWORD", random_password())
        unit.add(self.users, user)
        for gid in sorted(set(gids)):
            group = self.groups.get(gid)
            if group is not None:
                group = group.copy()
                group.users.add(oid)
                unit.save(self.groups, group)
        await unit.commit(f"allocate user {name}")
        return user

    def caller_of(self, uid: int) -> Caller:
        user = self.users.get(uid)
        assert user is not None
        return self.auth.caller_for(user)
