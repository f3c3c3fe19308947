# What a Mac user reaches for: "the CPU image, but use my Apple GPU".
# It cannot: Metal is a macOS host API, and Docker Desktop runs containers in a Linux VM whose
# PyTorch (a Linux build) has no MPS at all. This image asks for MPS anyway so the run shows the
# whole story in its log and record, then falls back to the CPU (or exits 3 with --strict-device).
# See docs/mps-in-docker.md.
ARG CPU_IMAGE=roadrisk:cpu
FROM ${CPU_IMAGE}
LABEL org.opencontainers.image.title="roadrisk (asks for MPS)" \
      org.opencontainers.image.description="CPU image that requests MPS to demonstrate why containers cannot use it"
ENV PYTORCH_ENABLE_MPS_FALLBACK=1
CMD ["train", "--device", "mps", "--label", "docker-mps"]
