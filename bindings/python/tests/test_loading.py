"""Finding the library: $SIBYL_LIBRARY, else a libsibyl.so* next to the package, else the system
loader; a clear ImportError naming what was tried when none loads; the ABI version check; and
the build backend's wheel (with and without a bundled library)."""
import base64
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

import sibyl
from conftest import BINDING

PROBE = "import sibyl; print(sibyl.library_path); print(sibyl.library_version())"


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the installed package (without any bundled library) on its own path entry."""
    target = tmp_path / "pkgs" / "sibyl"
    shutil.copytree(os.path.dirname(sibyl.__file__), target,
                    ignore=shutil.ignore_patterns("__pycache__", "libsibyl.so*"))
    return target


def run(package_dir, env_changes, code=PROBE):
    env = {k: v for k, v in os.environ.items() if k not in ("SIBYL_LIBRARY", "LD_LIBRARY_PATH")}
    env.update(env_changes)
    env["PYTHONPATH"] = str(package_dir.parent)
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=str(package_dir.parent.parent),
                          capture_output=True, text=True, timeout=60)


def real_library():
    return os.path.realpath(sibyl.library_path)


def test_sibyl_library_wins(package_copy):
    shutil.copy(real_library(), package_copy / "libsibyl.so.0")  # would be found next, but is not
    out = run(package_copy, {"SIBYL_LIBRARY": real_library()})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == real_library()


def test_a_bad_sibyl_library_is_an_import_error_and_nothing_else_is_tried(package_copy):
    shutil.copy(real_library(), package_copy / "libsibyl.so.0")
    out = run(package_copy, {"SIBYL_LIBRARY": "/no/such/libsibyl.so"})
    assert out.returncode != 0
    assert "LibraryNotFoundError" in out.stderr and "$SIBYL_LIBRARY=/no/such/libsibyl.so" in out.stderr
    assert "next to the package" not in out.stderr
    probe = "try:\n    import sibyl\nexcept ImportError as e:\n    print('ImportError:', type(e).__name__)"
    assert run(package_copy, {"SIBYL_LIBRARY": "/no/such/libsibyl.so"}, probe).stdout.strip() == \
        "ImportError: LibraryNotFoundError"


def test_next_to_the_package(package_copy):
    shutil.copy(real_library(), package_copy / "libsibyl.so.0")
    out = run(package_copy, {})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == str(package_copy / "libsibyl.so.0")


def test_the_system_loader(package_copy, tmp_path):
    libdir = tmp_path / "lib"
    libdir.mkdir()
    shutil.copy(real_library(), libdir / "libsibyl.so.0")
    out = run(package_copy, {"LD_LIBRARY_PATH": str(libdir)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == str(libdir / "libsibyl.so.0")


def test_nothing_found_names_every_place_tried(package_copy):
    out = run(package_copy, {})
    assert out.returncode != 0
    for words in ("LibraryNotFoundError", "next to the package", str(package_copy), "find_library('sibyl')",
                  "libsibyl.so.0", "SIBYL_LIBRARY"):
        assert words in out.stderr, out.stderr


def test_a_library_that_is_not_libsibyl_is_refused(package_copy):
    out = run(package_copy, {"SIBYL_LIBRARY": "libc.so.6"})
    assert out.returncode != 0
    assert "IncompatibleLibraryError" in out.stderr and "not libsibyl" in out.stderr


def test_the_abi_version_is_checked():
    abi = sibyl.abi_version()
    assert abi // 10000 == sibyl.ABI_MAJOR and abi // 100 % 100 >= sibyl.ABI_MINOR
    assert sibyl.library_version() == "%d.%d.%d" % (abi // 10000, abi // 100 % 100, abi % 100)


def test_the_default_model_is_found(model):
    path = sibyl.default_model_path()
    assert os.path.isfile(os.path.join(path, "config.json"))
    with sibyl.Model() as default:
        assert default.path is None
        assert default.info.vocab_size == model.info.vocab_size


def load_backend():
    spec = importlib.util.spec_from_file_location("sibyl_build", os.path.join(BINDING, "_backend", "sibyl_build.py"))
    backend = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(backend)
    return backend


def check_record(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        record = [n for n in names if n.endswith(".dist-info/RECORD")]
        assert len(record) == 1
        rows = [line.split(",") for line in z.read(record[0]).decode().splitlines()]
        assert sorted(r[0] for r in rows) == sorted(names)
        for name, digest, size in rows:
            if name == record[0]:
                assert digest == size == ""
                continue
            data = z.read(name)
            assert int(size) == len(data)
            assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        return names, z.read([n for n in names if n.endswith("WHEEL")][0]).decode()


def test_the_backend_builds_a_pure_wheel(tmp_path):
    backend = load_backend()
    assert backend.get_requires_for_build_wheel() == []
    name = backend.build_wheel(str(tmp_path))
    assert name == "sibyl-%s-py3-none-any.whl" % sibyl.__version__
    names, wheel = check_record(tmp_path / name)
    modules = {"sibyl/" + f for f in os.listdir(os.path.join(BINDING, "src", "sibyl")) if f.endswith(".py")}
    assert "sibyl/__init__.py" in modules and "sibyl/_model.py" in modules
    assert modules <= set(names), modules - set(names)  # every module of the package, none forgotten
    assert not any("libsibyl" in n for n in names)
    assert "Root-Is-Purelib: true" in wheel
    meta = backend.prepare_metadata_for_build_wheel(str(tmp_path / "meta"))
    assert meta == "sibyl-%s.dist-info" % sibyl.__version__
    assert "Name: sibyl" in (tmp_path / "meta" / meta / "METADATA").read_text()


def test_the_backend_bundles_a_library(tmp_path):
    backend = load_backend()
    name = backend.build_wheel(str(tmp_path), {"library": sibyl.library_path})
    assert name.startswith("sibyl-%s-py3-none-linux_" % sibyl.__version__)
    names, wheel = check_record(tmp_path / name)
    bundled = [n for n in names if n.startswith("sibyl/libsibyl.so")]
    assert len(bundled) == 1
    assert "Root-Is-Purelib: false" in wheel
    # Installed, the bundled library is the one found.
    with zipfile.ZipFile(tmp_path / name) as z:
        z.extractall(tmp_path / "site")
    os.chmod(tmp_path / "site" / bundled[0], 0o755)
    out = run(tmp_path / "site" / "sibyl", {})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == str(tmp_path / "site" / bundled[0])


def test_imported_from_the_installed_package():
    if os.environ.get("SIBYL_EXPECT_INSTALLED") != "1":
        pytest.skip("not run from an installed package (run_tests.py sets SIBYL_EXPECT_INSTALLED)")
    here = os.path.abspath(sibyl.__file__)
    assert not here.startswith(BINDING + os.sep), here
    assert os.path.join("site-packages", "sibyl") in here
