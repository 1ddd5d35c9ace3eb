#!/usr/bin/env bash
# FFmpeg's shared libraries for DATA.DECODING_BACKEND torchcodec (its wheel carries no FFmpeg; it loads
# libavutil.so.56-61 and friends from the system, FFmpeg 4-9). Installed with apt-get only when they are
# missing and apt-get can run (root); otherwise a warning: every other backend works without them.
set -uo pipefail
LIBS="avutil avcodec avformat avdevice avfilter swscale swresample"
if ldconfig -p 2>/dev/null | grep -Eq 'libavutil\.so\.(56|57|58|59|60|61)\b' \
   && ldconfig -p 2>/dev/null | grep -Eq 'libavdevice\.so\.[0-9]+\b'; then
    echo "FFmpeg shared libraries: found ($(ldconfig -p | grep -Eo 'libavutil\.so\.[0-9]+' | sort -u | tr '\n' ' '))"
    exit 0
fi
if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
    echo "warning: FFmpeg's shared libraries (libavutil.so.56-61, ...) are missing and apt-get cannot run here;" \
         "DATA.DECODING_BACKEND torchcodec will be unavailable (pyav and decord are not affected)" >&2
    exit 0
fi
apt-get update -qq
pkgs=""
for lib in $LIBS; do  # the runtime package of this Debian release, e.g. libavutil57 on Debian 12
    name=$(apt-cache search --names-only "^lib${lib}[0-9]+\$" | awk '{print $1}' | sort -V | tail -1)
    [ -n "$name" ] && pkgs="$pkgs $name"
done
if [ -z "$pkgs" ]; then
    echo "warning: no FFmpeg runtime packages found by apt-cache; torchcodec will be unavailable" >&2
    exit 0
fi
echo "installing FFmpeg shared libraries:$pkgs"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
