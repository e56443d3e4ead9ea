"""The production static files storage: whitenoise's compressed, hashed names (a manifest written by
`collectstatic`) with far-future cache headers."""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class ManifestStaticStorage(CompressedManifestStaticFilesStorage):
    """Rewrites url() and @import in stylesheets to hashed names, but leaves JavaScript's
    `sourceMappingURL` comments alone: the vendored Chart.js names a .map file the package does not ship,
    and a browser only asks for it with its developer tools open."""

    patterns = tuple((glob, rules) for glob, rules in CompressedManifestStaticFilesStorage.patterns if glob != "*.js")
