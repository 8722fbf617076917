"""Build the lab's Debian 12 vagrant-libvirt box from Debian packages with mmdebstrap.

No box catalogue is needed: the root filesystem comes from Debian's mirror, the disk is assembled
without mounting anything (sfdisk + mkfs.fat --offset + syslinux + mtools + mkfs.ext4 -d), and the
result is cached under a content hash of its inputs so an unchanged rebuild is a no-op.
"""
from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from gldeploy.artifacts import sha256_file
from gldeploy.errors import DeployError
from gldeploy.lab import shared
from gldeploy.lab.children import Guard
from gldeploy.lab.host import VIRSH
from gldeploy.lab.proc import run, say
from gldeploy.paths import CACHE_DIR, VAGRANT_DIR
from gldeploy.settings import lab_options

BOX_INPUTS = VAGRANT_DIR / "box"
CACHE = CACHE_DIR / "box"
DEFAULT_BOX = shared.load().box
BUILDER_VERSION = "2"  # bump when the assembly below changes in a way the inputs do not show
KEY_FIELD = "gldeploy_key"  # metadata.json field naming the cache key the box was built from
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
DISK_MIB = 4096
BOOT_MIB = 64
SECTOR = 512
P1_START = 2048  # sectors (1 MiB)
INSECURE_KEY = Path("/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/keys/vagrant.pub")


@dataclass(frozen=True)
class BoxResult:
    """What box.build did: the .box path, its size, whether it was built or added now."""

    name: str
    path: Path
    key: str
    built: bool
    added: bool
    seconds: float
    size_bytes: int


def insecure_key() -> Path:
    """Vagrant's insecure public key as shipped by Debian's vagrant package."""
    found = sorted(Path("/usr/share/rubygems-integration/all/gems").glob("vagrant-*/keys/vagrant.pub"))
    if INSECURE_KEY.exists():
        return INSECURE_KEY
    if found:
        return found[-1]
    raise DeployError("Vagrant's insecure public key (keys/vagrant.pub) was not found; "
                      "install Debian's vagrant package (`invoke lab.host-setup`)")


def packages(inputs: Path = BOX_INPUTS) -> list[str]:
    """Package names from packages.txt (comments and blank lines ignored)."""
    lines = (inputs / "packages.txt").read_text().splitlines()
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


def cache_key(inputs: Path = BOX_INPUTS, pubkey: bytes | None = None) -> str:
    """Content hash of everything that shapes the box: input files, suite, mirror, builder version."""
    digest = hashlib.sha256()
    digest.update(f"v={BUILDER_VERSION};suite={SUITE};mirror={MIRROR};disk={DISK_MIB}\n".encode())
    for path in sorted(p for p in inputs.rglob("*") if p.is_file()):
        digest.update(path.relative_to(inputs).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update(pubkey if pubkey is not None else b"")
    return digest.hexdigest()[:16]


def box_listed(name: str) -> bool:
    """True when `vagrant box list` shows `name` for the libvirt provider."""
    out = run(["vagrant", "box", "list", "--machine-readable"], timeout=120, what="vagrant box list").stdout
    names = {ln.split(",")[3] for ln in out.splitlines() if ",box-name," in ln}
    return name in names


def _mtools(args: list[str]) -> None:
    run(args, timeout=120, env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
        what=args[0])


def assemble_disk(rootdir: Path, disk: Path) -> None:
    """Raw MBR disk: FAT16 /boot with syslinux + kernel + initrd, ext4 root populated from rootdir."""
    kernels = sorted((rootdir / "boot").glob("vmlinuz-*"))
    initrds = sorted((rootdir / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise DeployError(f"no kernel/initrd under {rootdir}/boot; is linux-image-cloud-amd64 in "
                          f"{BOX_INPUTS / 'packages.txt'}?")
    root_uuid = str(uuid.uuid4())
    p1_sectors = BOOT_MIB * 1024 * 1024 // SECTOR
    p2_start = P1_START + p1_sectors
    p2_sectors = DISK_MIB * 1024 * 1024 // SECTOR - p2_start
    with disk.open("wb") as handle:
        handle.truncate(DISK_MIB * 1024 * 1024)
    table = f"label: dos\nstart={P1_START}, size={p1_sectors}, type=6, bootable\nstart={p2_start}, type=83\n"
    run(["sfdisk", "--quiet", str(disk)], input_text=table, what="sfdisk")
    mbr = Path("/usr/lib/syslinux/mbr/mbr.bin").read_bytes()
    with disk.open("r+b") as handle:
        handle.write(mbr[:440])
    run(["mkfs.fat", "-F", "16", "-n", "BOOT", f"--offset={P1_START}", str(disk),
         str(p1_sectors * SECTOR // 1024)], what="mkfs.fat")
    run(["syslinux", "--offset", str(P1_START * SECTOR), "--install", str(disk)], what="syslinux")
    workdir = disk.parent
    cfg = workdir / "syslinux.cfg"
    cfg.write_text("DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL vmlinuz\n"
                   f"  APPEND initrd=initrd.img root=UUID={root_uuid} ro console=ttyS0 "
                   "net.ifnames=0 quiet\n")
    target = f"{disk}@@{P1_START * SECTOR}"
    for src, name in ((kernels[-1], "vmlinuz"), (initrds[-1], "initrd.img"), (cfg, "syslinux.cfg")):
        _mtools(["mcopy", "-o", "-i", target, str(src), f"::{name}"])
    fstab = rootdir / "etc" / "fstab"
    fstab.write_text(f"UUID={root_uuid} / ext4 defaults,errors=remount-ro 0 1\n")
    root_img = workdir / "root.ext4"
    run(["mkfs.ext4", "-q", "-F", "-L", "root", "-U", root_uuid, "-d", str(rootdir), str(root_img),
         f"{p2_sectors * SECTOR // 1024}k"], timeout=600, what="mkfs.ext4")
    run(["dd", f"if={root_img}", f"of={disk}", "bs=1M", f"seek={p2_start * SECTOR // (1024 * 1024)}",
         "conv=notrunc,sparse", "status=none"], timeout=600, what="dd")
    root_img.unlink()


def build_box(dest: Path, workdir: Path, key: str = "") -> None:
    """mmdebstrap a root dir, assemble and convert the disk, and tar it into `dest` (.box)."""
    rootdir = workdir / "rootfs"
    pubkey = insecure_key()
    hook = BOX_INPUTS / "customize.sh"
    say(f"mmdebstrap {SUITE} ({len(packages())} packages) from {MIRROR} ...")
    # mmdebstrap runs the hook with sh -c and the root dir as $1: our values are quoted for that shell
    hook_cmd = f'{shlex.quote(str(hook))} "$1" {shlex.quote(str(pubkey))}'
    with Guard():  # on Ctrl-C mmdebstrap unmounts what it mounted under rootdir before we go on
        run(["mmdebstrap", "--variant=minbase", "--mode=root", "--format=directory",
             f"--include={','.join(packages())}", "--dpkgopt=path-exclude=/usr/share/doc/*",
             "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
             f"--customize-hook={hook_cmd}", SUITE, str(rootdir), MIRROR],
            timeout=1500, what="mmdebstrap")
    disk = workdir / "disk.raw"
    say("assembling the disk (sfdisk, syslinux, mkfs.ext4 -d) ...")
    assemble_disk(rootdir, disk)
    shutil.rmtree(rootdir)
    boxdir = workdir / "box"
    boxdir.mkdir()
    say("qemu-img convert -c (compressing) ...")
    run(["qemu-img", "convert", "-c", "-O", "qcow2", str(disk), str(boxdir / "box.img")],
        timeout=900, what="qemu-img convert")
    disk.unlink()
    (boxdir / "metadata.json").write_text(json.dumps(
        {"provider": "libvirt", "format": "qcow2", "virtual_size": DISK_MIB // 1024, KEY_FIELD: key}))
    shutil.copyfile(BOX_INPUTS / "Vagrantfile.box", boxdir / "Vagrantfile")
    partial = dest.with_suffix(".partial")
    run(["tar", "-C", str(boxdir), "-cf", str(partial), "metadata.json", "Vagrantfile", "box.img"],
        timeout=300, what="tar")
    partial.rename(dest)


def installed_dir(name: str) -> Path:
    """Where Vagrant keeps an added libvirt box (shared by every checkout on this machine)."""
    return lab_options().vagrant_home / "boxes" / name.replace("/", "-VAGRANTSLASH-") / "0" / "libvirt"


def installed_key(name: str) -> str:
    """The cache key the added box was built from ("" for a box not built here, or none added)."""
    try:
        return str(json.loads((installed_dir(name) / "metadata.json").read_text()).get(KEY_FIELD, ""))
    except (OSError, ValueError):
        return ""


def _volumes(name: str) -> list[str]:
    prefix = name.replace("/", "-VAGRANTSLASH-") + "_vagrant_box_image_"
    vols = run([*VIRSH, "vol-list", "default"], timeout=60, check=False, what="virsh vol-list").stdout
    return [ln.split()[0] for ln in vols.splitlines() if ln.strip().startswith(prefix)]


def _delete_volume(vol: str) -> None:
    run([*VIRSH, "vol-delete", vol, "--pool", "default"], timeout=60, check=False, what="virsh vol-delete")


def drop_box_volumes(name: str) -> None:
    """Delete vagrant-libvirt's uploaded copies of box `name` from the default pool."""
    for vol in _volumes(name):
        _delete_volume(vol)


def drop_bad_box_volumes(name: str) -> list[str]:
    """Delete uploaded copies of the box that differ from the added box.img (an upload cut short by a
    kill would otherwise be reused as every VM's base image). Returns what was deleted."""
    image = installed_dir(name) / "box.img"
    if not image.exists():
        return []
    want = sha256_file(image)
    dropped = []
    for vol in _volumes(name):
        where = run([*VIRSH, "vol-path", "--pool", "default", vol], timeout=60, check=False, what="virsh vol-path")
        path = Path(where.stdout.strip())
        if where.returncode != 0 or not path.is_file():
            continue  # cannot read it: keep it rather than delete a volume VMs may be using
        if path.stat().st_size != image.stat().st_size or sha256_file(path) != want:
            say(f"box volume {vol} differs from the added box (an interrupted upload?): deleting it")
            _delete_volume(vol)
            dropped.append(vol)
    return dropped


def clean_stale_builds() -> None:
    """Remove what a killed build left: *.partial boxes and gl-box-* work dirs (unmounting first
    anything mmdebstrap had mounted inside them)."""
    for partial in CACHE.glob("*.partial"):
        partial.unlink()
    for workdir in CACHE.glob("gl-box-*"):
        mounts = [ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()
                  if ln.split()[4].startswith(f"{workdir}/")]
        for mount in sorted(mounts, key=len, reverse=True):
            run(["umount", "--lazy", mount], timeout=60, check=False, what="umount")
        say(f"removing a box build left by a killed run: {workdir.name}")
        shutil.rmtree(workdir, ignore_errors=True)


def ensure_box(name: str = DEFAULT_BOX, *, force: bool = False) -> BoxResult:
    """Build (if the cache misses) and `vagrant box add` (if the added box has another key)."""
    start = time.monotonic()
    key = cache_key(pubkey=insecure_key().read_bytes())
    CACHE.mkdir(parents=True, exist_ok=True)
    clean_stale_builds()
    dest = CACHE / f"debian12-{key}.box"
    built = False
    if force or not dest.exists():
        for stale in CACHE.glob("debian12-*.box"):
            stale.unlink()
        with tempfile.TemporaryDirectory(prefix="gl-box-", dir=CACHE) as tmp:
            build_box(dest, Path(tmp), key)
        built = True
    else:
        say(f"box cache hit: {dest.name} (inputs unchanged)")
    added = False
    if built or installed_key(name) != key:
        # `vagrant box add --force` replaces the box in place. `vagrant box remove` is not used: it
        # loads the Vagrantfile of every machine in Vagrant's index, other checkouts' included.
        drop_box_volumes(name)
        say(f"vagrant box add {name} ...")
        run(["vagrant", "box", "add", "--force", "--name", name, str(dest)], timeout=600,
            what="vagrant box add")
        added = True
    else:
        say(f"box {name} already added (key {key})")
        drop_bad_box_volumes(name)
    return BoxResult(name, dest, key, built, added, time.monotonic() - start, dest.stat().st_size)
