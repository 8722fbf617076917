#!/usr/bin/env bash
# lib/image_check.sh: the backend-image check of 01_pre_install_check.sh (roles single, first-server:
# the hosts that deploy the backend). Read-only: finds out, before anything is installed, whether the
# backend image BACKEND_IMAGE_REF (derived by gldeploy: the name the pods pull and archives are
# imported under) can be had, from either
#   1. an archive the bundle carries: artifacts/images/*.tar[.gz|.zst], listed in SHA256SUMS with a
#      matching checksum, whose index.json / manifest.json names BACKEND_IMAGE_REF; or
#   2. the registry: HEAD /v2/<repo>/manifests/<tag|digest> answers 200, with REGISTRY_USER and the
#      password of REGISTRY_PASSWORD_FILE (basic auth, or a bearer token fetched from the realm of a
#      401 "WWW-Authenticate: Bearer"), trusting REGISTRY_CA_FILE. Images without a registry host
#      resolve to docker.io, which an air-gapped host cannot reach.
# Credentials reach curl on stdin (-K -: a curl config), never on its command line.
# Needs common.sh (gl_bundle_path) and checks.sh (gl_check_*).

IMG_ACCEPT="application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"
IMG_CURL_OPTS=(-sS --connect-timeout 5 --max-time 20 --proto "=https")
IMG_HOST="" IMG_API="" IMG_REPO="" IMG_REFERENCE=""
IMG_NOTE=""    # what the archive path found: the archive that carries the image, or why none does
IMG_WHY="" IMG_FIX=""  # why the registry path did not, and what to do about it

# img_split REF: IMG_HOST (registry host[:port]), IMG_REPO, IMG_REFERENCE (tag or sha256:...),
# IMG_API (the host the API is at: docker.io is served by registry-1.docker.io)
img_split() {
  local ref="$1" rest
  IMG_HOST="${ref%%/*}"; rest="${ref#*/}"
  if [[ "${rest}" == *@* ]]; then IMG_REPO="${rest%@*}"; IMG_REFERENCE="${rest#*@}"
  else IMG_REPO="${rest%:*}"; IMG_REFERENCE="${rest##*:}"; fi
  IMG_API="${IMG_HOST}"
  if [[ "${IMG_HOST}" == docker.io ]]; then IMG_API=registry-1.docker.io; fi
}

# the names an archive may carry the image under: the full reference, and the short forms docker
# save writes (containerd's import adds docker.io/ and docker.io/library/ back)
img_name_forms() {
  local ref="$1"
  printf '%s\n' "${ref}"
  case "${ref}" in
    docker.io/library/*) printf '%s\n' "${ref#docker.io/library/}" "${ref#docker.io/}" ;;
    docker.io/*) printf '%s\n' "${ref#docker.io/}" ;;
  esac
}

# img_archive_json ARCHIVE: the image index (OCI index.json) and docker manifest.json of an archive
img_archive_json() {
  local archive="$1" members
  members=$(tar -tf "${archive}" 2>/dev/null | grep -xE '(\./)?(index|manifest)\.json') || return 1
  # shellcheck disable=SC2086  # members are the two fixed names above
  tar -xOf "${archive}" ${members} 2>/dev/null
}

img_sum_of() {  # NAME SUMS: the sha256 SUMS lists for NAME ("" when not listed)
  local sum name
  while read -r sum name || [[ -n "${sum}" ]]; do
    if [[ "${name#\*}" == "$1" ]]; then printf '%s\n' "${sum}"; return 0; fi
  done <"$2"
}

# img_from_archive REF: 0 when an archive in the bundle carries REF; 2 when an archive there would
# make the deploy phase refuse the bundle (unlisted, or its checksum does not match); 1 otherwise.
# IMG_NOTE says which archive, or why none (called directly, not in $(...): it sets IMG_NOTE)
img_from_archive() {
  local ref="$1" dir="${GL_BUNDLE_DIR}/artifacts/images" sums archives=() f base want have json forms form
  sums="${dir}/SHA256SUMS"
  for f in "${dir}"/*.tar "${dir}"/*.tar.gz "${dir}"/*.tar.zst; do
    if [[ -f "${f}" ]]; then archives+=("${f}"); fi
  done
  if ((${#archives[@]} == 0)); then IMG_NOTE="the bundle carries no image archive (artifacts/images is empty)"; return 1; fi
  if [[ ! -f "${sums}" ]]; then
    IMG_NOTE="artifacts/images has $(( ${#archives[@]} )) archive(s) but no SHA256SUMS, so none can be verified"
    return 1
  fi
  mapfile -t forms < <(img_name_forms "${ref}")
  IMG_NOTE=""
  for f in "${archives[@]}"; do
    base=$(basename "${f}")
    want=$(img_sum_of "${base}" "${sums}")
    if [[ -z "${want}" ]]; then
      IMG_NOTE="artifacts/images/${base} is not listed in artifacts/images/SHA256SUMS: the deploy phase would refuse it"
      return 2
    fi
    have=$(sha256sum -- "${f}" | awk '{print $1}')
    if [[ "${have}" != "${want}" ]]; then
      IMG_NOTE="artifacts/images/${base} does not match artifacts/images/SHA256SUMS (sha256 ${have:0:12}..., listed ${want:0:12}...): the deploy phase would refuse it"
      return 2
    fi
    if ! command -v tar >/dev/null 2>&1; then
      IMG_NOTE+="${IMG_NOTE:+; }tar is not installed, so artifacts/images/${base} cannot be looked into (install tar)"
      continue
    fi
    if ! json=$(img_archive_json "${f}"); then
      IMG_NOTE+="${IMG_NOTE:+; }artifacts/images/${base} cannot be read as an OCI or docker archive (no index.json or manifest.json found by tar$([[ "${base}" == *.zst ]] && echo '; a .tar.zst needs zstd installed'))"
      continue
    fi
    for form in "${forms[@]}"; do
      if grep -qF -- "\"${form}\"" <<<"${json}"; then
        IMG_NOTE="artifacts/images/${base} (sha256 matches SHA256SUMS) carries ${ref}"
        return 0
      fi
    done
    IMG_NOTE+="${IMG_NOTE:+; }artifacts/images/${base} does not carry ${ref}"
  done
  return 1
}

img_conf_quote() {  # a value as a double-quoted curl config string
  local s="$1"
  s=${s//\\/\\\\}; s=${s//\"/\\\"}
  printf '"%s"' "${s}"
}

# img_curl AUTH URL CURL_ARGS...: AUTH is none, basic (REGISTRY_USER + password) or bearer:<token>.
# Prints the response (headers with -I, else the body) then a last line with the HTTP code; returns
# curl's exit status. The secret goes to curl in a config on stdin.
img_curl() {
  local auth="$1" url="$2" password
  shift 2
  {
    case "${auth}" in
      basic)
        password=$(<"$(gl_bundle_path "${REGISTRY_PASSWORD_FILE}")")
        printf 'user = %s\n' "$(img_conf_quote "${REGISTRY_USER}:${password}")" ;;
      bearer:*) printf 'header = %s\n' "$(img_conf_quote "Authorization: Bearer ${auth#bearer:}")" ;;
    esac
    printf 'url = %s\n' "$(img_conf_quote "${url}")"
  } | curl "${IMG_CURL_OPTS[@]}" -w '\n%{http_code}' "$@" -K - 2>/dev/null
}

img_header() {  # RESPONSE NAME: the value of a header (first one, CR stripped)
  awk -v n="$2" 'BEGIN {n = tolower(n) ":"} tolower($1) == n {sub(/^[^:]*:[ \t]*/, ""); sub(/\r$/, ""); print; exit}' <<<"$1"
}

img_param() {  # CHALLENGE NAME: a parameter of a WWW-Authenticate challenge
  sed -nE "s/^.*[ ,]$2=\"([^\"]*)\".*$/\1/p" <<<" $1" | head -n1
}

# img_curl_failed RC: set IMG_WHY/IMG_FIX for a curl that did not get an HTTP answer
img_curl_failed() {
  local rc="$1" addr="https://${IMG_API}" ca="${2:-}"
  local hub=""
  if [[ "${IMG_HOST}" == docker.io ]]; then
    hub="; ${IMG_HOST} is the public Docker Hub (BACKEND_IMAGE names no registry and REGISTRY is not set): an air-gapped host cannot reach it"
  fi
  case "${rc}" in
    6) IMG_WHY="the registry address ${IMG_API} does not resolve (curl exit 6)${hub}" ;;
    7) IMG_WHY="registry ${addr} is down or unreachable: connection refused or no route (curl exit 7)${hub}" ;;
    28) IMG_WHY="registry ${addr} did not answer in time (curl exit 28: down, or a firewall drops the traffic)${hub}" ;;
    35) IMG_WHY="TLS handshake with registry ${addr} failed (curl exit 35): is it serving HTTPS on that port?" ;;
    51|58|60|77|83)
      IMG_WHY="the TLS certificate of registry ${addr} does not verify against ${ca:-the system CAs (REGISTRY_CA_FILE is not set)} (curl exit ${rc})"
      IMG_FIX="set REGISTRY_CA_FILE to the PEM file of the CA that signed the registry's certificate (and make sure the certificate names ${IMG_API%:*})"
      return ;;
    *) IMG_WHY="request to registry ${addr} failed (curl exit ${rc})${hub}" ;;
  esac
  if [[ -z "${hub}" ]]; then IMG_FIX="check the registry address ${IMG_HOST} (REGISTRY, BACKEND_IMAGE), DNS, the firewall and that the registry is running"; fi
}

# img_from_registry REF: 0 when the registry has REF for these credentials; else 1 with IMG_WHY/IMG_FIX
img_from_registry() {
  local ref="$1" ca="" ca_args=() auth=none out rc code challenge realm service scope token url who="anonymous clients"
  IMG_WHY="" IMG_FIX=""
  if [[ -n "${REGISTRY}" && "${IMG_HOST}" == "${REGISTRY}" ]]; then
    if [[ -n "${REGISTRY_CA_FILE}" ]]; then
      ca=$(gl_bundle_path "${REGISTRY_CA_FILE}")
      if [[ ! -r "${ca}" ]]; then
        IMG_WHY="the registry CA file ${ca} (REGISTRY_CA_FILE) is missing or unreadable"
        IMG_FIX="copy the bundle again, or point REGISTRY_CA_FILE at the CA certificate (PEM) and run again"
        return 1
      fi
      ca_args=(--cacert "${ca}")
    fi
    if [[ -n "${REGISTRY_USER}" ]]; then
      if [[ ! -r "$(gl_bundle_path "${REGISTRY_PASSWORD_FILE}")" ]]; then
        IMG_WHY="the registry password file $(gl_bundle_path "${REGISTRY_PASSWORD_FILE}") (REGISTRY_PASSWORD_FILE) is missing or unreadable"
        IMG_FIX="copy the bundle again, or point REGISTRY_PASSWORD_FILE at a 0600 file holding the password"
        return 1
      fi
      auth=basic who="user ${REGISTRY_USER}"
    fi
  fi
  url="https://${IMG_API}/v2/${IMG_REPO}/manifests/${IMG_REFERENCE}"
  rc=0; out=$(img_curl "${auth}" "${url}" -I -H "Accept: ${IMG_ACCEPT}" "${ca_args[@]}") || rc=$?
  if ((rc != 0)); then img_curl_failed "${rc}" "${ca:+the CA in REGISTRY_CA_FILE (${ca#"${GL_BUNDLE_DIR}/"})}"; return 1; fi
  code="${out##*$'\n'}"
  if [[ "${code}" == 401 ]]; then
    challenge=$(img_header "${out}" WWW-Authenticate)
    if [[ "${challenge,,}" == bearer* ]]; then
      realm=$(img_param "${challenge}" realm); service=$(img_param "${challenge}" service)
      scope=$(img_param "${challenge}" scope)
      if [[ "${realm}" != https://* ]]; then
        IMG_WHY="registry ${IMG_API} sends clients for a token to '${realm}', not an https address; refusing to send credentials there"
        IMG_FIX="configure the registry's token realm with https"
        return 1
      fi
      rc=0; out=$(img_curl "${auth}" "${realm}" -G --data-urlencode "service=${service}" \
        --data-urlencode "scope=${scope:-repository:${IMG_REPO}:pull}" "${ca_args[@]}") || rc=$?
      if ((rc != 0)); then img_curl_failed "${rc}" "${ca:+the CA in REGISTRY_CA_FILE}"; IMG_WHY="token service: ${IMG_WHY}"; return 1; fi
      code="${out##*$'\n'}"
      if [[ "${code}" != 200 ]]; then
        IMG_WHY="the token service ${realm} of registry ${IMG_API} refused ${who/#user /the credentials of user } (HTTP ${code})"
        IMG_FIX="check REGISTRY_USER and the password in REGISTRY_PASSWORD_FILE"
        return 1
      fi
      token=$(sed -nE 's/.*"(token|access_token)"[[:space:]]*:[[:space:]]*"([^"]+)".*/\2/p' <<<"${out%$'\n'*}" | head -n1)
      if [[ -z "${token}" ]]; then
        IMG_WHY="the token service ${realm} answered without a token"
        IMG_FIX="check the registry's token service"
        return 1
      fi
      rc=0; out=$(img_curl "bearer:${token}" "${url}" -I -H "Accept: ${IMG_ACCEPT}" "${ca_args[@]}") || rc=$?
      if ((rc != 0)); then img_curl_failed "${rc}" "${ca:+the CA in REGISTRY_CA_FILE}"; return 1; fi
      code="${out##*$'\n'}"
      if [[ "${code}" == 401 || "${code}" == 403 ]]; then
        IMG_WHY="registry ${IMG_API} gives ${who} no pull access to ${IMG_REPO} (HTTP ${code} with a token): the repository does not exist, or the credentials may not pull it"
        IMG_FIX="push the image to ${IMG_HOST}/${IMG_REPO}, or give ${who} pull access (REGISTRY_USER, REGISTRY_PASSWORD_FILE)"
        return 1
      fi
    fi
  fi
  case "${code}" in
    200) return 0 ;;
    401|403)
      if [[ "${auth}" == basic ]]; then
        IMG_WHY="registry ${IMG_API} refused the credentials of user ${REGISTRY_USER} (HTTP ${code})"
        IMG_FIX="check REGISTRY_USER and the password in REGISTRY_PASSWORD_FILE (htpasswd entries must be bcrypt: htpasswd -B)"
      else
        IMG_WHY="registry ${IMG_API} requires credentials (HTTP ${code}) but REGISTRY_USER is not set"
        IMG_FIX="set REGISTRY_USER and REGISTRY_PASSWORD_FILE (a 0600 file holding the password)"
      fi ;;
    404) IMG_WHY="${ref} is not in registry ${IMG_API} (HTTP 404: manifest unknown; the tag was not pushed?)"
         IMG_FIX="" ;;
    *) IMG_WHY="HEAD /v2/${IMG_REPO}/manifests/${IMG_REFERENCE} at registry ${IMG_API} answered HTTP ${code}"
       IMG_FIX="check the registry's logs" ;;
  esac
  return 1
}

check_backend_image() {  # ROLE
  local role="$1" ref="${BACKEND_IMAGE_REF}" rc=0 how
  case "${role}" in
    single|first-server) ;;
    *) gl_check_skip backend-image "role ${role} does not deploy the backend (single and first-server do)"; return 0 ;;
  esac
  img_from_archive "${ref}" || rc=$?
  if ((rc == 0)); then gl_check_pass backend-image "${IMG_NOTE}"; return 0; fi
  if ((rc == 2)); then
    gl_check_fail backend-image "backend image archive unusable: ${IMG_NOTE}" \
      "copy the image archive and its SHA256SUMS again from the release, or remove the stray archive from artifacts/images"
    return 0
  fi
  img_split "${ref}"
  if img_from_registry "${ref}"; then
    gl_check_pass backend-image "${ref} is in registry ${IMG_API} (HEAD /v2/${IMG_REPO}/manifests/${IMG_REFERENCE}: 200${REGISTRY_USER:+ for user ${REGISTRY_USER}})"
    return 0
  fi
  if [[ -n "${REGISTRY}" ]]; then
    how="push the site's GL-Native Execution Backend image to the site registry as ${ref} (e.g. skopeo copy oci-archive:<archive> docker://${ref})"
  else
    how="set REGISTRY=<host:port> of the site registry and push the site's GL-Native Execution Backend image there as <host:port>/${IMG_REPO}${IMG_REFERENCE:+$([[ "${IMG_REFERENCE}" == sha256:* ]] && echo @ || echo :)${IMG_REFERENCE}}"
  fi
  gl_check_fail backend-image "backend image ${ref} cannot be had: ${IMG_NOTE}, and ${IMG_WHY}; the deploy would apply manifests for an image that cannot be pulled and fail only after its rollout wait" \
    "${IMG_FIX:+${IMG_FIX}. }BACKEND_IMAGE must name the site's own backend image: ${how}, or ship its archive in the bundle's artifacts/images with a SHA256SUMS listing it; to try the flow with the project's sample backend, run with --sample-image"
}
