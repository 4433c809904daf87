#!/usr/bin/env bash
# Installs what building and testing kaipo needs on a fresh Debian/Ubuntu machine, and nothing
# that is already there: safe to run again, and quick when all is in place.
#
#  - Debian packages: LLVM 22 (bpf-linker links against it), iproute2 (tests build network
#    namespaces), libpcap (pcap backend), tmux (dashboard tests), chromium (HTML report test),
#    prometheus (scrape and fleet tests, promtool), systemd (systemd-analyze verify and
#    security of the unit), libssl-dev (SQLCipher, the encrypting SQLite kaipo builds in on
#    Linux, uses its libcrypto), passwd (useradd/userdel: the tests' daemon user), curl (the
#    remote API test talks HTTPS through it), the MinGW-w64 C compiler (the bundled SQLite,
#    when kaipo is checked for Windows), Podman and runc (the container-naming test and the
#    image test build and run containers locally), dnsmasq (the remote-naming test answers
#    DNS in a test namespace), python3 (it also sends a damaged answer), binutils (strip, for
#    the image and the package), man-db (the package test reads `man kaipo-report`).
#  - rust-src for the nightly toolchain (the eBPF crate builds core from source).
#  - The macOS and Windows targets of the stable toolchain: `cargo xtask clippy` checks kaipo
#    for them so nothing Linux-only leaks in.
#  - bpf-linker 0.13 built against LLVM 22.
#  - cargo-fuzz, for `cargo xtask fuzz` (libFuzzer through the nightly toolchain).
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "setup: '$*' needs root; run this script as root or install sudo" >&2
        exit 1
    fi
}

log() { echo "setup: $*" >&2; }

packages=(llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev iproute2 libpcap-dev tmux pkg-config chromium prometheus systemd libssl-dev passwd curl gcc-mingw-w64-x86-64 podman runc dnsmasq-base python3 binutils man-db nftables)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

export PATH="$HOME/.cargo/bin:$PATH"
command -v rustup >/dev/null 2>&1 || { log "rustup is missing; install a Rust toolchain with rustup first"; exit 1; }

if ! rustup toolchain list | grep -q '^nightly'; then
    log "installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
    log "adding rust-src to the nightly toolchain"
    rustup component add rust-src --toolchain nightly
fi

installed_targets=$(rustup target list --installed)
for target in x86_64-apple-darwin x86_64-pc-windows-gnu; do
    if ! grep -qx "$target" <<<"$installed_targets"; then
        log "adding the $target target (cargo xtask clippy checks kaipo for it)"
        rustup target add "$target"
    fi
done

if ! bpf-linker --version 2>/dev/null | grep -q '^bpf-linker 0\.13\.'; then
    log "building bpf-linker 0.13 against LLVM 22 (a few minutes)"
    PATH="/usr/lib/llvm-22/bin:$PATH" LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 \
        cargo install --locked bpf-linker --version '^0.13' --no-default-features --features llvm-22
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz (cargo xtask fuzz)"
    cargo install --locked cargo-fuzz
fi
log "ready"
