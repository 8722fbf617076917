#!/usr/bin/env bash
# bootstrap.sh: install everything GL-Native Deploy's tests and labs need on a fresh Debian 12 host.
# Idempotent: packages already present are not reinstalled; the pip step is skipped when the
# project's dependency list has not changed since the last run. Usage: tools/bootstrap.sh [test|lab]
set -euo pipefail

info()  { printf 'INFO  [bootstrap] %s\n' "$*" >&2; }
fatal() { printf 'FATAL [bootstrap] %s\n' "$*" >&2; exit 1; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STAMP_DIR="${REPO}/.cache"

# packages the unit/script/integration tests need (real daemons run from these)
TEST_PACKAGES=(
  bash coreutils iproute2 iptables kmod procps curl ca-certificates openssl git make
  shellcheck skopeo umoci docker-registry apache2-utils busybox-static chrony dnsmasq
  openssh-server openssh-client rsync tar gzip haproxy keepalived bind9-dnsutils sqlite3
)
# packages the VM lab needs in addition (see docs/lab.md)
LAB_PACKAGES=(
  vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils
  dnsmasq-base mmdebstrap syslinux syslinux-common mtools dosfstools fdisk e2fsprogs
)

install_apt() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q "install ok installed" || missing+=("${pkg}")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    info "apt: all ${#} packages present"
    return 0
  fi
  [[ "$(id -u)" -eq 0 ]] || fatal "apt packages missing (${missing[*]}); run as root"
  info "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

install_python() {
  local stamp="${STAMP_DIR}/pip.sha256" want
  want=$(sha256sum "${REPO}/pyproject.toml" | cut -d' ' -f1)
  # the editable install must point at this checkout (another clone may have taken it over)
  if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]] && python3 -I - "${REPO}" <<'PY' 2>/dev/null
import sys, pathlib, gldeploy, invoke, nox, testinfra, mypy, ruff, mkdocs
sys.exit(pathlib.Path(gldeploy.__file__).resolve().parents[1] != pathlib.Path(sys.argv[1]).resolve())
PY
  then
    info "pip: dependencies unchanged"
    return 0
  fi
  info "pip: installing the project and its dependencies"
  python3 -m pip install -q --disable-pip-version-check -e "${REPO}[test,lint,docs]" 2>&1 | grep -v -i "warning" >&2 || true
  python3 -c 'import gldeploy, invoke, nox, testinfra, vagrant, kubernetes_validate, mypy, ruff, mkdocs' \
    || fatal "python dependencies failed to install; see pip output above"
  mkdir -p "${STAMP_DIR}"
  printf '%s\n' "${want}" > "${stamp}"
}

main() {
  local what="${1:-test}"
  case "${what}" in
    test) install_apt "${TEST_PACKAGES[@]}" ;;
    lab)  install_apt "${TEST_PACKAGES[@]}" "${LAB_PACKAGES[@]}" ;;
    *) printf 'usage: %s [test|lab]\n' "$0" >&2; exit 2 ;;
  esac
  install_python
}

main "$@"
