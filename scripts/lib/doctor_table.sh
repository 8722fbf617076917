#!/usr/bin/env bash
# lib/doctor_table.sh: THE table of doctor checks, as data. One record per check, in run order:
#   check:    name (the check's name in the report; doctor_check_<name, - as _> in lib/doctor_checks.sh)
#   roles:    the roles it runs on (all = single first-server server agent)
#   needs:    none | installed | running | real  (what k3s it needs; otherwise it is skipped with the reason)
#   symptom:  what the operator sees
#   cause:    the probable cause when the check fails
#   fix:      the documented fix
# doctor.sh reads it (offline, no Python); gldeploy/doctor.py reads the same text to generate
# docs/troubleshooting.md and the invoke task's help, so the guide and the script cannot drift.
# A value is one line; a blank line ends a record. Sourced after lib/common.sh.
# shellcheck disable=SC2034  # the arrays are used by lib/doctor_checks.sh

read -r -d '' DOCTOR_TABLE <<'GL_DOCTOR_TABLE' || true
check: k3s-installed
roles: all
needs: none
symptom: `k3s: command not found`, no k3s service, `kubectl` missing on the node
cause: k3s was never installed on this host, or was removed (k3s-uninstall.sh; on an agent k3s-agent-uninstall.sh)
fix: install it with the install phase: single node `02_install_k3s.sh --role single` (invoke install-k3s); cluster `02_init_control_plane.sh` / `03_join_worker_node.sh` (invoke cluster.init)

check: k3s-service
roles: all
needs: installed
symptom: `The connection to the server 127.0.0.1:6443 was refused`; pods on this node stop being updated
cause: the k3s service is stopped or keeps crashing (bad config.yaml, port taken, disk full, clock skew)
fix: start it (`systemctl start k3s`; on an agent `systemctl start k3s-agent`, as k3s names an agent's service; without systemd run the install phase again, it starts a stopped k3s) and read why it stopped: `journalctl -u k3s -n 200` (agent: `journalctl -u k3s-agent -n 200`) or /var/log/k3s.log

check: api-ping
roles: single first-server server
needs: running
symptom: kubectl times out or is refused although the k3s service is active
cause: k3s is still starting, listens on another port than API_PORT, or its API is wedged (etcd without quorum, disk full)
fix: `curl -k https://127.0.0.1:6443/ping` must answer `pong`; check `https-listen-port` in /etc/rancher/k3s/config.yaml, then `journalctl -u k3s` for etcd or storage errors

check: port-conflict
roles: all
needs: none
symptom: k3s does not start; its log says `listen tcp :6443: bind: address already in use` (or :10250, :2379, :2380)
cause: another process holds a port k3s needs: API_PORT (servers), 10250 (kubelet), 2379-2380 (etcd, cluster servers)
fix: find the holder with `ss -ltnp 'sport = :6443'` and stop or move it (or choose another API_PORT and redeploy); then restart k3s

check: disk-pressure
roles: all
needs: none
symptom: pods `Evicted`, node condition `DiskPressure`, image pulls failing with `no space left on device`
cause: free space or inodes under /var/lib/rancher below the kubelet's eviction thresholds (imagefs.available 15%, nodefs.available 10%, inodes 5%)
fix: free space: `k3s crictl rmi --prune`, `journalctl --vacuum-size=200M`, remove old files under /var/log; or grow the volume mounted at /var/lib/rancher. Keep at least 25% free

check: memory-pressure
roles: all
needs: none
symptom: pods `OOMKilled` or `Evicted`, node condition `MemoryPressure`, the host swaps or freezes
cause: available memory below the kubelet's eviction threshold (memory.available 100Mi) or under 10% of RAM
fix: find the consumers (`ps aux --sort=-rss | head`, `k3s kubectl top pods -A`), lower replicas or set memory limits, or add RAM

check: evictions
roles: single first-server
needs: real
symptom: pods in state `Evicted`; nodes report MemoryPressure, DiskPressure or PIDPressure
cause: a node ran out of memory, disk or process ids and the kubelet evicted pods to recover
fix: fix the pressure first (see disk-pressure, memory-pressure), then remove the evicted pods: `k3s kubectl delete pods -A --field-selector=status.phase=Failed`

check: clock-sync
roles: all
needs: none
symptom: `x509: certificate has expired or is not yet valid`, nodes flapping NotReady, etcd `clock difference` warnings
cause: the system clock is not synchronised by NTP (chrony or systemd-timesyncd stopped, or no reachable time server)
fix: enable time sync against an NTP server this host can reach (chrony: `server <ntp-host> iburst` in /etc/chrony/chrony.conf, `systemctl enable --now chrony`; systemd: `timedatectl set-ntp true`); air-gapped sites: the bastion's NTP server

check: clock-cert-skew
roles: all
needs: installed
symptom: `x509: certificate has expired or is not yet valid` in the k3s log or from kubectl, right after a reboot or a node join
cause: this host's clock is behind the time the cluster certificates were issued (or far ahead of their end): the clock, not the certificates, is wrong
fix: set the clock right and keep it synchronised (see clock-sync: `chronyc makestep`), then restart k3s; do not rotate certificates for this

check: cert-expiry
roles: all
needs: installed
symptom: `x509: certificate has expired` from kubectl or between nodes; k3s fails to start after a long downtime
cause: a k3s certificate (API serving, client, etcd, kubelet) is near or past its end; k3s renews leaf certificates only at start when fewer than 90 days remain
fix: restart k3s to renew leaf certificates (`systemctl restart k3s`; on an agent `systemctl restart k3s-agent`), or `k3s certificate rotate` while k3s is stopped; a CA near its end needs `k3s certificate rotate-ca`

check: registry-reachable
roles: all
needs: none
symptom: pods in `ErrImagePull` / `ImagePullBackOff` with `dial tcp ...: connect: connection refused`, `i/o timeout` or `no such host`
cause: the registry (REGISTRY) is down, its name does not resolve, or a firewall blocks this node from it
fix: check the registry service on its host, `curl -v https://<REGISTRY>/v2/` from this node, DNS or /etc/hosts for its name, and the firewall between the node and the registry

check: registry-ca
roles: all
needs: none
symptom: pulls fail with `x509: certificate signed by unknown authority`
cause: the registry's certificate is not signed by the CA this node trusts for it (REGISTRY_CA_FILE wrong, or not installed at /etc/rancher/k3s/registry-ca.crt)
fix: set REGISTRY_CA_FILE to the CA that signed the registry certificate and run the install phase again (it writes registries.yaml and the CA), then restart k3s

check: registry-auth
roles: all
needs: none
symptom: pulls fail with `401 Unauthorized` or `pull access denied ... authorization failed`
cause: REGISTRY_USER / the password in REGISTRY_PASSWORD_FILE are wrong, missing, or not written to /etc/rancher/k3s/registries.yaml
fix: test them: `curl --cacert <ca> -u <user> https://<REGISTRY>/v2/`; correct the password file (mode 0600) and run the install phase again so registries.yaml is rewritten; restart k3s

check: registry-image
roles: all
needs: none
symptom: pulls fail with `manifest unknown` or `not found` for the backend image
cause: BACKEND_IMAGE:BACKEND_VERSION was never pushed to the local registry (or under another name or tag)
fix: push it (the air-gap bundle's image archive: `skopeo copy oci-archive:<archive> docker://<REGISTRY>/<image>:<tag>`), or correct BACKEND_IMAGE / BACKEND_VERSION

check: image-pulls
roles: single first-server
needs: real
symptom: pods stuck in `ErrImagePull` / `ImagePullBackOff` / `ContainerCreating`
cause: an image cannot be pulled: see registry-reachable, registry-ca, registry-auth and registry-image for which; air-gapped nodes without the image imported
fix: `k3s kubectl -n <ns> describe pod <pod>` shows the pull error; fix the registry cause, or import the image archive (`k3s ctr images import <archive>`)

check: cni-config
roles: all
needs: installed
symptom: pods get no IP, or addresses outside CLUSTER_CIDR; services unreachable
cause: /etc/rancher/k3s/config.yaml has a cluster-cidr / service-cidr other than the settings, or was edited by hand
fix: CLUSTER_CIDR and SERVICE_CIDR cannot change on a running cluster: restore config.yaml by running the install phase again; a different network needs a reinstall

check: cni-network
roles: all
needs: real
symptom: pods on different nodes cannot reach each other; `kube-flannel` errors, no `flannel.1` interface
cause: the CNI is not set up on this node: no CNI config in /var/lib/rancher/k3s/agent/etc/cni/net.d, flannel's subnet does not match CLUSTER_CIDR, or the VXLAN device is missing
fix: restart k3s to rewrite the CNI config; open 8472/udp (flannel VXLAN) between all nodes; check `journalctl -u k3s | grep -i flannel` (on an agent `journalctl -u k3s-agent`)

check: node-ports
roles: all
needs: none
symptom: joins hang, `kubectl logs/exec` time out, etcd members unreachable, pods on other nodes unreachable
cause: a firewall or routing problem between nodes: the API port, 10250/tcp (kubelet), 2379-2380/tcp (etcd, servers) or 8472/udp (flannel VXLAN) is blocked
fix: open API_PORT/tcp, 10250/tcp, 2379-2380/tcp (servers) and 8472/udp between every pair of nodes (firewalld: `firewall-cmd --permanent --add-port=...`; ufw: `ufw allow ...`); check routes with `ip route get <node>`

check: etcd-health
roles: first-server server
needs: real
symptom: the API answers slowly or with `etcdserver: request timed out`, `etcdserver: no leader`; writes fail
cause: etcd has lost quorum (fewer than half + 1 members healthy) or a member is unhealthy (disk latency, clock, network)
fix: bring the missing servers back (an odd number, at least 3); for a member that cannot return: `k3s etcd-snapshot` first, then remove it and join a fresh server; a total loss: restore with `k3s server --cluster-reset --cluster-reset-restore-path=<snapshot>`

check: vip-held
roles: first-server server
needs: none
symptom: agents and kubectl through API_VIP time out; joins through the VIP fail
cause: no host holds the API VIP (Keepalived stopped on every load balancer, or the health check failed everywhere), or HAProxy does not answer on it
fix: `systemctl status keepalived haproxy` on the load balancers; `ip -o addr | grep <API_VIP>` shows the holder; `journalctl -u keepalived` says why a node gave it up

check: vip-duplicate
roles: first-server server
needs: none
symptom: API requests through the VIP fail at random; ARP entries for the VIP flip between MACs
cause: the VIP is held by two hosts at once (split brain): VRRP adverts between the load balancers are blocked, or two Keepalived groups share the virtual_router_id
fix: allow VRRP (IP protocol 112) between the load balancers, give each cluster its own virtual_router_id, then restart keepalived on the host that should not hold the VIP

check: config-drift
roles: all
needs: installed
symptom: servers behave differently; a deploy unexpectedly rewrites config.yaml and restarts k3s
cause: /etc/rancher/k3s/config.yaml differs from what the settings produce, or cluster-wide keys differ between servers (hand edits, a partial redeploy)
fix: run the install phase again on the drifted host (it rewrites config.yaml from the settings), or change the setting and redeploy every server; compare servers with `doctor.sh --compare <other server's config.yaml>`

check: dns
roles: all
needs: none
symptom: CoreDNS errors `i/o timeout` forwarding, pods cannot resolve outside names, registry `no such host`
cause: /etc/resolv.conf lists no nameserver that answers, only loopback resolvers (CoreDNS would forward to itself), or the registry name does not resolve
fix: point /etc/resolv.conf at a DNS server that answers (air-gapped: the site's internal DNS); with a loopback resolver give k3s a real one (`resolv-conf: /etc/k3s-resolv.conf`); add the registry to DNS or /etc/hosts

check: airgap-deps
roles: all
needs: installed
symptom: on an offline site, system pods stay `ContainerCreating` / `ImagePullBackOff`; pulls go to the internet
cause: a dependency of an air-gapped install is missing on this node: the k3s airgap images, /etc/rancher/k3s/registries.yaml, the registry CA, or the load balancer packages
fix: copy the missing file from the bundle (artifacts/k3s/k3s-airgap-images-<arch>.tar* to /var/lib/rancher/k3s/agent/images/) or run the install phase again from a complete bundle (verify it with `sha256sum -c SHA256SUMS`)
GL_DOCTOR_TABLE

DOCTOR_CHECKS=()
declare -A DOCTOR_ROLES=() DOCTOR_NEEDS=() DOCTOR_SYMPTOM=() DOCTOR_CAUSE=() DOCTOR_FIX=()

# doctor_table_load: parse DOCTOR_TABLE into DOCTOR_CHECKS (order) and the per-check arrays (no forks)
doctor_table_load() {
  local line key value name=""
  DOCTOR_CHECKS=()
  while IFS= read -r line; do
    [[ -n "${line}" ]] || { name=""; continue; }
    key="${line%%:*}" value="${line#*: }"
    case "${key}" in
      check) name="${value}"; DOCTOR_CHECKS+=("${name}") ;;
      roles) DOCTOR_ROLES[${name}]="${value/all/single first-server server agent}" ;;
      needs) DOCTOR_NEEDS[${name}]="${value}" ;;
      symptom) DOCTOR_SYMPTOM[${name}]="${value}" ;;
      cause) DOCTOR_CAUSE[${name}]="${value}" ;;
      fix) DOCTOR_FIX[${name}]="${value}" ;;
      *) fatal "lib/doctor_table.sh: unknown field '${key}' in check ${name:-?}" ;;
    esac
  done <<<"${DOCTOR_TABLE}"
}
