"""繁體中文 (zh-TW) text of the troubleshooting guide: one entry per doctor check, keyed by check name.

docs/zh-TW/troubleshooting.md is generated from the same doctor table as docs/troubleshooting.md
(``python -m gldeploy.doctor --write`` writes both). Each entry carries the fingerprint of the
English symptom, cause and fix it translates (``fingerprint``): when the table's English text
changes, tests/unit/test_docs_i18n.py fails until the translation is updated, so the two guides
cannot drift. Commands, paths, keys and log messages stay as they are (in backticks).
"""
from __future__ import annotations

import hashlib
from typing import NamedTuple


class Entry(NamedTuple):
    """The translation of one doctor check's text, with the fingerprint of the English it translates."""

    source: str
    symptom: str
    cause: str
    fix: str


def fingerprint(symptom: str, cause: str, fix: str) -> str:
    """Short sha256 of the English symptom, cause and fix (what a translation was made from)."""
    return hashlib.sha256("\0".join((symptom, cause, fix)).encode()).hexdigest()[:12]


TITLE = "# 疑難排解"
INTRO = [
    "在出問題的節點上執行 doctor：從控制機執行 `invoke doctor`（所有主機，或以 `--hosts` 指定），",
    "或在產生的目錄中執行 `sudo ./doctor.sh`（叢集主機加上 `--role R`）。doctor 只讀取、不變更任何東西。",
    "`--json` 輸出一個物件，每項檢查帶有狀態、訊息、症狀、原因、修正方式與耗時；結束碼為最嚴重的結果",
    "（0 正常、3 警告、1 失敗、2 輸入錯誤）。需要 k3s 的檢查會說明略過的原因（未安裝、未執行、`needs real k3s`）。",
    "`doctor.sh --bundle DIR` 另外寫出一個供支援請求使用的封存檔：檢查結果、最近數小時（`--since`）的 k3s、",
    "HAProxy、Keepalived 與 registry 日誌、已遮蔽所有秘密的設定檔、版本與主機資訊。",
]
HEADER = "| 症狀 | 檢查 | 修正 |"
LABELS = {"symptom": "症狀", "check": "檢查", "cause": "可能原因", "fix": "修正"}
ALL_ROLES = "所有角色"
NEEDS_TEXT = {"none": "無", "installed": "已安裝 k3s", "running": "k3s 執行中", "real": "真實 k3s 且執行中"}

ZH: dict[str, Entry] = {
    "k3s-installed": Entry(
        "bea39a39f5a1",
        "`k3s: command not found`、沒有 k3s 服務、節點上沒有 `kubectl`",
        "此主機從未安裝 k3s，或已被移除（k3s-uninstall.sh；agent 上為 k3s-agent-uninstall.sh）",
        "以安裝階段安裝：單節點 `02_install_k3s.sh --role single`（invoke install-k3s）；叢集 `02_init_control_plane."
        "sh` / `03_join_worker_node.sh`（invoke cluster.init）"),
    "k3s-service": Entry(
        "18834993360e",
        "`The connection to the server 127.0.0.1:6443 was refused`；此節點上的 pod 不再更新",
        "k3s 服務已停止或不斷當掉（config.yaml 錯誤、連接埠被占用、磁碟已滿、時鐘偏差）",
        "啟動它（`systemctl start k3s`；agent 上為 `systemctl start k3s-agent`，k3s 如此命名 agent 的服務；"
        "沒有 systemd 時再執行一次安裝階段，它會啟動已停止的 k3s），並查看停止原因：`journalctl -u k3s -n 200`"
        "（agent：`journalctl -u k3s-agent -n 200`）或 /var/log/k3s.log"),
    "api-ping": Entry(
        "8ee605307841",
        "k3s 服務雖為 active，kubectl 仍逾時或被拒絕",
        "k3s 仍在啟動中、監聽的連接埠不是 API_PORT，或其 API 卡住（etcd 失去 quorum、磁碟已滿）",
        "`curl -k https://127.0.0.1:6443/ping` 必須回應 `pong`；檢查 /etc/rancher/k3s/config.yaml 中的 `https-listen-"
        "port`，再以 `journalctl -u k3s` 查看 etcd 或儲存裝置錯誤"),
    "port-conflict": Entry(
        "ad956e35bba8",
        "k3s 無法啟動；日誌顯示 `listen tcp :6443: bind: address already in use`（或 :10250、:2379、:2380）",
        "另一個程序占用了 k3s 需要的連接埠：API_PORT（server）、10250（kubelet）、2379-2380（etcd，叢集 server）",
        "以 `ss -ltnp 'sport = :6443'` 找出占用者並停止或移走它（或改選另一個 API_PORT 後重新部署）；然後重"
        "新啟動 k3s"),
    "disk-pressure": Entry(
        "faf80749bed4",
        "pod 被 `Evicted`、節點狀態 `DiskPressure`、映像檔拉取失敗並顯示 `no space left on device`",
        "/var/lib/rancher 下的可用空間或 inode 低於 kubelet 的驅逐門檻（imagefs.available 15%、nodefs.available "
        "10%、inodes 5%）",
        "釋放空間：`k3s crictl rmi --prune`、`journalctl --vacuum-size=200M`、刪除 /var/log 下的舊檔；或擴充"
        "掛載於 /var/lib/rancher 的磁碟區。至少保留 25% 可用空間"),
    "memory-pressure": Entry(
        "67c8c44e22c6",
        "pod 被 `OOMKilled` 或 `Evicted`、節點狀態 `MemoryPressure`、主機大量使用 swap 或停止回應",
        "可用記憶體低於 kubelet 的驅逐門檻（memory.available 100Mi）或少於 RAM 的 10%",
        "找出耗用者（`ps aux --sort=-rss | head`、`k3s kubectl top pods -A`），減少副本數或設定記憶體上限，"
        "或增加 RAM"),
    "evictions": Entry(
        "1fea197077ad",
        "pod 處於 `Evicted` 狀態；節點回報 MemoryPressure、DiskPressure 或 PIDPressure",
        "某個節點的記憶體、磁碟或程序 ID 用盡，kubelet 驅逐 pod 以求恢復",
        "先解決資源壓力（見 disk-pressure、memory-pressure），再刪除被驅逐的 pod：`k3s kubectl delete pods "
        "-A --field-selector=status.phase=Failed`"),
    "clock-sync": Entry(
        "e3b588090545",
        "`x509: certificate has expired or is not yet valid`、節點在 NotReady 間反覆切換、etcd 出現 `clock "
        "difference` 警告",
        "系統時鐘未經 NTP 同步（chrony 或 systemd-timesyncd 已停止，或無可連線的時間伺服器）",
        "對此主機可連線的 NTP 伺服器啟用時間同步（chrony：在 /etc/chrony/chrony.conf 加入 `server <ntp-host> "
        "iburst`，`systemctl enable --now chrony`；systemd：`timedatectl set-ntp true`）；離線站點：使用 bastion "
        "的 NTP 伺服器"),
    "clock-cert-skew": Entry(
        "700ed27d4ae2",
        "重新開機或節點加入後，k3s 日誌或 kubectl 立即出現 `x509: certificate has expired or is not yet valid`",
        "此主機的時鐘早於叢集憑證的簽發時間（或遠晚於其到期時間）：錯的是時鐘，不是憑證",
        "把時鐘調正並保持同步（見 clock-sync：`chronyc makestep`），然後重新啟動 k3s；不要為此輪替憑證"),
    "cert-expiry": Entry(
        "c8d20a785a2b",
        "kubectl 或節點之間出現 `x509: certificate has expired`；長時間停機後 k3s 無法啟動",
        "某個 k3s 憑證（API 服務、用戶端、etcd、kubelet）即將或已經到期；k3s 只在啟動時、剩餘不到 90 天時更"
        "新末端憑證",
        "重新啟動 k3s 以更新末端憑證（`systemctl restart k3s`；agent 上為 `systemctl restart k3s-agent`），"
        "或在 k3s 停止時執行 `k3s certificate rotate`；"
        "即將到期的 CA 需要 `k3s certificate rotate-ca`"),
    "registry-reachable": Entry(
        "a8585037620c",
        "pod 處於 `ErrImagePull` / `ImagePullBackOff`，並顯示 `dial tcp ...: connect: connection refused`、"
        "`i/o timeout` 或 `no such host`",
        "registry（REGISTRY）已停止、名稱無法解析，或防火牆阻擋此節點連到它",
        "檢查 registry 主機上的服務、從此節點執行 `curl -v https://<REGISTRY>/v2/`、其名稱的 DNS 或 /etc/hosts，"
        "以及節點與 registry 之間的防火牆"),
    "registry-ca": Entry(
        "d3f432005ff9",
        "拉取失敗並顯示 `x509: certificate signed by unknown authority`",
        "registry 的憑證不是由此節點信任的 CA 所簽（REGISTRY_CA_FILE 錯誤，或未安裝於 /etc/rancher/k3s/registry-ca.cr"
        "t）",
        "將 REGISTRY_CA_FILE 設為簽發 registry 憑證的 CA，再執行一次安裝階段（它會寫入 registries.yaml 與 CA）"
        "，然後重新啟動 k3s"),
    "registry-auth": Entry(
        "a91fce77e402",
        "拉取失敗並顯示 `401 Unauthorized` 或 `pull access denied ... authorization failed`",
        "REGISTRY_USER / REGISTRY_PASSWORD_FILE 中的密碼錯誤、缺少，或未寫入 /etc/rancher/k3s/registries.yaml",
        "測試帳密：`curl --cacert <ca> -u <user> https://<REGISTRY>/v2/`；修正密碼檔（權限 0600），再執行一"
        "次安裝階段以重寫 registries.yaml；重新啟動 k3s"),
    "registry-image": Entry(
        "338c1e1c475a",
        "拉取後端映像檔失敗並顯示 `manifest unknown` 或 `not found`",
        "BACKEND_IMAGE:BACKEND_VERSION 從未推送到本地 registry（或以其他名稱或標籤推送）",
        "推送它（離線套件中的映像檔封存：`skopeo copy oci-archive:<archive> docker://<REGISTRY>/<image>:<tag>`）"
        "，或修正 BACKEND_IMAGE / BACKEND_VERSION"),
    "image-pulls": Entry(
        "6158abdeb9d4",
        "pod 卡在 `ErrImagePull` / `ImagePullBackOff` / `ContainerCreating`",
        "有映像檔無法拉取：原因見 registry-reachable、registry-ca、registry-auth 與 registry-image；或離線節"
        "點未匯入該映像檔",
        "`k3s kubectl -n <ns> describe pod <pod>` 會顯示拉取錯誤；修正 registry 的問題，或匯入映像檔封存（`k3s "
        "ctr images import <archive>`）"),
    "cni-config": Entry(
        "610714898626",
        "pod 沒有取得 IP，或位址不在 CLUSTER_CIDR 內；服務無法連線",
        "/etc/rancher/k3s/config.yaml 中的 cluster-cidr / service-cidr 與設定不符，或曾被手動修改",
        "執行中的叢集不能變更 CLUSTER_CIDR 與 SERVICE_CIDR：再執行一次安裝階段以還原 config.yaml；要換網段必"
        "須重新安裝"),
    "cni-network": Entry(
        "796ff48ae04c",
        "不同節點上的 pod 無法互通；`kube-flannel` 出錯，沒有 `flannel.1` 介面",
        "此節點的 CNI 未設定好：/var/lib/rancher/k3s/agent/etc/cni/net.d 中沒有 CNI 設定、flannel 的子網路與"
        " CLUSTER_CIDR 不符，或缺少 VXLAN 裝置",
        "重新啟動 k3s 以重寫 CNI 設定；在所有節點之間開放 8472/udp（flannel VXLAN）；查看 `journalctl -u k3s "
        "| grep -i flannel`（agent 上為 `journalctl -u k3s-agent`）"),
    "node-ports": Entry(
        "2effe65f16a2",
        "加入節點卡住、`kubectl logs/exec` 逾時、etcd 成員無法連線、其他節點上的 pod 無法連線",
        "節點之間的防火牆或路由問題：API 連接埠、10250/tcp（kubelet）、2379-2380/tcp（etcd，server）或 8472/udp（"
        "flannel VXLAN）被阻擋",
        "在每一對節點之間開放 API_PORT/tcp、10250/tcp、2379-2380/tcp（server）與 8472/udp（firewalld：`firewall-cmd "
        "--permanent --add-port=...`；ufw：`ufw allow ...`）；以 `ip route get <node>` 檢查路由"),
    "etcd-health": Entry(
        "7b2f6fa21c04",
        "API 回應緩慢，或回應 `etcdserver: request timed out`、`etcdserver: no leader`；寫入失敗",
        "etcd 失去 quorum（健康成員少於半數加一）或某個成員不健康（磁碟延遲、時鐘、網路）",
        "讓缺少的 server 恢復（奇數台，至少 3 台）；無法恢復的成員：先執行 `k3s etcd-snapshot`，再移除它並加"
        "入一台新的 server；全部遺失時：以 `k3s server --cluster-reset --cluster-reset-restore-path=<snapshot>` "
        "還原"),
    "vip-held": Entry(
        "d4353ae34be2",
        "經由 API_VIP 的 agent 與 kubectl 逾時；經由 VIP 加入節點失敗",
        "沒有任何主機持有 API VIP（所有負載平衡器上的 Keepalived 都已停止，或每處健康檢查都失敗），或 HAProxy "
        "在其上沒有回應",
        "在負載平衡器上執行 `systemctl status keepalived haproxy`；`ip -o addr | grep <API_VIP>` 顯示持有者"
        "；`journalctl -u keepalived` 說明節點為何放棄 VIP"),
    "vip-duplicate": Entry(
        "4f00b99a4ce1",
        "經由 VIP 的 API 請求隨機失敗；VIP 的 ARP 項目在不同 MAC 之間跳動",
        "VIP 同時被兩台主機持有（腦裂）：負載平衡器之間的 VRRP 通告被阻擋，或兩組 Keepalived 使用相同的 virtual_route"
        "r_id",
        "在負載平衡器之間允許 VRRP（IP 協定 112），讓每個叢集有自己的 virtual_router_id，然後在不應持有 VIP "
        "的主機上重新啟動 keepalived"),
    "config-drift": Entry(
        "40e474687f6d",
        "各 server 行為不一致；一次部署意外重寫 config.yaml 並重新啟動 k3s",
        "/etc/rancher/k3s/config.yaml 與設定產生的內容不同，或 server 之間的叢集層級設定不同（手動修改、只部"
        "署了一部分）",
        "在偏離的主機上再執行一次安裝階段（它會依設定重寫 config.yaml），或修改設定後重新部署每一台 server；"
        "以 `doctor.sh --compare <other server's config.yaml>` 比較各 server"),
    "dns": Entry(
        "3791627fbf24",
        "CoreDNS 轉送時出現 `i/o timeout`、pod 無法解析外部名稱、registry 出現 `no such host`",
        "/etc/resolv.conf 中沒有會回應的 nameserver、只有 loopback 解析器（CoreDNS 會轉送給自己），或 registry "
        "名稱無法解析",
        "讓 /etc/resolv.conf 指向會回應的 DNS 伺服器（離線站點：站點內部 DNS）；使用 loopback 解析器時給 k3s "
        "一個真正的（`resolv-conf: /etc/k3s-resolv.conf`）；把 registry 加入 DNS 或 /etc/hosts"),
    "airgap-deps": Entry(
        "c48b299e0f57",
        "在離線站點上，系統 pod 停在 `ContainerCreating` / `ImagePullBackOff`；拉取請求連往網際網路",
        "此節點缺少離線安裝的相依項目：k3s airgap 映像檔、/etc/rancher/k3s/registries.yaml、registry CA，或"
        "負載平衡器套件",
        "從套件複製缺少的檔案（artifacts/k3s/k3s-airgap-images-<arch>.tar* 複製到 /var/lib/rancher/k3s/agent/images/）"
        "，或從完整的套件再執行一次安裝階段（先以 `sha256sum -c SHA256SUMS` 驗證）"),
}

__all__ = ["ALL_ROLES", "Entry", "HEADER", "INTRO", "LABELS", "NEEDS_TEXT", "TITLE", "ZH", "fingerprint"]
