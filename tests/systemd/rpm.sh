# Sourced by container.sh, after the .debs are purged: the .rpm files, with rpm, in the same booted
# Debian container (no booted Fedora here). Checked: every dependency is one the system has (libc's
# libraries, /bin/sh, rpmlib features) and nothing else, the scripts are valid sh, and run by rpm
# under a real systemd they do what the deb's do: install loads the unit without starting it, an
# upgrade restarts a running server, erase stops and disables it. rpm's database knows none of the
# Debian system, so --nodeps; the check above stands for it.

# check_requires RPM: each requirement is met in the container, or by the package itself.
check_requires() {
    local req soname glibc name=${1##*/} provides
    glibc=$(ct getconf GNU_LIBC_VERSION | cut -d' ' -f2)
    provides=$(rpm -qp --provides "$1")
    while read -r req; do
        if grep -qxF "$req" <<<"$provides"; then continue; fi
        case "$req" in
            rpmlib\(*) ;;
            "rtld(GNU_HASH)") ;;   # glibc's dynamic linker
            /bin/sh) ct test -x /bin/sh || die "$name requires /bin/sh" ;;
            lib*.so* | ld-linux*.so*)
                soname=${req%%(*}
                ct sh -c "ldconfig -p | grep -q '^[[:space:]]*$soname (libc6,x86-64)'" ||
                    die "$name requires $req: no $soname in the container"
                case "$req" in
                    *"(GLIBC_"*)
                        local v=${req#*(GLIBC_}
                        v=${v%%)*}
                        [ "$(printf '%s\n%s\n' "$v" "$glibc" | sort -V | head -1)" = "$v" ] ||
                            die "$name requires $req; the container has glibc $glibc"
                        ;;
                esac
                ;;
            *) die "$name requires $req, which a base system need not have" ;;
        esac
    done < <(rpm -qp --requires "$1")
    log "$name requires $(rpm -qp --requires "$1" | sed 's/(.*//; s/ .*//' | sort -u | tr '\n' ' ')(glibc <= $glibc): all met"
}

# rpm_ct ARGS...: rpm in the container, without Debian's warning that rpm is not its package manager.
rpm_ct() {
    local rc=0
    ct rpm "$@" 2>"$WORK/rpm.err" || rc=$?
    grep -v -e 'use Alien instead' -e 'assuming you know what you are doing' "$WORK/rpm.err" >&2 || true
    return $rc
}

test_rpms() {
    local rpm_file phase pid
    for rpm_file in "$SERVER_RPM" "$GGROK_RPM"; do
        check_requires "$rpm_file"
        while read -r phase; do
            [ -n "$phase" ] || continue
            rpm -qp --qf "%{$phase}" "$rpm_file" | sh -n || die "$(basename "$rpm_file"): %$phase is not valid sh"
        done < <(printf '%s\n' PREIN POSTIN PREUN POSTUN | while read -r p; do
            [ "$(rpm -qp --qf "%{$p}" "$rpm_file")" = "(none)" ] || echo "$p"
        done)
    done
    put "$SERVER_RPM" /tmp/ggrok-server.rpm
    put "$GGROK_RPM" /tmp/ggrok.rpm
    step "rpm -i ggrok-server.rpm" rpm_ct -i --nodeps /tmp/ggrok-server.rpm
    eq "ggrok-server after rpm -i" "$(s_show LoadState)/$(s_show ActiveState)/$(ct systemctl is-enabled ggrok-server.service || true)" \
        loaded/inactive/disabled
    eq "/etc/ggrok/server.toml from the rpm" "$(ct stat -c '%U:%G %a' /etc/ggrok/server.toml)" "root:ggrok 640"
    server_config | write /etc/ggrok/server.toml 640
    step "systemctl start ggrok-server (rpm)" ct timeout "$TMO" systemctl start ggrok-server.service
    eq "curl http://127.0.0.1/ (rpm)" "$(http -H 'Host: nobody.example.com' http://127.0.0.1/)" \
        "404 ggrok: no tunnel is online for host nobody.example.com"
    pid=$(s_show MainPID)
    step "rpm -U --replacepkgs ggrok-server.rpm" rpm_ct -U --replacepkgs --nodeps /tmp/ggrok-server.rpm
    [ "$(s_show MainPID)" != "$pid" ] || die "the rpm upgrade did not restart ggrok-server"
    eq "state after the rpm upgrade" "$(s_show ActiveState)" active
    has "the config after the rpm upgrade (noreplace)" "$(ct cat /etc/ggrok/server.toml)" "$TOKEN"
    step "rpm -e ggrok-server" rpm_ct -e --nodeps ggrok-server
    eq "ggrok-server after rpm -e" "$(s_show LoadState)/$(s_show ActiveState)" not-found/inactive
    log "ggrok-server.rpm: installed without starting, restarted by an upgrade, stopped and removed by erase"
    ct rm -rf /etc/ggrok

    step "rpm -i ggrok.rpm" rpm_ct -i --nodeps /tmp/ggrok.rpm
    check "no user unit from the rpm" ct test -f /usr/lib/systemd/user/ggrokd.service
    eq "ggrokd.service from the rpm, for $ALICE" "$(as_alice systemctl --user show -P LoadState ggrokd.service)" loaded
    step "rpm -e ggrok" rpm_ct -e --nodeps ggrok
    check "ggrokd is still there after rpm -e" ct test ! -e /usr/bin/ggrokd
}
