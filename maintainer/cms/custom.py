"""A site whose CMS maintainer has no adapter for (Laravel, hand-made PHP): its commands come from
inventory vars. For now the version only: ``cms_version_command`` (a shell command whose output
contains the version). Issue 5 adds the update, maintenance and health commands.
"""

from __future__ import annotations

from .base import CmsAdapter, CmsError, first_version


class CustomAdapter(CmsAdapter):
    name = "custom"
    title = "custom CMS"
    verify_note = "a custom site has no published checksums to verify against"

    def version(self) -> str | None:
        command = self.var("cms_version_command")
        if command is None:
            return None
        argv = ["bash", "-c", command]
        result = self.run(argv)
        version = first_version(result.stdout) if result.rc == 0 else None
        if version is None:
            raise CmsError("cms_version_command gave no version", command=argv, result=result)
        return version
