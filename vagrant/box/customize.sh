#!/bin/bash
# mmdebstrap customize hook for the GL-Native lab box: users, network, ssh, boot speed-ups.
# Called as: customize.sh ROOTDIR VAGRANT_PUBKEY_FILE
set -euo pipefail
root=$1
pubkey=$2

echo "gldeploy-box" >"$root/etc/hostname"
cat >"$root/etc/hosts" <<'HOSTS'
127.0.0.1 localhost
127.0.1.1 gldeploy-box
::1 localhost ip6-localhost ip6-loopback
HOSTS

# Network: systemd-networkd, DHCP on the management NIC (eth0); Vagrant adds eth1 itself.
mkdir -p "$root/etc/systemd/network"
cat >"$root/etc/systemd/network/10-eth0.network" <<'NET'
[Match]
Name=eth0

[Network]
DHCP=ipv4
NET
chroot "$root" systemctl enable systemd-networkd.service
# network-online.target must mean "IPv4 addresses configured", as on a real host: keepalived (the API VIP)
# is ordered after it and enters FAULT for good when it starts before its unicast_src_ip exists (seen in
# the cluster lab after a power-off while this unit was masked). --ipv4: the isolated eth1 never gets an
# IPv6 router advert, so waiting for "configured" would take ~10 s. The target is reached at boot (sshd,
# and so `vagrant up`, does not wait for it): a later `systemctl start k3s` finds it active and starts at once.
mkdir -p "$root/etc/systemd/system/systemd-networkd-wait-online.service.d"
cat >"$root/etc/systemd/system/systemd-networkd-wait-online.service.d/10-lab.conf" <<'WAIT'
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --ipv4 --timeout=60
WAIT
chroot "$root" systemctl add-wants multi-user.target network-online.target
chroot "$root" systemctl enable systemd-networkd-wait-online.service
chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer 2>/dev/null || true

# The vagrant user: passwordless sudo and Vagrant's insecure public key (lab only).
chroot "$root" useradd --create-home --shell /bin/bash --user-group vagrant
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' >"$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"
install -d -m 0700 "$root/home/vagrant/.ssh"
install -m 0600 "$pubkey" "$root/home/vagrant/.ssh/authorized_keys"
chroot "$root" chown -R vagrant:vagrant /home/vagrant/.ssh

# sshd: no reverse DNS (no resolver in an isolated lab).
echo 'UseDNS no' >"$root/etc/ssh/sshd_config.d/10-lab.conf"

# First boot makes a fresh machine-id (k3s and flannel need unique ones).
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
rm -f "$root/etc/resolv.conf"
echo "# no DNS in the isolated lab" >"$root/etc/resolv.conf"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* "$root/usr/share/doc/"* \
       "$root/usr/share/man/"* "$root/usr/share/locale/"*

# haproxy and keepalived come installed but stay off until the deploy configures a node as a load
# balancer (lib/loadbalancer.sh enables and starts them); nodes that are not load balancers never run them.
chroot "$root" systemctl disable haproxy.service keepalived.service 2>/dev/null || true
