"""What every OCI handler uses, built once when the app starts (:meth:`OciFormat.bind`),
and the repository and image a request names."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from app.formats.api import ContentStore, NotFound, Repositories, Services, VirtualOptions
from app.formats.oci.context import Target
from app.formats.oci.errors import NameUnknown, Unsupported
from app.formats.oci.names import parse_name
from app.formats.oci.records import OciRecords
from app.formats.oci.remote import OciRemote
from app.formats.oci.uploads import Uploads

TARGET = web.RequestKey("oci_target", Target)


@dataclass(frozen=True, slots=True)
class Oci:
    records: OciRecords
    cas: ContentStore
    uploads: Uploads  # sessions any replica continues
    pull: OciRemote  # remote repositories' manifests, blobs and tags, through the core
    repositories: Repositories
    max_body: int  # server.max_body_size: one blob, or one chunk of an upload
    services: Services  # what authorisation needs: the auth service, the external URL

    @classmethod
    def of(cls, services: Services) -> Oci:
        records = OciRecords(services.metadata.db)
        return cls(
            records=records,
            cas=services.cas,
            uploads=Uploads(services.cas, records),
            pull=OciRemote(services.remote, services.upstreams),
            repositories=services.repositories,
            max_body=services.max_body_size,
            services=services,
        )

    def lookup(self, request: web.Request) -> Target:
        """The repository and image a request names, whatever the repository's kind (a
        write through a virtual one: its deploy_to, as :meth:`written_to` set it)."""
        found = request.get(TARGET)
        return found if found is not None else self.named(request.match_info["name"])

    def written_to(self, request: web.Request, t: Target, refuse: bool = True) -> Target:
        """Where a write or delete naming ``t`` goes: a virtual repository's deploy_to
        (the rule of the ``/repository/`` dispatcher), remembered for the handler's
        :meth:`lookup`; refused (UNSUPPORTED, 405) without one, unless ``refuse`` is
        False (a push's question, which the virtual itself answers then)."""
        if t.repo.kind != "virtual":
            return t
        target = t.repo.narrowed(VirtualOptions).options.deploy_to
        if target is None and not refuse:
            return t
        if target is None:
            raise Unsupported(
                f"repository {t.repo.name} is virtual with no deploy_to: push to a local repository"
            )
        written = Target(self.repositories.get(target, format="oci"), t.image, t.name)
        request[TARGET] = written
        return written

    def named(self, full_name: str) -> Target:
        """``<repository>/<image>`` as a client spells it (a mount's ``from`` too)."""
        name = parse_name(full_name)
        try:
            repo = self.repositories.get(name.repository, format="oci")
        except NotFound:
            raise NameUnknown(
                f"repository {name.repository!r} not known to this registry"
            ) from None
        return Target(repo, name.image)

    def target(self, request: web.Request) -> Target:
        """A local repository's image: the only kind that takes pushes and deletes."""
        t = self.lookup(request)
        if t.repo.kind != "local":
            raise Unsupported(f"repository {t.repo.name} is {t.repo.kind}: it takes no pushes")
        return t


# An OCI route: the services, then the request (OciFormat.setup binds the first).
Handler = Callable[[Oci, web.Request], Awaitable[web.StreamResponse]]
Routes = list[tuple[str, str, Handler]]
