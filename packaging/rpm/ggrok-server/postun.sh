# Forgets a removed unit; after an upgrade ($1 >= 1), restarts a running server.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart ggrok-server.service >/dev/null 2>&1 || :
    fi
fi
