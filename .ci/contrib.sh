#!/usr/bin/env bash
# Checks the deployment examples in contrib/ with the tools that read them:
# `systemd-analyze verify` for the unit, `nginx -t` for the proxy config
# (wrapped in a minimal nginx.conf, with a throw-away certificate and
# paths under a temp dir). A missing tool is a notice, not a failure: CI
# machines have only the Rust toolchain. Usage: .ci/contrib.sh [OTSD_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
otsd_bin="$(realpath "${1:-target/debug/otsd}" 2>/dev/null || true)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if command -v systemd-analyze >/dev/null; then
  # verify wants ExecStart's binary to exist: point it at the built one
  # (or at a stand-in when there is none yet).
  [ -x "$otsd_bin" ] || otsd_bin="$(command -v true)"
  sed "s|/usr/local/bin/otsd|$otsd_bin|" contrib/otsd.service >"$work/otsd.service"
  # verify exits 0 on a bad value or an unknown key (it only says so):
  # anything it says about the unit counts as a failure.
  said="$(systemd-analyze verify "$work/otsd.service" 2>&1)" || { echo "$said" >&2; exit 1; }
  if printf '%s' "$said" | grep -q "otsd.service"; then
    echo "$said" >&2
    echo "contrib/otsd.service: systemd-analyze verify complained" >&2
    exit 1
  fi
  echo "contrib/otsd.service: systemd-analyze verify ok"
  if systemd-analyze security --help 2>/dev/null | grep -q -- --offline; then
    systemd-analyze security --offline=true "$work/otsd.service" | tail -1
  fi
else
  echo "NOTICE: systemd-analyze not found; contrib/otsd.service not checked"
fi

nginx_bin="$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)"
if [ -n "$nginx_bin" ] && command -v openssl >/dev/null; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=calendar.example.org \
    -keyout "$work/privkey.pem" -out "$work/fullchain.pem" 2>/dev/null
  mkdir -p "$work/cache" "$work/www"
  sed -e "s|/etc/letsencrypt/live/calendar.example.org|$work|" \
      -e "s|/var/cache/nginx/otsd|$work/cache|" \
      -e "s|/var/www/html|$work/www|" \
      contrib/nginx-otsd.conf >"$work/otsd.conf"
  cat >"$work/nginx.conf" <<CONF
pid $work/nginx.pid;
error_log $work/error.log;
events {}
http {
    access_log off;
    client_body_temp_path $work/body;
    proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/fastcgi;
    uwsgi_temp_path $work/uwsgi;
    scgi_temp_path $work/scgi;
    include $work/otsd.conf;
}
CONF
  "$nginx_bin" -t -q -p "$work" -e "$work/error.log" -c "$work/nginx.conf" \
    || { cat "$work/error.log" >&2; exit 1; }
  echo "contrib/nginx-otsd.conf: nginx -t ok"
else
  echo "NOTICE: nginx (or openssl) not found; contrib/nginx-otsd.conf not checked"
fi
