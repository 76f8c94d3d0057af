"""A static-files finder for single files that ship inside installed Python packages.

The dashboards draw with plotly.js; the plotly wheel carries `plotly/package_data/plotly.min.js`. Serving it from
there (runserver, whitenoise, collectstatic alike) keeps setup to `pip install` and the site free of CDNs, without
copying a 4.8 MB bundle into the repository or publishing the rest of the package's data files.
"""

import importlib.util
from pathlib import Path

from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

# static path → (package, file inside the package)
PACKAGE_FILES = {
    "vendor/plotly/plotly.min.js": ("plotly", "package_data/plotly.min.js"),
}


def _package_file(package, relative):
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


class PackageFileFinder(BaseFinder):
    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        found = None
        if path in PACKAGE_FILES:
            found = _package_file(*PACKAGE_FILES[path])
        if found is None:
            return [] if find_all or kwargs.get("all") else None
        return [str(found)] if find_all or kwargs.get("all") else str(found)

    def list(self, ignore_patterns):
        for static_path, (package, relative) in PACKAGE_FILES.items():
            found = _package_file(package, relative)
            if found is None:
                continue
            # A storage rooted so that the listed path is the static path: collectstatic copies it to the same name.
            storage = FileSystemStorage(location=str(found.parent))
            storage.prefix = str(Path(static_path).parent)
            yield found.name, storage
