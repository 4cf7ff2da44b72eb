#!/usr/bin/env bash
# Installs the Debian 12 packages fourierft needs to build, test and run its examples.
# Idempotent: packages already installed are skipped. Installing needs root: as root it calls apt-get
# directly (fresh Debian images have no sudo); as another user, sudo apt-get.
set -euo pipefail
packages=(
  g++ cmake make pkg-config            # toolchain
  libeigen3-dev                        # tensors, Eigen GEMM fallback
  libopenblas-dev                      # GEMM (cblas)
  libopenblas-openmp-dev               # its OpenMP build: GEMMs share fourierft's OpenMP threads
  libfftw3-dev                         # spectral transforms (float + double, OpenMP threads)
  nlohmann-json3-dev                   # config.json, safetensors headers
  libpcre2-dev                         # GPT-2 pre-tokenisation (Unicode categories)
  libjpeg-dev                          # JPEG decoding (libjpeg-turbo, as Pillow)
  libstb-dev                           # PNG decoding and writing
  doctest-dev                          # tests
  libopenmpi-dev openmpi-bin           # data-parallel training under mpirun (FOURIERFT_WITH_MPI)
  libcpp-httplib-dev                   # `fourierft serve` and test_serve (HTTP server / client)
  curl                                 # serve_cli: the real server driven by a real HTTP client
  jq util-linux                        # kill_resume_test.sh: reads log.jsonl; prlimit (disk full)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: installing packages needs root; run this script as root" \
         "(or install sudo), or install them yourself: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
