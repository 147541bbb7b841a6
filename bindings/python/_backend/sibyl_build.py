"""A PEP 517 build backend with no dependencies, in the source tree (pyproject.toml's
backend-path), so `pip install ./bindings/python` works offline: pip's build isolation has
nothing to download (`requires = []`). It writes the wheel itself: the package's files plus
the .dist-info METADATA, WHEEL and RECORD.

Optionally the wheel bundles a libsibyl.so (then it is tagged for this platform): pass
`--config-settings library=PATH` to pip, or set SIBYL_BUNDLE_LIBRARY=PATH.
"""
import base64
import hashlib
import io
import os
import re
import sysconfig
import tarfile
import time
import zipfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # bindings/python
PACKAGE = "sibyl"
SOURCE = os.path.join(HERE, "src", PACKAGE)


def _project():
    """name, version, summary and requires-python from pyproject.toml's [project] table."""
    with open(os.path.join(HERE, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    try:
        import tomllib  # Python 3.11+
        return tomllib.loads(text)["project"]
    except ImportError:  # older Pythons: the few flat string keys this file uses
        table = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S).group(1)
        return {k: v for k, v in re.findall(r'^([A-Za-z-]+)\s*=\s*"([^"]*)"\s*$', table, re.M)}


def _dist_name(project):
    return re.sub(r"[-_.]+", "_", project["name"]).lower()


def _metadata(project) -> str:
    lines = ["Metadata-Version: 2.1", "Name: " + project["name"], "Version: " + project["version"]]
    if project.get("description"):
        lines.append("Summary: " + project["description"])
    if project.get("requires-python"):
        lines.append("Requires-Python: " + project["requires-python"])
    readme = os.path.join(HERE, "README.md")
    body = ""
    if os.path.exists(readme):
        lines.append("Description-Content-Type: text/markdown")
        with open(readme, encoding="utf-8") as f:
            body = f.read()
    return "\n".join(lines) + "\n\n" + body


def _library(config_settings):
    path = (config_settings or {}).get("library") or os.environ.get("SIBYL_BUNDLE_LIBRARY")
    if not path:
        return None
    path = os.path.realpath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError("the library to bundle does not exist: " + path)
    return path


def _tag(library):
    if library is None:
        return "py3-none-any"
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return "py3-none-" + platform


def _package_files():
    """(archive name, absolute path) of the package's files."""
    out = []
    for root, dirs, files in os.walk(SOURCE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")) or name.startswith("libsibyl.so"):
                continue
            path = os.path.join(root, name)
            out.append((PACKAGE + "/" + os.path.relpath(path, SOURCE).replace(os.sep, "/"), path))
    return out


def _record_line(name, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (name, digest, len(data))


def _dist_info_files(project, tag, purelib):
    wheel = ("Wheel-Version: 1.0\nGenerator: sibyl_build\nRoot-Is-Purelib: %s\nTag: %s\n"
             % ("true" if purelib else "false", tag))
    return {"METADATA": _metadata(project), "WHEEL": wheel, "top_level.txt": PACKAGE + "\n"}


def _zip_time():
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))  # 1980-01-01
    return time.gmtime(max(epoch, 315532800))[:6]


# ---------------------------------------------------------------- PEP 517 hooks

def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    project = _project()
    library = _library(config_settings)
    dist_info = "%s-%s.dist-info" % (_dist_name(project), project["version"])
    target = os.path.join(metadata_directory, dist_info)
    os.makedirs(target, exist_ok=True)
    for name, text in _dist_info_files(project, _tag(library), library is None).items():
        with open(os.path.join(target, name), "w", encoding="utf-8") as f:
            f.write(text)
    return dist_info


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = _project()
    library = _library(config_settings)
    tag = _tag(library)
    name, version = _dist_name(project), project["version"]
    dist_info = "%s-%s.dist-info" % (name, version)
    filename = "%s-%s-%s.whl" % (name, version, tag)
    entries = []
    for arcname, path in _package_files():
        with open(path, "rb") as f:
            entries.append((arcname, f.read(), 0o644))
    if library is not None:
        base = os.path.basename(library)
        if not base.startswith("libsibyl.so"):
            base = "libsibyl.so"
        with open(library, "rb") as f:
            entries.append((PACKAGE + "/" + base, f.read(), 0o755))
    for meta, text in _dist_info_files(project, tag, library is None).items():
        entries.append((dist_info + "/" + meta, text.encode("utf-8"), 0o644))
    record_name = dist_info + "/RECORD"
    record = "".join(_record_line(n, d) + "\n" for n, d, _ in entries) + record_name + ",,\n"
    entries.append((record_name, record.encode("utf-8"), 0o644))

    os.makedirs(wheel_directory, exist_ok=True)
    path = os.path.join(wheel_directory, filename)
    tmp = path + ".tmp"
    stamp = _zip_time()
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for arcname, data, mode in entries:
            info = zipfile.ZipInfo(arcname, date_time=stamp)
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    os.replace(tmp, path)
    return filename


def build_sdist(sdist_directory, config_settings=None):
    project = _project()
    base = "%s-%s" % (_dist_name(project), project["version"])
    filename = base + ".tar.gz"
    os.makedirs(sdist_directory, exist_ok=True)

    def keep(info):
        parts = info.name.split("/")
        if "__pycache__" in parts or info.name.endswith((".pyc", ".pyo")) or parts[-1].startswith("libsibyl.so"):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for entry in ("pyproject.toml", "README.md", "_backend", "src"):
            path = os.path.join(HERE, entry)
            if os.path.exists(path):
                tar.add(path, arcname=base + "/" + entry, filter=keep)
        pkg_info = _metadata(project).encode("utf-8")
        info = tarfile.TarInfo(base + "/PKG-INFO")
        info.size = len(pkg_info)
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(pkg_info))
    return filename

