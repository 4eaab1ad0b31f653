#!/usr/bin/env bash
# The whole test suite, from nothing: installs the real peers the
# integration tests talk to (Debian packages), then runs formatting, vet,
# staticcheck, the race-enabled tests in random order and a short run of
# every fuzz target. Servers the tests need are started by the tests
# themselves, on loopback only.
#
#   FUZZTIME=20000x  how long each fuzz target runs (default 20000 inputs;
#                    a count, not a duration: Go 1.26's fuzz coordinator can
#                    report a spurious "context deadline exceeded" when a
#                    -fuzztime duration ends, go.dev/issue/75804)
#   SKIP_INSTALL=1 do not apt-get install anything
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-20000x}
export PATH="$PATH:/usr/sbin:/sbin"  # smtp-sink, smtp-source
staticcheck_version=v0.8.2

need_pkgs=()
command -v swaks >/dev/null 2>&1 || need_pkgs+=(swaks)
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v /usr/bin/python3 >/dev/null 2>&1 || need_pkgs+=(python3)
# Postfix for its smtp-sink and smtp-source test peers, and for the milter
# test's private instance (its own config and queue directories); the
# system's instance is never started ("No configuration").
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || need_pkgs+=(postfix)
# Milters the relay calls from [[milter]] tables; the tests start their own
# with configurations they write.
command -v opendkim >/dev/null 2>&1 || [ -x /usr/sbin/opendkim ] || need_pkgs+=(opendkim)
command -v clamav-milter >/dev/null 2>&1 || [ -x /usr/sbin/clamav-milter ] || need_pkgs+=(clamav-milter)
# dkimpy, the independent DKIM implementation auth's interop test uses.
/usr/bin/python3 -c 'import dkim, nacl' >/dev/null 2>&1 || need_pkgs+=(python3-dkim python3-nacl)
# Content scanners; the tests start their own daemons on loopback with a
# signature database (clamd) and configuration they write themselves.
command -v clamd >/dev/null 2>&1 || [ -x /usr/sbin/clamd ] || need_pkgs+=(clamav-daemon clamav)
command -v spamd >/dev/null 2>&1 || [ -x /usr/sbin/spamd ] || need_pkgs+=(spamassassin spamd)
command -v rspamd >/dev/null 2>&1 || [ -x /usr/bin/rspamd ] || need_pkgs+=(rspamd)
# OpenLDAP for the directory tests (auth/directory/ldaptest): they start
# their own slapd on loopback with a configuration, schema and data they
# write; the package's own daemon is not used.
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || need_pkgs+=(slapd)
command -v ldapmodify >/dev/null 2>&1 || need_pkgs+=(ldap-utils)
# ip, to give the open-relay battery an untrusted source address on lo.
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need_pkgs+=(iproute2)
# Archive tools: the attachment tests prove their archives real with them
# (unzip extracts a prefixed zip, zip -P makes an encrypted one, bzip2
# compresses what the walker must open).
for tool in zip unzip bzip2 tar; do
  command -v "$tool" >/dev/null 2>&1 || need_pkgs+=("$tool")
done
# Headless Chromium for the quarantine page's end-to-end test (chromedp).
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
if [ ${#need_pkgs[@]} -gt 0 ] && [ -z "${SKIP_INSTALL:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "!! missing ${need_pkgs[*]}: integration tests will skip (or fail under CI=true)"
  fi
fi

# sendmail for the milter test: Debian's sendmail-bin cannot be installed
# beside Postfix, so its files (and sendmail-cf's m4 macros) are unpacked
# under /opt/postern-sendmail and run from there (POSTERN_SENDMAIL_ROOT).
sm_root=${POSTERN_SENDMAIL_ROOT:-/opt/postern-sendmail}
if [ ! -x "$sm_root/usr/libexec/sendmail/sendmail" ] && [ -z "${SKIP_INSTALL:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== unpacking sendmail under $sm_root"
  command -v m4 >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends m4 >/dev/null
  sm_tmp=$(mktemp -d)
  (cd "$sm_tmp" && { apt-get download sendmail-bin sendmail-cf >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get download sendmail-bin sendmail-cf >/dev/null; }; } &&
    for f in ./*.deb; do dpkg-deb -x "$f" "$sm_root"; done)
  rm -rf "$sm_tmp"
fi

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

# Two Go modules: the library (the repository root) and the reference
# relay (examples/relay), tied together for development by go.work. Every
# check runs in each.
modules=(. examples/relay)

echo "== go mod tidy"
for m in "${modules[@]}"; do
  (cd "$m" && go mod tidy -diff) || { echo "$m/go.mod is not tidy: run go mod tidy in $m"; exit 1; }
done

echo "== go vet"
for m in "${modules[@]}"; do (cd "$m" && go vet ./...); done

echo "== staticcheck $staticcheck_version"
for m in "${modules[@]}"; do
  (cd "$m" && go run "honnef.co/go/tools/cmd/staticcheck@$staticcheck_version" ./...)
done

echo "== go test -race -shuffle=on"
for m in "${modules[@]}"; do
  echo "-- module $m"
  (cd "$m" && go test -race -shuffle=on -count=1 -timeout 20m ./...)
done

echo "== fuzz targets, $fuzztime each"
for m in "${modules[@]}"; do
  pkgs=$(cd "$m" && go list ./...)
  for pkg in $pkgs; do
    for target in $( (cd "$m" && go test -list '^Fuzz' "$pkg" 2>/dev/null) | grep '^Fuzz' || true); do
      echo "-- $pkg $target"
      (cd "$m" && go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg") >/tmp/postern-fuzz.log 2>&1 || {
        cat /tmp/postern-fuzz.log; exit 1; }
    done
  done
done
echo "== all passed"
