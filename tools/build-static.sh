#!/usr/bin/env bash
# Build a fully static, stripped x86_64 `reroot` for servers that have no
# Rust toolchain and maybe an older libc: one file to copy over SSH.
#
#   tools/build-static.sh [OUTDIR]     (default: target/static)
#
#   tools/build-static.sh --package    (OUTDIR is target/static)
#
# Writes OUTDIR/reroot and OUTDIR/reroot.sha256 (sha256sum format). With
# --package also the manual and the completions under OUTDIR/share, and,
# when cargo-deb is installed, the Debian package OUTDIR/reroot_*.deb
# (`cargo deb --no-build`, metadata in Cargo.toml).
#
# Why musl (x86_64-unknown-linux-musl) first:
# - A static glibc binary still loads NSS modules (dlopen) for getpwnam,
#   getgrnam and getaddrinfo, which then must match the host's glibc: not
#   "runs anywhere". reroot calls none of them (it reads /proc, /sys and
#   /etc/fstab itself, and names users by uid), and musl has no NSS at all,
#   so the musl binary cannot depend on anything outside itself.
# - io_uring is used through raw syscalls (the io-uring crate), which work
#   the same on musl; nothing in reroot needs glibc-only functions.
# - Rust's musl target is self-contained (its own crt and libc.a): no
#   musl-gcc needed, and `rustup target add` is the only download.
# Where the musl target cannot be had (offline, no rustup), the script falls
# back to glibc with `-C target-feature=+crt-static` and fails if the link
# pulls in an NSS or dlopen user (checked on the unstripped binary).
set -euo pipefail
cd "$(dirname "$0")/.."

package=0
if [[ ${1:-} == --package ]]; then package=1; shift; fi
out=${1:-target/static}
if ((package)) && [[ $out != target/static ]]; then
    echo "build-static: --package writes to target/static (Cargo.toml's deb assets name it)" >&2
    exit 2
fi
mkdir -p "$out"

musl=x86_64-unknown-linux-musl
gnu=x86_64-unknown-linux-gnu
have_musl() { rustup target list --installed 2>/dev/null | grep -qx "$musl"; }
if ! have_musl && command -v rustup >/dev/null; then
    rustup target add "$musl" >&2 || true
fi

# Release profile without debug info; stripped by cargo.
cfg=(--config 'profile.release.debug=0' --config 'profile.release.strip="symbols"')
if have_musl; then
    target=$musl
    cargo build --locked --release --target "$target" --bin reroot "${cfg[@]}" >&2
else
    target=$gnu
    echo "build-static: the musl target is not installed; glibc with +crt-static" >&2
    # Unstripped first, to see which libc symbols it links.
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        cargo build --locked --release --target "$target" --bin reroot \
        --config 'profile.release.debug=0' >&2
    bad=$(nm "${CARGO_TARGET_DIR:-target}/$target/release/reroot" 2>/dev/null |
        grep -Ew 'T? ?(getpwnam|getpwuid|getgrnam|getgrgid|getaddrinfo|gethostbyname|dlopen)(_r)?' || true)
    if [[ -n $bad ]]; then
        echo "build-static: the glibc static binary uses NSS/dlopen, which needs the host's glibc:" >&2
        echo "$bad" >&2
        exit 1
    fi
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        cargo build --locked --release --target "$target" --bin reroot "${cfg[@]}" >&2
fi

bin="${CARGO_TARGET_DIR:-target}/$target/release/reroot"
# Static means: no program interpreter and no shared library needed (a
# static-pie binary keeps a DYNAMIC segment for its own relocations).
if readelf -lW "$bin" | grep -q INTERP || readelf -dW "$bin" | grep -q NEEDED; then
    echo "build-static: $bin is not static:" >&2
    readelf -lW "$bin" | grep INTERP >&2 || true
    readelf -dW "$bin" | grep NEEDED >&2 || true
    exit 1
fi
install -m 0755 "$bin" "$out/reroot"
(cd "$out" && sha256sum reroot >reroot.sha256)

if ((package)); then
    share="$out/share"
    mkdir -p "$share/man/man1" "$share/bash-completion/completions" \
        "$share/zsh/vendor-completions" "$share/fish/vendor_completions.d"
    "$out/reroot" --generate man | gzip -9n >"$share/man/man1/reroot.1.gz"
    "$out/reroot" --generate complete-bash >"$share/bash-completion/completions/reroot"
    "$out/reroot" --generate complete-zsh >"$share/zsh/vendor-completions/_reroot"
    "$out/reroot" --generate complete-fish >"$share/fish/vendor_completions.d/reroot.fish"
    if cargo deb --version >/dev/null 2>&1; then
        rm -f "$out"/reroot_*.deb
        cargo deb --no-build --no-strip --target "$target" -o "$out" >&2
    else
        echo "build-static: cargo-deb is not installed (cargo install cargo-deb); no .deb" >&2
    fi
fi

echo "build-static: $target, $(stat -c %s "$out/reroot") bytes" >&2
cat "$out/reroot.sha256"
