#!/usr/bin/env bash
# Builds the container image berth:<version> (version from Cargo.toml) from
# the release binary, on an empty base (`FROM scratch`): no registry needed.
#
# Usage: deploy/image/build.sh [--no-cargo] [--tag NAME:TAG]
#   --no-cargo   do not run `cargo build --release`; use the existing binary
#   --tag        image name [default: berth:<version>]
#   BERTH_BIN    the binary to package [default: <repo>/target/release/berth]
#
# The binary is linked against the build host's glibc, so the image gets the
# host's copy of every shared library `ldd` lists (and the dynamic loader), a
# minimal /etc (passwd, group, nsswitch.conf with `hosts: files dns`: glibc
# >= 2.34 has the files and dns NSS modules built in, so names such as
# `berth-2` in --initial-cluster resolve through the /etc/hosts and
# /etc/resolv.conf that Docker and Kubernetes mount into every container).
# berth runs as uid/gid 10001 ("berth").
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
BERTH_UID=10001

die() {
    echo "build.sh: $*" >&2
    exit 1
}

run_cargo=1
tag=""
while (($#)); do
    case $1 in
        --no-cargo) run_cargo=0 ;;
        --tag) tag=${2:?--tag needs a value}; shift ;;
        -h | --help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done

# The package version: the first `version = "…"` of the [package] table.
version=$(awk '
    /^\[/ { in_package = ($0 == "[package]") }
    in_package && /^version *=/ { gsub(/.*= *"|".*/, ""); print; exit }
' "$REPO_ROOT/Cargo.toml")
[[ -n $version ]] || die "no version found in $REPO_ROOT/Cargo.toml"
tag=${tag:-berth:$version}

command -v docker >/dev/null || die "docker not found"
command -v ldd >/dev/null || die "ldd not found (package libc-bin)"

bin=${BERTH_BIN:-$REPO_ROOT/target/release/berth}
if ((run_cargo)) && [[ -z ${BERTH_BIN:-} ]]; then
    (cd "$REPO_ROOT" && cargo build --release --locked --bin berth)
fi
[[ -x $bin ]] || die "$bin not found: run \`cargo build --release\` first (or set BERTH_BIN)"

ctx=$(mktemp -d "${TMPDIR:-/tmp}/berth-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc" "$ctx/state"

# The binary, without its DWARF line tables (keeps the symbol table, so a
# panic's backtrace still names functions).
cp "$bin" "$root/usr/local/bin/berth"
if command -v objcopy >/dev/null; then
    objcopy --strip-debug "$root/usr/local/bin/berth"
elif command -v strip >/dev/null; then
    strip --strip-debug "$root/usr/local/bin/berth"
fi
chmod 0755 "$root/usr/local/bin/berth"

# Its shared libraries and the loader, at the paths the binary asks for
# (symlinks resolved: the file is copied under the linked-to name).
ldd_out=$(ldd "$bin" 2>&1) || true
if grep -q 'not a dynamic executable\|statically linked' <<<"$ldd_out"; then
    echo "build.sh: $bin is static; no libraries to copy"
else
    ! grep -q 'not found' <<<"$ldd_out" || die "ldd cannot find every library of $bin:
$ldd_out"
    libs=$(awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' <<<"$ldd_out")
    [[ -n $libs ]] || die "no libraries found in the ldd output for $bin:
$ldd_out"
    for lib in $libs; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
        echo "  + $lib"
    done
    # Name resolution: glibc loads its NSS modules with dlopen, so ldd does
    # not list them. Since glibc 2.34 "files" and "dns" are built into libc
    # (these files are stubs); before, they are needed. Copy them if present.
    libdir=$(dirname "$(awk '$1 == "libc.so.6" { print $3 }' <<<"$ldd_out")")
    for lib in libnss_files.so.2 libnss_dns.so.2 libresolv.so.2; do
        if [[ -e $libdir/$lib && ! -e $root$libdir/$lib ]]; then
            cp -L "$libdir/$lib" "$root$libdir/$lib"
            echo "  + $libdir/$lib (NSS)"
        fi
    done
fi

cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/:/sbin/nologin
berth:x:$BERTH_UID:$BERTH_UID:berth:/var/lib/berth:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
cat >"$root/etc/group" <<EOF
root:x:0:
berth:x:$BERTH_UID:
nogroup:x:65534:
EOF
cat >"$root/etc/nsswitch.conf" <<'EOF'
passwd: files
group:  files
hosts:  files dns
EOF
chmod 0644 "$root"/etc/*

cp "$SCRIPT_DIR/Dockerfile" "$ctx/Dockerfile"

# The legacy builder needs nothing but the engine; use BuildKit only when
# the buildx plugin is there.
if [[ -z ${DOCKER_BUILDKIT:-} ]] && ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi
previous=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
docker build --build-arg "VERSION=$version" --tag "$tag" "$ctx"
# A rebuild leaves the previous image untagged: remove it unless in use.
if [[ -n $previous && $previous != $(docker image inspect --format '{{.Id}}' "$tag") ]]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
fi

size=$(docker image inspect --format '{{.Size}}' "$tag")
echo "built $tag ($((size / 1024 / 1024)) MiB)"
