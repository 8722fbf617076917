"""繁體中文 (zh-TW) text of the configuration reference: one doc string per settings key, keyed by key name.

docs/zh-TW/configuration.md is generated from the same key table as docs/configuration.md
(``invoke settings.docs`` writes both). Each entry carries the fingerprint of the English doc it
translates: when a key's English doc changes, or a key is added, tests/unit/test_docs_i18n.py fails
until the translation is brought up to date, so the two references cannot drift.
"""
from __future__ import annotations

import hashlib
from typing import NamedTuple


class Entry(NamedTuple):
    """The translation of one key's doc, with the fingerprint of the English doc it translates."""

    source: str
    doc: str


def fingerprint(doc: str) -> str:
    """Short sha256 of the English doc string a translation was made from."""
    return hashlib.sha256(doc.encode()).hexdigest()[:12]


TITLE = "# 設定參考"
INTRO = [
    "設定的來源依優先順序由低至高為：下表的預設值、env 檔（`--env`，由 gldeploy 解析 KEY=VALUE 行，絕不以 shell "
    "source 執行）、環境變數（`GL_<KEY>`），以及 `--set KEY=VALUE` 參數。`invoke settings.show --env FILE` "
    "會列出每個解析後的值及其來源。",
    "",
    "秘密資訊（join token、registry 密碼）絕不作為值填寫：請以 `*_FILE` 設定鍵指向權限 0600 的檔案。",
]
HEADER = "| 設定鍵 | 類型 | 預設值 | 說明 | 範例 |"
EMPTY = "（空）"

ZH: dict[str, Entry] = {
    "TOPOLOGY": Entry(
        "ec793a851f63",
        "single：一台 k3s server；ha：奇數台（>= 3）內嵌 etcd 的 server，位於 API_VIP 之後"),
    "K3S_VERSION": Entry(
        "465a448d9224",
        "固定的 k3s 發行版本"),
    "K3S_SHA256": Entry(
        "fb77b4c7f665",
        "k3s 執行檔預期的 sha256；設定時，除了發行檔的 sha256sum 清單之外也必須相符"),
    "K3S_ARTIFACTS_DIR": Entry(
        "52289864bce0",
        "依 k3s 發行檔方式排列的本機目錄（k3s、sha256sum-amd64.txt、可選的 k3s-airgap-images-amd64.tar*）；"
        "空 = 從 K3S_RELEASE_URL 下載"),
    "K3S_RELEASE_URL": Entry(
        "2c5118a70785",
        "k3s 發行檔的基礎 URL（後接版本，'+' 寫為 %2B）；純 http://（連往本機以外者）只能與 K3S_SHA256 一起"
        "使用"),
    "K3S_ARCH": Entry(
        "9f55c390e660",
        "主機的 CPU 架構"),
    "CLUSTER_CIDR": Entry(
        "f2e1f6af9528",
        "Pod 網段（k3s cluster-cidr）"),
    "SERVICE_CIDR": Entry(
        "a5ed13c789d6",
        "Service 網段（k3s service-cidr）"),
    "CONTROL_PLANE_IPS": Entry(
        "9eede79453de",
        "k3s server 位址，第一個為第一台 server；須為 unicast、非 loopback（--hosts local 代表本機）"),
    "WORKER_IPS": Entry(
        "511772e293fb",
        "k3s agent 位址"),
    "API_VIP": Entry(
        "64e03356f7c7",
        "API 的虛擬 IP（HA）；會加入 tls-san"),
    "API_PORT": Entry(
        "12312104699a",
        "k3s API / supervisor 連接埠"),
    "K3S_DISABLE": Entry(
        "a70b144dfc75",
        "要停用的 k3s 內建元件（coredns、servicelb、traefik、local-storage、metrics-server；runtimes 自 v1.28.5+k3s1/"
        "v1.29.0+k3s1 起）；請保留 traefik 與 servicelb，它們在 80/443 連接埠發布後端 Ingress"),
    "SECRETS_ENCRYPTION": Entry(
        "8a8ad15c23a3",
        "靜態加密 Secret（k3s secrets-encryption）"),
    "K3S_TOKEN_FILE": Entry(
        "d8ba86c19e88",
        "存放叢集 join token 的檔案（權限 0600）：一組密碼（server 與 agent），或 K10<CA hash>::server:<password> "
        "形式的 token（僅加入的節點）；空 = 由第一台 server 上的 k3s 產生"),
    "NAMESPACE": Entry(
        "3b289d70ab90",
        "GL-Native Execution Backend 的命名空間"),
    "BACKEND_VERSION": Entry(
        "fb106cb87c3c",
        "後端版本（映像檔標籤、/version 的回應）"),
    "BACKEND_IMAGE": Entry(
        "abece938d7b6",
        "後端映像檔 repository（不含標籤），或以 repo@sha256:<digest> 固定映像檔（此時 BACKEND_VERSION 只作"
        "為標示）"),
    "BACKEND_IMAGE_ARCHIVE": Entry(
        "834873d4dcdd",
        "站點自備的 BACKEND_IMAGE 映像檔 OCI 或 docker 封存檔（docker save／skopeo copy oci-archive:...），"
        "放入 bundle 的 artifacts/images，並在部署後端的主機上匯入；留空＝使用範例映像檔（實驗環境）或由 "
        "registry 拉取"),
    "BACKEND_REPLICAS": Entry(
        "77e00fe47917",
        "後端副本數"),
    "BACKEND_INGRESS_HOST": Entry(
        "240c5f45adb5",
        "後端 Ingress（Traefik）的主機名稱"),
    "BACKEND_TLS_SECRET": Entry(
        "c1cfec4d5def",
        "NAMESPACE 中供後端 Ingress 使用的 kubernetes.io/tls Secret（由內部 CA 簽發）；空 = 不使用 TLS"),
    "REGISTRY": Entry(
        "625dbf10cc32",
        "映像檔的私有 registry host[:port]；空 = 不使用"),
    "REGISTRY_USER": Entry(
        "666fc00dd66e",
        "Registry 使用者（basic auth）；不可含 ':'"),
    "REGISTRY_PASSWORD_FILE": Entry(
        "31443438e4c1",
        "存放 registry 密碼的檔案（權限 0600）"),
    "REGISTRY_CA_FILE": Entry(
        "5f2938873384",
        "簽發 registry TLS 憑證的 CA 憑證（PEM）"),
    "REGISTRY_KIND": Entry(
        "30bddd91e4a8",
        "站點 registry：distribution（由 bastion 階段在 BASTION_IP 上執行的 Docker Distribution v2）或 harbor"
        "（既有的 Harbor；REGISTRY 為其端點，REGISTRY_PROJECT 為其專案）"),
    "REGISTRY_PROJECT": Entry(
        "123d57624258",
        "所有鏡像映像檔在 registry 中所屬的專案（路徑前綴）（Harbor：必要）；空 = registry 根目錄"),
    "BASTION_IP": Entry(
        "3d298a45f3e6",
        "離線站點中執行站點服務（registry、NTP、DNS、CA 發佈）的 bastion 主機；空 = 不使用 bastion"),
    "SITE_SUBNET": Entry(
        "4a7790d1bf75",
        "允許使用 bastion 的 NTP 與 DNS 伺服器的站點網段；空 = BASTION_IP 所在的 /24"),
    "SITE_CA_DIR": Entry(
        "60298c719df9",
        "由 'invoke ca.init' 寫入的目錄：ca.crt、registry.crt 與 registry.key（0600）；bastion 以它們提供 registry "
        "服務"),
    "SITE_PACKAGES_DIR": Entry(
        "a9516cf249dc",
        "bastion 離線安裝的 .deb 檔所在目錄（docker-registry、apache2-utils、skopeo、chrony、dnsmasq 及其相依套件，"
        "以 'apt-get download' 取得）"),
    "SITE_IMAGES_DIR": Entry(
        "b47f8d9e0e58",
        "bastion 匯入 registry 的 OCI 映像檔封存所在目錄（*.oci.tar，每個封存以 io.containerd.image.name 標明其映像檔）"),
    "SITE_TIMEZONE": Entry(
        "9b669d96b55d",
        "每個節點與 bastion 的時區（tz 資料庫名稱）；預檢會確認每個節點都使用它"),
    "SITE_NTP_PORT": Entry(
        "037df0009398",
        "bastion 的 NTP 伺服器（chrony）的 UDP 連接埠"),
    "SITE_MAX_CLOCK_SKEW_MS": Entry(
        "f570ec9393cf",
        "節點與站點 NTP 伺服器之間允許的最大時鐘偏差，單位為毫秒"),
    "SITE_DNS": Entry(
        "60be6fbf17ba",
        "節點解析站點名稱的方式：dnsmasq 於 bastion 上（作為節點的解析器），或 hosts（名稱寫入每個 /etc/hosts）"),
    "SITE_DNS_PORT": Entry(
        "001aa7b747d3",
        "bastion 的 DNS 伺服器（dnsmasq）的連接埠"),
    "SITE_API_NAME": Entry(
        "9606f8f360e0",
        "站點 DNS 提供的 Kubernetes API DNS 名稱（API_VIP，否則為第一台 server）；會加入站點解析的名稱中"),
    "SSH_USER": Entry(
        "c4dd9babd2b4",
        "主機上的 SSH 使用者，須為 POSIX 使用者名稱（非 root 時使用 sudo）"),
    "SSH_KEY": Entry(
        "ad470be2d338",
        "SSH 私鑰（路徑不可含控制字元、不可以 '-' 開頭）；空 = 使用 ssh 本身的預設值"),
    "SSH_CONFIG": Entry(
        "f65985e88583",
        "要使用的 ssh_config 檔（Host 別名、ProxyJump 跳板機）；路徑不可含控制字元、不可以 '-' 開頭"),
    "MIN_CPU": Entry(
        "2f3114631b9d",
        "最少 CPU 數；0 = 依角色預設（single 2、server 4、worker 8）"),
    "MIN_MEMORY_MB": Entry(
        "cee66e29bcc1",
        "最少 RAM（MiB）；0 = 依角色預設（single 4096、server 8192、worker 16384）"),
    "MIN_DISK_GB": Entry(
        "44f59dfe4342",
        "/var/lib/rancher 下最少可用空間（GiB）；0 = 依角色預設（single 50、server 100、worker 200）"),
    "ROLLOUT_TIMEOUT": Entry(
        "3ad743102ce2",
        "等待後端 rollout 的秒數"),
    "HEALTH_TIMEOUT": Entry(
        "5ac661d729d6",
        "等待節點 Ready 與 pod 的秒數"),
    "ETCD_SNAPSHOT_SCHEDULE": Entry(
        "d4054ebb6f5d",
        "叢集（TOPOLOGY=ha，內嵌 etcd）的各 server 建立 etcd 快照的時間排程（k3s etcd-snapshot-schedule-cron）"),
    "ETCD_SNAPSHOT_RETENTION": Entry(
        "b604e5501aec",
        "每個 server 保留的排程 etcd 快照數量（k3s etcd-snapshot-retention）"),
    "CNI": Entry(
        "b6eb57f18cd3",
        "叢集網路外掛（HA）；calico/cilium 會讓 02 在安裝時設定 flannel-backend: none 與 disable-network-policy，"
        "並由 04_install_cni 套用套件中該外掛的 manifest"),
    "CILIUM_KUBE_PROXY_REPLACEMENT": Entry(
        "f3c3729ce525",
        "CNI=cilium 時：由 Cilium 取代 kube-proxy（k3s disable-kube-proxy）"),
    "API_VIP_PREFIX": Entry(
        "c69ce37f1a7b",
        "負載平衡器節點所在網路的前綴長度；API_VIP 必須位於節點的子網路內"),
    "LB_IPS": Entry(
        "6ca87fd0574e",
        "專用的負載平衡器節點（HAProxy + Keepalived）；空 = 與 CONTROL_PLANE_IPS 共置"),
    "LB_PRIORITIES": Entry(
        "6858d715670c",
        "每個負載平衡器節點的 VRRP 優先權，彼此皆不同；空 = 150,140,130,..."),
    "LB_PORT": Entry(
        "f1a3bdd4ca5d",
        "API VIP 的 HAProxy 前端連接埠；0 = 專用節點上為 API_PORT，共置時為 API_PORT+10000（絕不使用 k3s 自"
        "己的連接埠）"),
    "LB_INTERFACE": Entry(
        "aea12e091b82",
        "承載節點位址與 VIP 的網路介面（HA），例如 eth1"),
    "LB_VRRP_ROUTER_ID": Entry(
        "5b7f76cc19c0",
        "VRRP virtual router id，在同一網段內須唯一"),
    "LB_VRRP_PASSWORD_FILE": Entry(
        "86d034562e36",
        "存放 VRRP 密碼（1-8 個字元）的檔案（權限 0600）；TOPOLOGY=ha 時必要"),
    "LB_PREEMPT": Entry(
        "abaee442ac73",
        "恢復的高優先權節點會搶回 VIP（每次移動都會中斷 watch 與 agent 通道，因此預設關閉）"),
    "LB_ADVERT_INT": Entry(
        "1dff956eadc5",
        "VRRP 通告之間的秒數"),
    "LB_PACKAGES_DIR": Entry(
        "b8b52b2f9ce2",
        "供沒有套件庫的負載平衡節點使用的 haproxy 與 keepalived 套件目錄（.deb 或 .rpm，含相依套件）；隨 "
        "bundle 一併傳送（artifacts/lb-packages）；留空＝使用作業系統的套件庫"),
    "WORK_DIR": Entry(
        "2962e1be71c0",
        "每台主機上存放腳本、env 與 artifacts 的目錄；每次部署都會取代其內容，因此請給它專用目錄：絕對路徑、"
        "已正規化、不可為系統、家目錄或 k3s 目錄（含有其他檔案的目錄會被拒絕）"),
}

__all__ = ["EMPTY", "Entry", "HEADER", "INTRO", "TITLE", "ZH", "fingerprint"]
