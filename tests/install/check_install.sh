#!/usr/bin/env bash
# What a user of an installed Sibyl sees: install the build tree to a prefix, move the prefix, then
# check that libsibyl.so has no GPU library among its link-time dependencies, that the installed
# programs find libsibyl and the default model through relative paths, and that a C consumer
# builds and runs through find_package(Sibyl) (shared and static) and through pkg-config.
# Usage: check_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$work/first" > "$work/install.log"
mv "$work/first" "$work/moved"
prefix=$work/moved
unset SIBYL_DEFAULT_MODEL
echo "installed and moved to $prefix"

needed=$(readelf -d "$prefix/lib/libsibyl.so" | grep NEEDED || true)
echo "$needed"
if grep -qiE 'cuda|cublas|nccl|vulkan' <<< "$needed"; then fail "libsibyl.so links a GPU library"; fi

for tool in sibyl-chat sibyl-run sibyl-tokenize; do
  runpath=$(readelf -d "$prefix/bin/$tool" | grep -E 'RUNPATH|RPATH' || true)
  grep -q '\$ORIGIN/../lib' <<< "$runpath" || fail "$tool has no relative RUNPATH: $runpath"
done

echo "--- installed sibyl-chat"
reply=$("$prefix/bin/sibyl-chat" --prompt "What is 29 + 17?" --hide-reasoning)
echo "$reply"
grep -q 46 <<< "$reply" || fail "installed sibyl-chat did not answer 46"

# A program linking libsibyl.a outside <prefix>/bin cannot know where a moved prefix went: it is
# told through SIBYL_DEFAULT_MODEL (the package gives the directory: Sibyl_DEFAULT_MODEL_DIR,
# pkg-config --variable=modeldir sibyl).
modeldir=$prefix/share/sibyl/models/tiny-reasoner
check_consumer() {  # name, binary, static?
  local out
  if [ "${3:-}" = static ]; then
    out=$(SIBYL_DEFAULT_MODEL=$modeldir "$2") || fail "$1 consumer failed: $out"
  else
    out=$("$2") || fail "$1 consumer failed: $out"
  fi
  echo "$out"
  grep -q "default model: $prefix/" <<< "$out" || fail "$1 consumer did not use the installed model"
}

for kind in shared static; do
  echo "--- find_package(Sibyl), $kind"
  static=OFF
  [ "$kind" = static ] && static=ON
  cmake -S "$source/tests/install/consumer" -B "$work/consumer-$kind" -DCMAKE_PREFIX_PATH="$prefix" \
        -DSIBYL_USE_STATIC_LIBS=$static -DCMAKE_BUILD_TYPE=Release > "$work/configure-$kind.log" \
    || { cat "$work/configure-$kind.log"; fail "configure ($kind)"; }
  cmake --build "$work/consumer-$kind" > "$work/build-$kind.log" || { cat "$work/build-$kind.log"; fail "build ($kind)"; }
  binary=$work/consumer-$kind/consumer
  if [ "$kind" = static ]; then
    if readelf -d "$binary" | grep -q 'libsibyl'; then fail "static consumer depends on libsibyl.so"; fi
  else
    # CMake's build tree has an absolute RPATH to the prefix, like any consumer; the library is there.
    readelf -d "$binary" | grep -q 'libsibyl.so.0' || fail "shared consumer does not use libsibyl.so.0"
  fi
  check_consumer "find_package $kind" "$binary" "$kind"
done

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
echo "--- pkg-config sibyl (shared)"
cc -o "$work/pc-shared" "$source/tests/install/consumer/main.c" $(pkg-config --cflags --libs sibyl) \
   -Wl,-rpath,"$(pkg-config --variable=libdir sibyl)"
check_consumer "pkg-config sibyl" "$work/pc-shared"
echo "--- pkg-config sibyl-static"
cc -o "$work/pc-static" "$source/tests/install/consumer/main.c" $(pkg-config --cflags --libs sibyl-static)
if readelf -d "$work/pc-static" | grep -q 'libsibyl'; then fail "pkg-config static consumer depends on libsibyl.so"; fi
[ "$(pkg-config --variable=modeldir sibyl)" -ef "$modeldir" ] || fail "pkg-config modeldir is not $modeldir"
check_consumer "pkg-config sibyl-static" "$work/pc-static" static
echo "install checks passed"
