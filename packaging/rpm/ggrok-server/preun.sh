# Stops and disables the service when the package is erased ($1 = 0), not when it is upgraded.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now ggrok-server.service >/dev/null 2>&1 || :
fi
