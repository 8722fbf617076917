#!/usr/bin/env bash
# verify.sh: check a GL-Native site bundle on the offline host (bash + coreutils; ssh-keygen for a
# signature; tar for --unpack). Shipped inside every bundle; gldeploy/sitebundle/verify.py does the
# same checks in the same order. Exit 0 verified, 1 damaged or tampered (install nothing), 2 bad
# input (options, another architecture, no room to unpack): nothing was written.
# An upgrade bundle (invoke bundle.build --upgrade-from OLD) is verified the same way; with --base
# OLD_DIR the files it relies on (manifest.json relies_on) are checked in the previous bundle too.
set -euo pipefail

readonly NAMESPACE="gl-native-bundle"
readonly FORMAT_LINE='  "format": "gl-native-bundle/1",'
readonly FIX="copy the bundle again from the media (or rebuild it with invoke bundle.build); install nothing from it"
USAGE="usage: verify.sh [--arch ARCH] [--require-signature] [--allowed-signers FILE] [--identity ID] [--jobs N] [--base OLD_DIR] [DIR]
       verify.sh --unpack NAME.PARTS.sha256 --to DEST [the options above]
DIR defaults to the directory of this script. --unpack checks every part, the free space of DEST,
extracts the bundle into DEST and verifies it. --base (an upgrade bundle): the previous bundle's
directory, which must hold every file the upgrade relies on with its sha256."

info()  { printf 'verify.sh: %s\n' "$*" >&2; }
fatal() { printf 'verify.sh: TAMPERED/DAMAGED: %s\n' "$*" >&2; exit 1; }
die_input() { printf 'verify.sh: BAD INPUT: %s\n' "$*" >&2; exit 2; }

# nothing to clean up: verify.sh writes nothing but the bundle --unpack extracts
cleanup() { :; }
trap cleanup EXIT

DIR="" ARCH="" REQUIRE=0 ALLOWED="" IDENTITY="" JOBS="" PARTS="" DEST="" BASE=""
parse_args() {
  while (( $# )); do
    case "$1" in
      --arch) ARCH="${2:?--arch needs a value}"; shift ;;
      --require-signature) REQUIRE=1 ;;
      --allowed-signers) ALLOWED="${2:?--allowed-signers needs a file}"; shift ;;
      --identity) IDENTITY="${2:?--identity needs a value}"; shift ;;
      --jobs) JOBS="${2:?--jobs needs a number}"; shift ;;
      --unpack) PARTS="${2:?--unpack needs the PARTS.sha256 file}"; shift ;;
      --to) DEST="${2:?--to needs a directory}"; shift ;;
      --base) BASE="${2:?--base needs the previous bundle directory}"; shift ;;
      -h|--help) printf '%s\n' "${USAGE}"; exit 0 ;;
      -*) die_input "unknown option '$1'; ${USAGE}" ;;
      *) [[ -z "${DIR}" ]] || die_input "more than one DIR given; ${USAGE}"; DIR="$1" ;;
    esac
    shift
  done
  [[ -z "${JOBS}" || "${JOBS}" =~ ^[1-9][0-9]*$ ]] || die_input "--jobs ${JOBS}: expected a positive number"
  JOBS="${JOBS:-$(nproc 2>/dev/null || echo 1)}"
  if [[ -n "${PARTS}" ]]; then
    [[ -n "${DEST}" ]] || die_input "--unpack needs --to DEST (a directory on a disk with room for the bundle)"
    [[ -z "${DIR}" ]] || die_input "give either DIR or --unpack, not both"
  elif [[ -z "${DIR}" ]]; then
    DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  fi
}

# --- unpack: parts listed, present, matching, nothing stray; room in DEST; then extract ---
unpack() {
  [[ -f "${PARTS}" ]] || die_input "${PARTS}: not found; give the <name>.PARTS.sha256 file that came with the parts"
  local where stem line i part listed=() digests=() need=0 avail
  where="$(dirname "${PARTS}")" stem="$(basename "${PARTS}" .PARTS.sha256)"
  while IFS= read -r line || [[ -n "${line}" ]]; do
    [[ "${line}" =~ ^([0-9a-f]{64})\ \ ([^/[:space:]]+)$ ]] ||
      fatal "${PARTS}: line '${line:0:80}' is not '<sha256>  <part>'; copy the PARTS.sha256 file from the build output again"
    digests+=("${BASH_REMATCH[1]}") listed+=("${BASH_REMATCH[2]}")
  done < "${PARTS}"
  (( ${#listed[@]} )) || fatal "${PARTS}: lists no parts; copy it again from the build output"
  for part in "${listed[@]}"; do
    [[ -f "${where}/${part}" ]] ||
      fatal "${where}/${part}: split part missing; copy it from the build output (all parts listed in $(basename "${PARTS}") go together)"
  done
  for i in "${!listed[@]}"; do
    part="${listed[i]}"
    [[ "$(sha256sum < "${where}/${part}" | cut -d' ' -f1)" == "${digests[i]}" ]] ||
      fatal "${where}/${part}: split part is stale or damaged (sha256 differs from $(basename "${PARTS}")); copy this part again from the same build"
    need=$(( need + $(stat -c %s "${where}/${part}") ))
  done
  # membership by a bash lookup, not `printf | grep -q`: grep -q quits at the first match, printf then
  # dies of SIGPIPE, and under pipefail a listed part would be reported as stray
  local -A is_listed=()
  for part in "${listed[@]}"; do is_listed["${part}"]=1; done
  for part in "${where}/${stem}".tar*; do
    [[ -e "${part}" ]] || continue
    [[ -n "${is_listed[$(basename "${part}")]:-}" ]] ||
      fatal "${part}: part not listed in $(basename "${PARTS}") (left from another build?); remove it or copy the matching $(basename "${PARTS}")"
  done
  [[ -d "${DEST}" ]] || die_input "--to ${DEST}: not a directory; create it on a disk with room for the bundle"
  avail=$(( $(stat -f -c '%a * %S' "${DEST}") ))
  (( avail >= need )) ||
    die_input "${DEST}: $(( avail / 1048576 )) MiB free, the bundle needs $(( need / 1048576 + 1 )) MiB; unpack on a larger disk, nothing was written"
  [[ ! -e "${DEST}/${stem}" ]] || die_input "${DEST}/${stem}: already exists; remove it or unpack elsewhere"
  for part in "${listed[@]}"; do cat -- "${where}/${part}"; done |
    tar -x -f - -C "${DEST}" --no-same-owner --no-same-permissions ||
    fatal "${PARTS}: extracting into ${DEST} failed; check the disk, then ${FIX}"
  DIR="${DEST}/${stem}"
  info "unpacked ${#listed[@]} part(s) into ${DIR}"
}

# --- signature: when required or present ---
check_signature() {
  local sig="${DIR}/manifest.json.sig" who out
  if (( REQUIRE )) && [[ -z "${ALLOWED}" ]]; then
    die_input "--require-signature needs --allowed-signers FILE (lines '<identity> <key type> <public key>'); get the signer's public key out of band"
  fi
  if [[ -n "${ALLOWED}" && ! -f "${ALLOWED}" ]]; then
    die_input "--allowed-signers ${ALLOWED}: file not found; create it from the signer's public key: echo \"gl-bundle \$(cat key.pub)\" > ${ALLOWED}"
  fi
  if [[ ! -f "${sig}" ]]; then
    (( ! REQUIRE )) || fatal "${sig}: missing, and a signature is required; ask for a signed bundle (invoke bundle.build --sign-key KEY), never install an unsigned one"
    SIGNATURE="no signature (not required)"
    return 0
  fi
  command -v ssh-keygen >/dev/null || die_input "ssh-keygen not found; install OpenSSH (openssh-client)"
  if [[ -z "${ALLOWED}" ]]; then
    out=$(ssh-keygen -Y check-novalidate -n "${NAMESPACE}" -s "${sig}" < "${DIR}/manifest.json" 2>&1) ||
      fatal "${sig}: does not sign this manifest.json (manifest changed after signing, or the signature is damaged); get the bundle again from its builder"
    SIGNATURE="${out} (signer not checked: give --allowed-signers)"
    return 0
  fi
  who="${IDENTITY}"
  if [[ -z "${who}" ]]; then
    who=$(ssh-keygen -Y find-principals -f "${ALLOWED}" -s "${sig}" 2>/dev/null | head -n 1) || who=""
    [[ -n "${who}" ]] ||
      fatal "${sig}: not made by any key in ${ALLOWED} (wrong signer or damaged signature); get the bundle from the expected builder"
  fi
  out=$(ssh-keygen -Y verify -f "${ALLOWED}" -I "${who}" -n "${NAMESPACE}" -s "${sig}" < "${DIR}/manifest.json" 2>&1) ||
    fatal "${sig}: does not verify manifest.json for ${who} in ${ALLOWED} (manifest changed after signing, or another signer); get the bundle again from its builder"
  SIGNATURE="${out}"
}

# --- manifest.json: one entry per line (canonical form written by the builder) ---
PATHS=() SIZES=() SHAS=() SECRETS=() BUNDLE_ARCH=""
RELY_PATHS=() RELY_SIZES=() RELY_SHAS=() UPGRADE_BASE="" UPGRADE_FROM="" UPGRADE_TO=""
safe_path() {
  [[ "$1" =~ ^[A-Za-z0-9_+-][A-Za-z0-9._+/-]*$ && ! "$1" =~ (^|/)\.\.?(/|$) && "$1" != *//* && "$1" != */ ]]
}
read_manifest() {
  local m="${DIR}/manifest.json" line path file_re secret_re upgrade_re section=""
  file_re='^    \{"kind": "[a-z0-9-]+", "origin": .*, "path": "([^"]+)", "sha256": "([0-9a-f]{64})", "size": ([0-9]+), "version": .*\},?$'
  secret_re='^    \{"key": "[A-Z0-9_]+", "path": "([^"]+)"\},?$'
  upgrade_re='^  "upgrade": \{"base_manifest_sha256": "([0-9a-f]{64})", "from": (\{[^}]*\}), "to": (\{[^}]*\})\}$'
  grep -qxF -- "${FORMAT_LINE}" "${m}" || fatal "${m}: not a gl-native-bundle/1 manifest (no format line); ${FIX}"
  while IFS= read -r line; do
    if [[ "${line}" =~ ${file_re} && "${section}" == relies_on ]]; then
      path="${BASH_REMATCH[1]}" RELY_SHAS+=("${BASH_REMATCH[2]}") RELY_SIZES+=("${BASH_REMATCH[3]}")
      safe_path "${path}" || fatal "${m}: unsafe path '${path}'; ${FIX}"
      RELY_PATHS+=("${path}")
    elif [[ "${line}" =~ ${file_re} && "${section}" == files ]]; then
      path="${BASH_REMATCH[1]}" SHAS+=("${BASH_REMATCH[2]}") SIZES+=("${BASH_REMATCH[3]}")
      safe_path "${path}" || fatal "${m}: unsafe path '${path}'; ${FIX}"
      PATHS+=("${path}")
    elif [[ "${line}" =~ ${secret_re} ]]; then
      path="${BASH_REMATCH[1]}"
      safe_path "${path}" || fatal "${m}: unsafe path '${path}'; ${FIX}"
      SECRETS+=("${path}")
    elif [[ "${line}" =~ ^\ \ \"arch\":\ \"([a-z0-9]+)\",$ ]]; then
      BUNDLE_ARCH="${BASH_REMATCH[1]}"
    elif [[ "${line}" =~ ${upgrade_re} ]]; then
      UPGRADE_BASE="${BASH_REMATCH[1]}" UPGRADE_FROM="${BASH_REMATCH[2]}" UPGRADE_TO="${BASH_REMATCH[3]}"
    elif [[ "${line}" =~ ^\ \ \"(files|relies_on|secrets)\":\ \[(\])?,?$ ]]; then
      section="${BASH_REMATCH[1]}"
    elif [[ "${line}" =~ ^\ \ \],?$ ]]; then
      section=""
    elif [[ "${line}" =~ ^\ \ \"(format|pins|tool|topology)\":\ .*,?$ || "${line}" == "{" || "${line}" == "}" ]]; then
      continue
    else
      fatal "${m}: line '${line:0:80}' is not in the builder's form (edited by hand?); ${FIX}"
    fi
  done < "${m}"
  [[ -n "${BUNDLE_ARCH}" ]] || fatal "${m}: no arch; ${FIX}"
  if [[ -z "${UPGRADE_BASE}" ]] && (( ${#RELY_PATHS[@]} )); then fatal "${m}: relies_on without an upgrade line; ${FIX}"; fi
}

names() { # first five of a newline list, then a count
  local n; n=$(grep -c . <<< "$1" || true)
  head -n 5 <<< "$1" | paste -sd, - | sed 's/,/, /g'
  (( n <= 5 )) || printf ' and %d more' $(( n - 5 ))
}

check_files() {
  local i expected have present listed missing extra bad="" mine
  expected=$(for i in "${!PATHS[@]}"; do printf '%s  %s\n' "${SHAS[i]}" "${PATHS[i]}"; done
             printf '%s  manifest.json\n' "$(sha256sum < "${DIR}/manifest.json" | cut -d' ' -f1)")
  [[ -f "${DIR}/SHA256SUMS" ]] || fatal "${DIR}/SHA256SUMS: missing; ${FIX}"
  have=$(cat -- "${DIR}/SHA256SUMS")
  if [[ "${have}" != "${expected}" ]]; then
    bad=$(LC_ALL=C comm -3 <(LC_ALL=C sort <<< "${expected}") <(LC_ALL=C sort <<< "${have}") |
          sed -e 's/^[[:space:]]*//' -e 's/^[^ ]*  //' | LC_ALL=C sort -u)
    fatal "${DIR}/SHA256SUMS: disagrees with manifest.json about $(names "${bad}"); the sums were edited or belong to another build: ${FIX}"
  fi
  present=$(cd "${DIR}" && find . -mindepth 1 ! -type d -printf '%P\n' | LC_ALL=C sort)
  listed=$(printf '%s\n' "${PATHS[@]}" | LC_ALL=C sort)
  missing=$(LC_ALL=C comm -23 <(printf '%s\n' "${listed}") <(printf '%s\n' "${present}"))
  [[ -z "${missing}" ]] || fatal "${DIR}: file(s) missing: $(names "${missing}"); ${FIX}"
  mine=$(printf '%s\n' "${listed}" manifest.json manifest.json.sig SHA256SUMS "${SECRETS[@]}" | LC_ALL=C sort -u)
  extra=$(LC_ALL=C comm -23 <(printf '%s\n' "${present}") <(printf '%s\n' "${mine}"))
  [[ -z "${extra}" ]] || fatal "${DIR}: file(s) not in manifest.json: $(names "${extra}"); remove them (nothing unlisted may ride along) or ${FIX}"
  for i in "${!PATHS[@]}"; do
    if [[ -L "${DIR}/${PATHS[i]}" || ! -f "${DIR}/${PATHS[i]}" ]]; then bad+="${PATHS[i]}"$'\n'; fi
  done
  [[ -z "${bad}" ]] || fatal "${DIR}: not regular files: $(names "${bad}"); ${FIX}"
  for i in "${!PATHS[@]}"; do
    [[ "$(stat -c %s -- "${DIR}/${PATHS[i]}")" == "${SIZES[i]}" ]] || bad+="${PATHS[i]}"$'\n'
  done
  [[ -z "${bad}" ]] || fatal "${DIR}: size differs from manifest.json (truncated or grown): $(names "${bad%$'\n'}"); ${FIX}"
}

# sha256 of one file per call, '<hex>  <file>' (or '<hex> *<file>'); openssl uses the CPU's SHA
# instructions where coreutils' sha256sum does not, so it is preferred when installed
HASHER=(sha256sum --)
if command -v openssl >/dev/null 2>&1 && [[ "$(printf x | openssl dgst -sha256 -r 2>/dev/null)" == 2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881\ \*stdin ]]; then
  HASHER=(openssl dgst -sha256 -r)
fi

check_hashes() { # biggest first, xargs -P over the hasher, compared with the manifest
  local i actual bad
  actual=$(for i in "${!PATHS[@]}"; do printf '%s\t%s\n' "${SIZES[i]}" "${PATHS[i]}"; done |
           LC_ALL=C sort -t $'\t' -k1,1nr | cut -f2- | tr '\n' '\0' |
           (cd "${DIR}" && xargs -0 -r -P "${JOBS}" -n 1 "${HASHER[@]}") | sed 's/ \*/  /' | LC_ALL=C sort)
  bad=$(LC_ALL=C comm -13 <(printf '%s\n' "${actual}") \
          <(for i in "${!PATHS[@]}"; do printf '%s  %s\n' "${SHAS[i]}" "${PATHS[i]}"; done | LC_ALL=C sort) |
        sed 's/^[^ ]*  //')
  [[ -z "${bad}" ]] || fatal "${DIR}: sha256 differs from manifest.json (damaged or tampered): $(names "${bad}"); ${FIX}"
}

# --- an upgrade bundle with --base: the relied-on files are in the previous bundle, unchanged ---
check_base() {
  local i bad="" missing=""
  [[ -n "${UPGRADE_BASE}" ]] || die_input "--base ${BASE}: ${DIR} is a full bundle, not an upgrade bundle; drop --base"
  [[ -d "${BASE}" ]] || die_input "--base ${BASE}: not a directory; give the installed (previous) bundle directory"
  if [[ -f "${BASE}/manifest.json" && "$(sha256sum < "${BASE}/manifest.json" | cut -d' ' -f1)" != "${UPGRADE_BASE}" ]]; then
    fatal "--base ${BASE}: its manifest.json is not the one this upgrade bundle was built against (sha256 ${UPGRADE_BASE}); use that bundle, or a full bundle"
  fi
  for i in "${!RELY_PATHS[@]}"; do
    [[ -f "${BASE}/${RELY_PATHS[i]}" && ! -L "${BASE}/${RELY_PATHS[i]}" ]] || missing+="${RELY_PATHS[i]}"$'\n'
  done
  [[ -z "${missing}" ]] || fatal "--base ${BASE}: file(s) the upgrade relies on are missing: $(names "${missing%$'\n'}"); copy the previous bundle again, or ${FIX}"
  for i in "${!RELY_PATHS[@]}"; do
    if [[ "$(stat -c %s -- "${BASE}/${RELY_PATHS[i]}")" != "${RELY_SIZES[i]}" ||
          "$(sha256sum < "${BASE}/${RELY_PATHS[i]}" | cut -d' ' -f1)" != "${RELY_SHAS[i]}" ]]; then
      bad+="${RELY_PATHS[i]}"$'\n'
    fi
  done
  [[ -z "${bad}" ]] || fatal "--base ${BASE}: file(s) the upgrade relies on differ (damaged, edited or another version): $(names "${bad%$'\n'}"); copy the previous bundle again, or ${FIX}"
  info "--base ${BASE}: ${#RELY_PATHS[@]} relied-on file(s) verified in ${BASE}"
}

main() {
  parse_args "$@"
  if [[ -n "${PARTS}" ]]; then unpack; fi
  [[ -d "${DIR}" ]] || die_input "${DIR}: not a directory; give the unpacked bundle directory"
  [[ -f "${DIR}/manifest.json" ]] || fatal "${DIR}/manifest.json: missing, so nothing in ${DIR} can be trusted; ${FIX}"
  SIGNATURE=""
  check_signature
  read_manifest
  if [[ -n "${ARCH}" && "${ARCH}" != "${BUNDLE_ARCH}" ]]; then
    die_input "${DIR}/manifest.json: bundle built for ${BUNDLE_ARCH}, this host needs ${ARCH}; use the ${ARCH} bundle (build it with K3S_ARCH=${ARCH})"
  fi
  check_files
  check_hashes
  info "OK: ${#PATHS[@]} files verified in ${DIR}; signature: ${SIGNATURE}"
  if [[ -n "${UPGRADE_BASE}" ]]; then
    info "upgrade bundle: from ${UPGRADE_FROM} to ${UPGRADE_TO}; relies on ${#RELY_PATHS[@]} file(s) of the previous bundle"
  fi
  if [[ -n "${BASE}" ]]; then check_base
  elif [[ -n "${UPGRADE_BASE}" ]]; then info "relied-on files not checked (give --base OLD_DIR)"; fi
}

main "$@"
