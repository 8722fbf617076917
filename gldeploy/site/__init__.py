"""Air-gapped site services: the internal CA, the registry mirrors every node gets, the bastion's
service configurations (registry, chrony, dnsmasq) and the dependency checklist."""
