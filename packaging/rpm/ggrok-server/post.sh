# Loads the new unit. The service is neither enabled nor started on a first install: edit
# /etc/ggrok/server.toml first, then `systemctl enable --now ggrok-server`.
# The group ggrok (sysusers.d/ggrok-server.conf) reads the config; the service runs in it.
systemd-sysusers ggrok-server.conf >/dev/null 2>&1 || :
chgrp ggrok /etc/ggrok/server.toml 2>/dev/null || :
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
