#!/usr/bin/env bash
# Makes the Debian image container.sh boots, once: debootstrap (minbase) of bookworm from Debian's
# packages, with systemd and the few tools the tests use inside, cached under
# $GGROK_TEST_CACHE (default /var/cache/ggrok-test) and rebuilt only when this recipe changes.
# Prints the image's path.
#
# Not in the image on purpose: procps (/bin/kill), so that a unit that needs it fails here as on
# a minimal system. In it: libpam-systemd (a lingering user's manager: without it user@.service
# fails with "Trying to run as user instance, but $XDG_RUNTIME_DIR is not set"), libnss-systemd
# (the dynamic user's name), curl (the requests), python3 (the local service behind the tunnel),
# rpm (the .rpm's scripts).
. "$(dirname "$0")/lib.sh"

PACKAGES=systemd,systemd-sysv,dbus,libpam-systemd,libnss-systemd,curl,python3,rpm
SUITE=bookworm
MIRROR=${MIRROR:-http://deb.debian.org/debian}
CACHE=${GGROK_TEST_CACHE:-/var/cache/ggrok-test}
# The recipe's own version: bump it when the steps below change.
RECIPE="v1 $SUITE $PACKAGES"
IMAGE=$CACHE/debian-$SUITE-$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)

[ "$(id -u)" = 0 ] || die "not root: debootstrap needs root"
command -v debootstrap >/dev/null || die "debootstrap is missing: run .ci/setup as root"
if [ -e "$IMAGE/.ggrok-image" ]; then
    echo "$IMAGE"
    exit 0
fi
mkdir -p "$CACHE"
# One builder at a time; a second waits, then finds the image made.
exec 9>"$CACHE/.lock"
flock -w 900 9 || die "another image build holds $CACHE/.lock"
if [ ! -e "$IMAGE/.ggrok-image" ]; then
    rm -rf "$IMAGE.new"
    log "debootstrap $SUITE with $PACKAGES into $IMAGE (once; about 2 minutes)"
    t0=$(date +%s)
    if ! timeout 900 debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$IMAGE.new" "$MIRROR" \
        >"$CACHE/debootstrap.log" 2>&1; then
        tail -20 "$CACHE/debootstrap.log" >&2
        rm -rf "$IMAGE.new"
        die "debootstrap failed; its log: $CACHE/debootstrap.log"
    fi
    echo ggrok-test >"$IMAGE.new/etc/hostname"
    # debootstrap writes no /etc/hosts: without one, "localhost" does not resolve in the container.
    printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tggrok-test\n' >"$IMAGE.new/etc/hosts"
    rm -f "$IMAGE.new/etc/resolv.conf"   # the container has no network but its own loopback
    rm -f "$IMAGE.new"/var/cache/apt/archives/*.deb
    echo "$RECIPE" >"$IMAGE.new/.ggrok-image"
    mv "$IMAGE.new" "$IMAGE"
    # Older images of other recipes go.
    find "$CACHE" -mindepth 1 -maxdepth 1 -type d -name "debian-*" ! -path "$IMAGE" -exec rm -rf {} +
    log "image made in $(($(date +%s) - t0)) s: $(du -sh "$IMAGE" | cut -f1)"
fi
echo "$IMAGE"
